"""Online regression gates under continuous monitoring: P(ever fail) and windows to fail.

Each simulated deployment draws a baseline (``n_b`` labels at the model's
accuracy) and a stream of windows of labels, and judges every window on the
accumulated counts with the gate's own functions
(:mod:`govloop.stats.sequential`: the baseline's Clopper-Pearson bound,
the allowed level, the mixture martingale's decision), vectorised over
deployments and windows.  Rows:

* type-I: P(ever failing) of an unchanged model over 100 and over 1,000 windows
  (windows of 200 and 1,000 labels; margin 0 and 0.01; accuracy 0.9 and 0.7), and
  at the boundary of the null (the true drop equals the margin): at most alpha;
* power: the median window of the first fail for 0.90 -> 0.85, 200 labels per
  window, by baseline size, with its order-statistic 95 % interval; and for
  other drops.

    .venv/bin/python benchmarks/validity/bench_validity.py --only online_gates
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.stats import binom

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rows import Row, rate_at_most, value_at_most

from govloop.stats.sequential import allowed_level, exceeds, lower_bound

ALPHA = 0.05
AREA = "online gate"


def first_fail(
    rng: np.random.Generator,
    *,
    p_base: float,
    p_cur: float,
    n_base: int,
    window: int,
    windows: int,
    deployments: int,
    margin: float = 0.0,
    alpha: float = ALPHA,
) -> np.ndarray:
    """The window (1-based) of each deployment's first fail; ``windows + 1`` for never."""
    alpha_b = alpha_c = alpha / 2  # sequential_drop's default split
    k_b = rng.binomial(n_base, p_base, size=deployments)
    bounds = np.array([lower_bound(alpha_b, successes=int(k), n=n_base) for k in k_b])
    level = allowed_level(bounds, margin, "absolute", True)  # type: ignore[arg-type]
    s = np.cumsum(rng.binomial(window, p_cur, size=(deployments, windows)), axis=1)
    n = window * np.arange(1, windows + 1)
    hit = exceeds(s, n, level[:, None], 1 / alpha_c)
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, windows + 1)


def median_interval(first: np.ndarray) -> tuple[float, tuple[float, float]]:
    """The sample median and its distribution-free 95 % interval (order statistics)."""
    x = np.sort(first)
    m = len(x)
    lo = int(binom.ppf(0.025, m, 0.5))
    hi = int(binom.isf(0.025, m, 0.5))
    return float(np.median(x)), (float(x[max(lo - 1, 0)]), float(x[min(hi, m - 1)]))


def _type_one(rng: np.random.Generator, quick: bool) -> list[Row]:
    deployments = 300 if quick else 4000
    horizon = 100 if quick else 1000
    rows = []
    cases = [
        (p, w, margin, 5000, p) for p in (0.9, 0.7) for w in (200, 1000) for margin in (0.0, 0.01)
    ]
    cases += [(0.9, 200, 0.01, 5000, 0.89), (0.7, 200, 0.01, 5000, 0.69), (0.9, 200, 0.0, 200, 0.9)]
    for p, w, margin, n_b, p_cur in cases:
        first = first_fail(
            rng,
            p_base=p,
            p_cur=p_cur,
            n_base=n_b,
            window=w,
            windows=horizon,
            deployments=deployments,
            margin=margin,
        )
        what = "unchanged model" if p_cur == p else "drop = margin (boundary)"
        for t in sorted({100, horizon}):
            rows.append(
                rate_at_most(
                    AREA,
                    f"P(ever fail) over {t:,} windows of {w:,}, {what}, acc {p}, "
                    f"margin {margin:g}, baseline {n_b:,}",
                    ALPHA,
                    int((first <= t).sum()),
                    deployments,
                    f"{deployments:,} deployments",
                )
            )
    return rows


#: (baseline accuracy, candidate accuracy, baseline labels, the median window docs state)
POWER = (
    (0.90, 0.85, 20000, 4),
    (0.90, 0.85, 5000, 4),
    (0.90, 0.85, 1000, 7),
    (0.90, 0.88, 20000, 20),
    (0.90, 0.80, 1000, 2),
    (0.70, 0.65, 5000, 9),
)


def _power(rng: np.random.Generator, quick: bool) -> list[Row]:
    deployments = 300 if quick else 4000
    rows = []
    for p_b, p_c, n_b, stated in POWER:
        first = first_fail(
            rng,
            p_base=p_b,
            p_cur=p_c,
            n_base=n_b,
            window=200,
            windows=100,
            deployments=deployments,
        )
        median, interval = median_interval(first)
        rows.append(
            value_at_most(
                AREA,
                f"median windows to fail, {p_b:.2f} -> {p_c:.2f}, 200 labels a window, "
                f"baseline {n_b:,}",
                stated,
                median,
                interval,
                f"{deployments:,} deployments, order-statistic interval",
            )
        )
    return rows


def rows(quick: bool) -> list[Row]:
    rng = np.random.default_rng(20300101)
    return _type_one(rng, quick) + _power(rng, quick)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for r in rows(quick):
        print(f"{'holds' if r.holds else 'DOES NOT HOLD'} | {r.claim} | {r.stated} | {r.measured}")
