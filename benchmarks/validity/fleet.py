"""The fleet budget: how often a no-drift round alerts, and what one reference does to a feature.

Everything runs the worker's own code: window profiles built from columns
(:class:`~govloop.stats.profile.Profile`), the reference grown from the
first windows until it holds ``GOVLOOP_REFERENCE_EVENTS`` events (as the
stream worker grows it), :func:`~govloop.stats.profile.compare` with the
worker's minimum count, and :func:`~govloop.stats.profile.drifted_features`
spending a :class:`~govloop.stats.fleet.FleetBudget` of ``GOVLOOP_DRIFT_ALPHA``.

* Round false-alert rate: rounds of several models' windows in which
  nothing drifted; a round fails if any feature of any model alerts.  The
  references are drawn afresh every few rounds, so the rate is averaged over
  references as well as windows.
* The reference's own sampling error: for each of >= 100 references (one
  feature, tested alone at the configured rate), the share of no-drift
  windows that alert, given that reference; the row reports the 95th
  percentile of those conditional rates against twice the configured rate,
  with a distribution-free order-statistic interval.  Each conditional rate
  is itself estimated from a finite number of windows, which spreads the
  rates and so, if anything, raises the 95th percentile.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from _rows import Row, rate_at_most, value_at_most
from scipy.stats import binom

from govloop.config import Settings
from govloop.stats.fleet import FleetBudget
from govloop.stats.profile import Columns, Profile, compare, drifted_features

__all__ = ["rows"]

_DEFAULTS = Settings()
ALPHA = _DEFAULTS.drift_alpha
REFERENCE_EVENTS = _DEFAULTS.reference_events
MIN_COUNT = _DEFAULTS.drift_min_count

_ZIPF_VALUES = np.array([f"v{i}" for i in range(300)])
_ZIPF_P = 1.0 / np.arange(1, 301)
_ZIPF_P /= _ZIPF_P.sum()
_LOW_VALUES = np.array(["a", "b", "c", "d"])
_LOW_P = np.array([0.5, 0.3, 0.15, 0.05])

Draw = Callable[[np.random.Generator, int], np.ndarray]

#: Feature kinds: name -> (is categorical, draw of n values).
KINDS: dict[str, tuple[bool, Draw]] = {
    "zipf300": (True, lambda rng, n: _ZIPF_VALUES[rng.choice(300, n, p=_ZIPF_P)]),
    "low4": (True, lambda rng, n: _LOW_VALUES[rng.choice(4, n, p=_LOW_P)]),
    "normal": (False, lambda rng, n: rng.normal(0.0, 1.0, n)),
    "lognormal": (False, lambda rng, n: rng.lognormal(0.0, 1.0, n)),
    "poisson": (False, lambda rng, n: rng.poisson(3.0, n).astype(float)),  # ties
}

#: Fleets: feature name -> kind, for every model of the fleet.
ZIPF_FLEET = {f"c{j}": "zipf300" for j in range(6)}
MIXED_FLEET = {
    "x": "normal",
    "amount": "lognormal",
    "visits": "poisson",
    "plan": "low4",
    "country": "zipf300",
    "page": "zipf300",
}


def _columns(rng: np.random.Generator, n: int, fleet: dict[str, str]) -> Columns:
    numeric: dict[str, list[float]] = {}
    categorical: dict[str, list[str]] = {}
    for name, kind in fleet.items():
        is_cat, draw = KINDS[kind]
        values = draw(rng, n).tolist()
        (categorical if is_cat else numeric)[name] = values
    return Columns(n, numeric, categorical)


def _window(rng: np.random.Generator, n: int, fleet: dict[str, str]) -> Profile:
    profile = Profile()
    profile.update_columns(_columns(rng, n, fleet))
    return profile


def _reference(rng: np.random.Generator, window: int, fleet: dict[str, str]) -> Profile:
    """The worker's default reference: windows merged until it holds REFERENCE_EVENTS."""
    pending = Profile()
    while pending.n < REFERENCE_EVENTS:
        pending.merge(_window(rng, window, fleet))
    return pending


def round_alerts(
    fleet: dict[str, str], models: int, window: int, rounds: int, seed: int, refresh: int = 10
) -> int:
    """Rounds (of ``models`` windows each, nothing drifting) in which anything alerts."""
    rng = np.random.default_rng(seed)
    budget = FleetBudget(alpha=ALPHA)
    alerts = 0
    refs: list[Profile] = []
    for r in range(rounds):
        if r % refresh == 0:
            refs = [_reference(rng, window, fleet) for _ in range(models)]
        results = {}
        for i, ref in enumerate(refs):
            for d in compare(ref, _window(rng, window, fleet), min_count=MIN_COUNT):
                results[(i, d.feature)] = d
        alerts += bool(drifted_features(results, budget))
    return alerts


def conditional_rates(kind: str, window: int, refs: int, windows: int, seed: int) -> np.ndarray:
    """Per reference, the share of no-drift windows whose one feature alerts."""
    rng = np.random.default_rng(seed)
    budget = FleetBudget(alpha=ALPHA)
    fleet = {"f": kind}
    out = np.empty(refs)
    for j in range(refs):
        ref = _reference(rng, window, fleet)
        hits = 0
        for _ in range(windows):
            results = {
                d.feature: d for d in compare(ref, _window(rng, window, fleet), min_count=MIN_COUNT)
            }
            hits += bool(drifted_features(results, budget))
        out[j] = hits / windows
    return out


def percentile_interval(
    values: np.ndarray, q: float = 0.95, level: float = 0.95
) -> tuple[float, float, float]:
    """The q-th sample quantile and a distribution-free interval from order statistics.

    >>> v = np.arange(1.0, 201.0)
    >>> percentile_interval(v)
    (190.0, 184.0, 197.0)
    """
    x = np.sort(values)
    n = x.size
    lo = int(binom.ppf((1 - level) / 2, n, q))  # P(#below <= lo) ~ (1 - level) / 2
    hi = int(binom.ppf(1 - (1 - level) / 2, n, q)) + 1
    point = float(x[min(n - 1, int(np.ceil(q * n)) - 1)])
    return point, float(x[max(lo - 1, 0)]), float(x[min(hi - 1, n - 1)])


def rows(quick: bool) -> list[Row]:
    rounds = 150 if quick else 1200
    refs, windows = (20, 80) if quick else (100, 350)
    out = []
    models = 3
    for label, fleet in (("300-value Zipf categoricals", ZIPF_FLEET), ("mixed", MIXED_FLEET)):
        for window in (200, 1000):
            k = round_alerts(fleet, models, window, rounds, seed=window + len(fleet))
            out.append(
                rate_at_most(
                    "fleet",
                    f"no-drift round alerts, {label} ({models} models x {len(fleet)} features), "
                    f"windows of {window}, reference {REFERENCE_EVENTS}",
                    ALPHA,
                    k,
                    rounds,
                    f"{rounds:,} rounds, Holm at {ALPHA}, references redrawn every 10 rounds",
                )
            )
    for kind in ("zipf300", "normal"):
        for window in (200, 1000):
            rates = conditional_rates(kind, window, refs, windows, seed=7 * window)
            p95, lo, hi = percentile_interval(rates)
            out.append(
                value_at_most(
                    "fleet",
                    f"95th pct over references of a feature's false-alert rate given its "
                    f"reference ({kind}, windows of {window}, reference {REFERENCE_EVENTS}, "
                    f"configured {ALPHA})",
                    2 * ALPHA,
                    p95,
                    (lo, hi),
                    f"{refs} references x {windows} windows; order-statistic interval",
                )
            )
    return out
