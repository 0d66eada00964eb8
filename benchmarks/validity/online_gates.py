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
  other drops;
* both again through the gate evaluator itself (``govloop.gates.judge`` on the
  accumulated evidence), with fewer deployments;
* a pattern rule over k = 5 and k = 50 unchanged metrics (each match's anytime-valid
  p-value, Holm-adjusted over the matches at every look), through
  ``govloop.gates.checks.check_metric_rule``: P(ever fail) at most alpha.

    .venv/bin/python benchmarks/validity/bench_validity.py --only online_gates
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from scipy.stats import binom

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rows import Row, rate_at_most, value_at_most

from govloop.gates import Evidence, MetricValue, judge, parse_policy
from govloop.gates.checks import check_metric_rule
from govloop.gates.rules import RegressionRule
from govloop.stats.sequential import allowed_level, exceeds, lower_bound, upper_bound
from govloop.stats.significance import proportion_drop

ALPHA = 0.05
AREA = "online gate"
MarginType = Literal["absolute", "relative"]


class Deployments(NamedTuple):
    """Simulated deployments: each baseline's successes, each window's cumulative successes."""

    base_successes: np.ndarray  # (deployments,)
    cumulative: np.ndarray  # (deployments, windows)
    n_base: int
    window: int


def deploy(
    rng: np.random.Generator,
    *,
    p_base: float,
    p_cur: float,
    n_base: int,
    window: int,
    windows: int,
    deployments: int,
) -> Deployments:
    k_b = rng.binomial(n_base, p_base, size=deployments)
    s = np.cumsum(rng.binomial(window, p_cur, size=(deployments, windows)), axis=1)
    return Deployments(k_b, s, n_base, window)


def first_fail(
    d: Deployments,
    *,
    margin: float = 0.0,
    margin_type: MarginType = "absolute",
    higher_is_better: bool = True,
    alpha: float = ALPHA,
) -> np.ndarray:
    """The window (1-based) of each deployment's first fail; ``windows + 1`` for never.

    The steps of :func:`govloop.stats.sequential.sequential_drop`, vectorised: the
    baseline's bound at ``alpha/2``, the allowed level, the martingale's decision at
    ``2/alpha`` on the accumulated counts (mirrored when lower is better).
    """
    alpha_b = alpha_c = alpha / 2  # sequential_drop's default split
    side = lower_bound if higher_is_better else upper_bound
    bounds = np.array([side(alpha_b, successes=int(k), n=d.n_base) for k in d.base_successes])
    level = np.array([allowed_level(b, margin, margin_type, higher_is_better) for b in bounds])
    n = d.window * np.arange(1, d.cumulative.shape[1] + 1)
    if higher_is_better:
        hit = exceeds(d.cumulative, n, level[:, None], 1 / alpha_c)
    else:
        hit = exceeds(n - d.cumulative, n, 1 - level[:, None], 1 / alpha_c)
    never = d.cumulative.shape[1] + 1
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, never)


def one_look_power(d: Deployments, look: int, alpha: float = ALPHA) -> float:
    """The share of deployments the fixed-sample test (``govloop gate check``'s) fails when
    it looks once, at window ``look`` alone, on the counts accumulated by then."""
    n = d.window * look
    fails = [
        proportion_drop(int(k), d.n_base, int(s), n).significant(alpha)
        for k, s in zip(d.base_successes, d.cumulative[:, look - 1], strict=True)
    ]
    return float(np.mean(fails))


def median_interval(first: np.ndarray) -> tuple[float, tuple[float, float]]:
    """The sample median and its distribution-free 95 % interval (order statistics)."""
    x = np.sort(first)
    m = len(x)
    lo = int(binom.ppf(0.025, m, 0.5))
    hi = int(binom.isf(0.025, m, 0.5))
    return float(np.median(x)), (float(x[max(lo - 1, 0)]), float(x[min(hi, m - 1)]))


#: (metric, baseline rate, candidate rate, window, margin, margin type, baseline labels)
NULLS = [
    ("accuracy", p, p, w, m, "absolute", 5000)
    for p in (0.9, 0.7)
    for w in (200, 1000)
    for m in (0.0, 0.01)
] + [
    ("accuracy", 0.9, 0.89, 200, 0.01, "absolute", 5000),  # the boundary: drop = margin
    ("accuracy", 0.7, 0.69, 200, 0.01, "absolute", 5000),
    ("accuracy", 0.9, 0.9 * 0.98, 200, 0.02, "relative", 5000),
    ("error_rate", 0.1, 0.11, 200, 0.01, "absolute", 5000),
    ("accuracy", 0.9, 0.9, 200, 0.0, "absolute", 200),  # a small baseline
]


def _type_one(rng: np.random.Generator, quick: bool) -> list[Row]:
    deployments = 300 if quick else 4000
    horizon = 100 if quick else 1000
    rows = []
    for metric, p, p_cur, w, margin, kind, n_b in NULLS:
        d = deploy(
            rng,
            p_base=p,
            p_cur=p_cur,
            n_base=n_b,
            window=w,
            windows=horizon,
            deployments=deployments,
        )
        first = first_fail(
            d, margin=margin, margin_type=kind, higher_is_better=metric == "accuracy"
        )
        what = "unchanged model" if p_cur == p else "drop = margin (the null's boundary)"
        shown = f"{margin:g}" if kind == "absolute" else f"{margin:.0%} relative"
        for t in sorted({100, horizon}):
            rows.append(
                rate_at_most(
                    AREA,
                    f"P(ever fail) over {t:,} windows of {w:,}, {what}, {metric} {p}, "
                    f"margin {shown}, baseline {n_b:,}",
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
        d = deploy(
            rng,
            p_base=p_b,
            p_cur=p_c,
            n_base=n_b,
            window=200,
            windows=100,
            deployments=deployments,
        )
        first = first_fail(d)
        median, interval = median_interval(first)
        look = max(int(stated), 1)
        rows.append(
            value_at_most(
                AREA,
                f"median windows to fail, {p_b:.2f} -> {p_c:.2f}, 200 labels a window, "
                f"baseline {n_b:,}",
                stated,
                median,
                interval,
                f"{deployments:,} deployments, order-statistic interval; failed by window "
                f"{look}: {np.mean(first <= look):.2f}, the one-look test at window {look} "
                f"alone: {one_look_power(d, look):.2f}",
            )
        )
    return rows


GATE = parse_policy("name: online\nrules:\n  - {kind: regression, metric: accuracy}")


def gate_first_fail(d: Deployments, stop_at_fail: bool = True) -> np.ndarray:
    """:func:`first_fail` through the gate evaluator itself (:func:`govloop.gates.judge` on
    the accumulated evidence, as the stream worker judges): slower, so fewer deployments."""
    out = []
    windows = d.cumulative.shape[1]
    for k_b, path in zip(d.base_successes, d.cumulative, strict=True):
        base = {"accuracy": MetricValue(value=k_b / d.n_base, n=d.n_base, successes=int(k_b))}
        first = windows + 1
        for t, s in enumerate(path, start=1):
            n = d.window * t
            acc = {"accuracy": MetricValue(value=s / n, n=n, successes=int(s))}
            ev = Evidence(metrics=acc, baseline=base, cumulative=acc, looks=t)
            if judge(GATE, ev).outcome == "fail":
                first = t
                break
        out.append(first)
    return np.array(out)


def _through_the_gate(rng: np.random.Generator, quick: bool) -> list[Row]:
    deployments, windows = (20, 20) if quick else (400, 100)
    same = deploy(
        rng, p_base=0.9, p_cur=0.9, n_base=5000, window=200, windows=windows,
        deployments=deployments,
    )  # fmt: skip
    drop = deploy(
        rng, p_base=0.9, p_cur=0.85, n_base=5000, window=200, windows=30,
        deployments=deployments,
    )  # fmt: skip
    how = f"{deployments:,} deployments through govloop.gates.judge"
    median, interval = median_interval(gate_first_fail(drop))
    return [
        rate_at_most(
            AREA,
            f"P(ever fail) over {windows} windows of 200 through the gate evaluator, "
            "unchanged model, accuracy 0.9, margin 0, baseline 5,000",
            ALPHA,
            int((gate_first_fail(same) <= windows).sum()),
            deployments,
            how,
        ),
        value_at_most(
            AREA,
            "median windows to fail through the gate evaluator, 0.90 -> 0.85, "
            "200 labels a window, baseline 5,000",
            4,
            median,
            interval,
            how + ", order-statistic interval",
        ),
    ]


PATTERN = RegressionRule(kind="regression", metric="task*/acc")  # Holm, alpha 0.05


def pattern_first_fail(
    rng: np.random.Generator, k: int, *, p: float, n_base: int, window: int, windows: int
) -> int:
    """The window of the first fail of :data:`PATTERN` over ``k`` metrics of one unchanged
    deployment (independent baselines and streams), ``windows + 1`` for never."""
    names = [f"task{i:02d}/acc" for i in range(k)]
    k_b = rng.binomial(n_base, p, size=k)
    base = {
        m: MetricValue(value=kb / n_base, n=n_base, successes=int(kb))
        for m, kb in zip(names, k_b, strict=True)
    }
    s = np.cumsum(rng.binomial(window, p, size=(windows, k)), axis=0)
    for t in range(1, windows + 1):
        n = window * t
        acc = {
            m: MetricValue(value=c / n, n=n, successes=int(c))
            for m, c in zip(names, s[t - 1], strict=True)
        }
        ev = Evidence(metrics=acc, baseline=base, cumulative=acc, looks=t)
        if check_metric_rule(PATTERN, ev).outcome == "fail":
            return t
    return windows + 1


def _pattern(rng: np.random.Generator, quick: bool) -> list[Row]:
    out = []
    for k, deployments in ((5, 30), (50, 10)) if quick else ((5, 200), (50, 80)):
        windows = 100
        first = [
            pattern_first_fail(rng, k, p=0.9, n_base=5000, window=200, windows=windows)
            for _ in range(deployments)
        ]
        out.append(
            rate_at_most(
                AREA,
                f"P(ever fail), unchanged model, pattern rule over k={k} metrics, "
                f"{windows} windows of 200 (Holm over anytime-valid p-values), "
                "accuracy 0.9, margin 0, baseline 5,000",
                ALPHA,
                int(sum(f <= windows for f in first)),
                deployments,
                f"{deployments:,} deployments through govloop.gates.checks.check_metric_rule",
            )
        )
    return out


def rows(quick: bool) -> list[Row]:
    rng = np.random.default_rng(20300101)
    head = _type_one(rng, quick) + _power(rng, quick) + _through_the_gate(rng, quick)
    return head + _pattern(rng, quick)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for r in rows(quick):
        print(f"{'holds' if r.holds else 'DOES NOT HOLD'} | {r.claim} | {r.stated} | {r.measured}")
