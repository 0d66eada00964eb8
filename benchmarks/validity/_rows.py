"""What every part of the validity benchmark returns: rows of stated vs measured.

A part is a module beside this one with ``rows(quick: bool) -> list[Row]``.
Each row is one promise the README or docs make: the value stated, the value
measured (with its 95 % interval where it is a rate), and whether it holds.

* :func:`rate_at_most`  a rate that must be at most the stated value (type-I, false alarms)
* :func:`rate_at_least` a rate that must be at least the stated value (power)
* :func:`value_at_most` a measured number (a delay, a ratio, a bias) that must be at most
  the stated one, with no interval or one the part computed itself
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import beta

__all__ = ["Row", "clopper_pearson", "rate_at_least", "rate_at_most", "value_at_most"]


@dataclass(frozen=True)
class Row:
    """One promise: what it is about, the stated value, the measurement and the verdict."""

    area: str  # "offline gate", "online gate", "fleet", "detector", "estimate"
    claim: str  # what is promised, in words: "type-I, n_b=50 n_c=50 acc 0.99 margin 0"
    stated: str  # "<= 0.05"
    measured: str  # "0.031 [0.024, 0.040]"
    holds: bool
    how: str = ""  # "exact binomial sum", "2,000 trials", ...


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval for a binomial rate.

    >>> lo, hi = clopper_pearson(5, 100)
    >>> round(lo, 4), round(hi, 4)
    (0.0164, 0.1128)
    """
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def _fmt(x: float) -> str:
    return f"{x:.4g}" if x == 0 or abs(x) >= 1e-3 else f"{x:.2e}"


def rate_at_most(area: str, claim: str, bound: float, k: int, n: int, how: str = "") -> Row:
    """A rate k/n that must be at most ``bound``: holds unless the interval lies above it
    (within Monte Carlo error).  A rate computed exactly (a binomial sum) is a
    :func:`value_at_most` without an interval.

    >>> rate_at_most("g", "type-I", 0.05, 60, 1000).holds   # 0.06 [0.046, 0.077]
    True
    >>> rate_at_most("g", "type-I", 0.05, 90, 1000).holds
    False
    """
    lo, hi = clopper_pearson(k, n)
    return Row(
        area,
        claim,
        f"<= {_fmt(bound)}",
        f"{_fmt(k / n)} [{_fmt(lo)}, {_fmt(hi)}]",
        lo <= bound,
        how or f"{n:,} trials",
    )


def rate_at_least(area: str, claim: str, bound: float, k: int, n: int, how: str = "") -> Row:
    """A rate k/n that must be at least ``bound`` (power): holds unless the interval lies below.

    >>> rate_at_least("g", "power", 0.8, 790, 1000).holds
    True
    """
    lo, hi = clopper_pearson(k, n)
    return Row(
        area,
        claim,
        f">= {_fmt(bound)}",
        f"{_fmt(k / n)} [{_fmt(lo)}, {_fmt(hi)}]",
        hi >= bound,
        how or f"{n:,} trials",
    )


def value_at_most(
    area: str,
    claim: str,
    bound: float,
    value: float,
    interval: tuple[float, float] | None = None,
    how: str = "",
    point: bool = False,
) -> Row:
    """A number that must be at most ``bound``.  With an interval it holds unless the
    interval lies above the bound; without one, or with ``point``, the value itself must
    be at most it (a target, not a rate: Monte Carlo error is no excuse to miss it).

    >>> value_at_most("d", "median delay", 45, 41.0).holds
    True
    >>> value_at_most("d", "bias", 45, 47.0, (40.0, 52.0)).holds
    True
    >>> value_at_most("d", "median delay", 45, 47.0, (40.0, 52.0), point=True).holds
    False
    """
    ok = (interval[0] if interval and not point else value) <= bound
    shown = _fmt(value) + (f" [{_fmt(interval[0])}, {_fmt(interval[1])}]" if interval else "")
    if math.isnan(value):
        ok, shown = False, "nan"
    return Row(area, claim, f"<= {_fmt(bound)}", shown, ok, how)
