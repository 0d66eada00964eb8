"""One false-alarm budget for a whole fleet of drift tests.

A fleet evaluates many tests per round (every feature of every model, every
segment).  At ``alpha = 0.05`` each, 200 tests on streams that have not
drifted raise about 10 false alerts per round.  Correcting the round's
p-values together spends a single budget instead:

- :func:`holm` (Holm-Bonferroni) controls the family-wise error rate, the
  probability of one or more false alerts in the round, under any dependence
  between the tests.  It rejects everything Bonferroni does, and more.
- :func:`benjamini_hochberg` controls the false discovery rate, the expected
  share of false alerts among the alerts raised (valid for independent or
  positively dependent tests).  It has more power when many streams drift
  at once.  When nothing has drifted every alert is false, so the FDR is
  the FWER and BH also bounds P(any false alert) by ``q``.

What the default ``FleetBudget(alpha=0.01, method="holm")`` implies on
no-drift streams: per evaluation round, P(any false alert across all tests)
<= 0.01, however many tests the fleet runs.  Over R rounds the expected
number of rounds with a false alert is at most 0.01 R: hourly rounds give at
most 0.24 a day, about one every four days; with ``method="bh"`` and
``alpha=0.01`` the same bound holds while nothing drifts.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np

__all__ = ["FleetBudget", "benjamini_hochberg", "holm"]

K = TypeVar("K", bound=Hashable)


def _p_array(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    p = np.asarray(p_values, dtype=np.float64).ravel()
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p-values must lie in [0, 1]")
    return p


def holm(p_values: Sequence[float] | np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Holm-Bonferroni step-down: which hypotheses to reject at family-wise level ``alpha``.

    The i-th smallest p-value (i = 1..m) is rejected while every p-value up
    to it satisfies p_(j) <= alpha / (m - j + 1).

    >>> holm([0.01, 0.04, 0.03, 0.005], alpha=0.05).tolist()
    [True, False, False, True]
    """
    p = _p_array(p_values)
    m = p.size
    order = np.argsort(p, kind="stable")
    limits = alpha / (m - np.arange(m))
    passed = p[order] <= limits
    k = m if passed.all() else int(np.argmin(passed))
    reject = np.zeros(m, dtype=bool)
    reject[order[:k]] = True
    return reject


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray, q: float = 0.05) -> np.ndarray:
    """Benjamini-Hochberg step-up: which hypotheses to reject at false discovery rate ``q``.

    With k the largest i such that p_(i) <= i q / m, reject the k smallest p-values.

    >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.005], q=0.05).tolist()
    [True, True, True, True]
    >>> benjamini_hochberg([0.01, 0.2, 0.03, 0.005], q=0.05).tolist()
    [True, False, True, True]
    """
    p = _p_array(p_values)
    m = p.size
    order = np.argsort(p, kind="stable")
    passed = np.flatnonzero(p[order] <= q * np.arange(1, m + 1) / m)
    k = int(passed[-1]) + 1 if passed.size else 0
    reject = np.zeros(m, dtype=bool)
    reject[order[:k]] = True
    return reject


@dataclass(frozen=True)
class FleetBudget:
    """A fleet's false-alarm budget: ``alpha`` per evaluation round, spent by ``method``.

    ``method="holm"`` bounds P(any false alert in a round) by ``alpha``;
    ``method="bh"`` bounds the expected share of false alerts by ``alpha``
    (and P(any false alert) too, while nothing has drifted).

    >>> budget = FleetBudget(alpha=0.01)
    >>> p = {("model-a", "age"): 1e-6, ("model-a", "income"): 0.004, ("model-b", "age"): 0.3}
    >>> sorted(budget.decide(p))
    [('model-a', 'age'), ('model-a', 'income')]
    >>> sorted(FleetBudget(alpha=0.001).decide(p))
    [('model-a', 'age')]
    """

    alpha: float = 0.01
    method: Literal["holm", "bh"] = "holm"

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha}")
        if self.method not in ("holm", "bh"):
            raise ValueError(f"method must be 'holm' or 'bh', got {self.method!r}")

    def decide(self, p_values: Mapping[K, float]) -> set[K]:
        """The keys whose null hypothesis (no drift) is rejected this round."""
        keys = list(p_values)
        if not keys:
            return set()
        p = [p_values[key] for key in keys]
        rule = holm if self.method == "holm" else benjamini_hochberg
        reject = rule(p, self.alpha)
        return {key for key, r in zip(keys, reject, strict=True) if r}
