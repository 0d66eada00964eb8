"""The offline regression test's error rates: exact type-I per cell, pattern FWER, power.

The test (:mod:`govloop.stats.two_sample`) gives its rejection region for given
sizes, margin and alpha; its probability at the true rates is an exact binomial
sum, so the type-I of a cell needs no simulation.  Cells: n_baseline, n_candidate
in {50, 200, 1000, 10000}, accuracy in {0.5, 0.8, 0.95, 0.99}, margin 0 / absolute
0.01 / relative 0.02, at the boundary (the true drop equal to the margin), for
accuracy (higher is better) and error rate (1 - accuracy, lower is better), at
alpha 0.05 and 0.0005.  One row per (direction, margin, alpha): the worst cell and
how many hold.  The standard-error path and one pattern rule are simulated
through the gate itself.
"""

from __future__ import annotations

import math

import numpy as np
from _rows import Row, rate_at_most, value_at_most

from govloop.gates import Evidence, MetricValue, RegressionRule
from govloop.gates.checks import check_metric_rule
from govloop.stats.two_sample import rejection_region

SIZES = (50, 200, 1000, 10000)
ACCURACIES = (0.5, 0.8, 0.95, 0.99)
MARGINS = (("margin 0", 0.0, False), ("abs 0.01", 0.01, False), ("rel 0.02", 0.02, True))
ALPHAS = (0.05, 0.0005)
AREA = "offline gate"


def _boundary(acc: float, margin: float, relative: bool, higher: bool) -> tuple[float, float]:
    """(baseline rate, candidate rate) of the metric with the true drop equal to the margin."""
    if higher:
        return acc, (1 - margin) * acc if relative else acc - margin
    err = 1 - acc
    return err, (1 + margin) * err if relative else err + margin


def _type_one_rows(sizes: tuple[int, ...]) -> list[Row]:
    rows = []
    for higher, metric in ((True, "accuracy"), (False, "error rate")):
        for label, margin, relative in MARGINS:
            for alpha in ALPHAS:
                cells = []
                for nb in sizes:
                    for nc in sizes:
                        region = rejection_region(nb, nc, alpha, margin, relative, higher)
                        for acc in ACCURACIES:
                            pb, pc = _boundary(acc, margin, relative, higher)
                            cells.append((region.size(pb, pc), nb, nc, acc))
                worst = max(cells)
                held = sum(c[0] <= alpha for c in cells)
                size, nb, nc, acc = worst
                rows.append(
                    value_at_most(
                        AREA,
                        f"type-I at the boundary, {metric}, {label}, alpha {alpha:g}: worst of "
                        f"{len(cells)} cells (n_b={nb}, n_c={nc}, acc {acc}); {held} hold",
                        alpha,
                        size,
                        how="exact binomial sum over the rejection region",
                    )
                )
    return rows


def _family_rows(n: int) -> list[Row]:
    """A no-change pattern rule over k independent tasks, Holm at alpha 0.05: Holm fails
    one iff the smallest p-value is below alpha / k, so P(any fail) = 1 - (1 - s)^k with
    s the exact size of the level-alpha/k region.  Worst over the accuracies."""
    rows = []
    for k in (5, 50):
        region = rejection_region(n, n, 0.05 / k)
        fwer = max(1 - (1 - region.size(a, a)) ** k for a in ACCURACIES)
        rows.append(
            value_at_most(
                AREA,
                f"pattern rule over k={k} unchanged tasks (n={n} each), Holm: P(any fail), "
                "worst accuracy",
                0.05,
                fwer,
                how="exact: 1 - (1 - size at alpha/k)^k",
            )
        )
    return rows


def _simulated_family(trials: int, k: int = 5, n: int = 50, seed: int = 11) -> Row:
    """The same through the gate's own pattern path (check_metric_rule)."""
    rng = np.random.default_rng(seed)
    rule = RegressionRule(kind="regression", metric="t*/acc")
    fails = 0
    for _ in range(trials):
        base, cur = rng.binomial(n, 0.8, k), rng.binomial(n, 0.8, k)
        ev = Evidence(
            metrics={
                f"t{i}/acc": MetricValue(value=c / n, n=n, successes=int(c))
                for i, c in enumerate(cur)
            },
            baseline={
                f"t{i}/acc": MetricValue(value=b / n, n=n, successes=int(b))
                for i, b in enumerate(base)
            },
        )
        fails += check_metric_rule(rule, ev).outcome == "fail"
    return rate_at_most(
        AREA,
        f"pattern rule over k={k} unchanged tasks (n={n}, acc 0.8), through the gate",
        0.05,
        fails,
        trials,
    )


def _stderr_fails(nb: int, nc: int, acc: float, trials: int, rng: np.random.Generator) -> int:
    rule = RegressionRule(kind="regression", metric="acc")
    a, b = acc * 5, (1 - acc) * 5
    fails = 0
    for _ in range(trials):
        xs, ys = rng.beta(a, b, nb), rng.beta(a, b, nc)
        ev = Evidence(
            metrics={"acc": MetricValue(value=ys.mean(), stderr=ys.std(ddof=1) / math.sqrt(nc))},
            baseline={"acc": MetricValue(value=xs.mean(), stderr=xs.std(ddof=1) / math.sqrt(nb))},
        )
        fails += check_metric_rule(rule, ev).outcome == "fail"
    return fails


def _stderr_rows(screen: int, trials: int, seed: int = 3) -> list[Row]:
    """Estimates with standard errors and no counts (Lighteval-like): per-sample scores in
    [0, 1] drawn from a Beta with mean acc and concentration 5 (skewed near 0 and 1), the
    value their mean, the standard error their sd / sqrt(n).  No change; margin 0, alpha
    0.05; an inconclusive check (too near 0 or 1 for a z-test) does not fail.  Every cell
    is screened with a few trials; the worst is measured again with fresh ones, so the
    row is not the luckiest of many noisy cells.  The stated bound is the docs': 1.5 alpha."""
    rng = np.random.default_rng(seed)
    cells = [(nb, nc, acc) for nb in SIZES for nc in SIZES for acc in ACCURACIES]
    screened = [(_stderr_fails(*cell, screen, rng), cell) for cell in cells]
    _, (nb, nc, acc) = max(screened)
    fails = _stderr_fails(nb, nc, acc, trials, rng)
    return [
        rate_at_most(
            AREA,
            f"type-I from standard errors (z-test), the worst of {len(cells)} cells "
            f"(n_b={nb}, n_c={nc}, acc {acc}), skewed scores",
            0.075,
            fails,
            trials,
        )
    ]


def _power_row() -> Row:
    size = rejection_region(1000, 1000, 0.05).size(0.90, 0.85)
    return rate_at_least_exact(
        "power, accuracy 0.90 -> 0.85, n=1000 each, margin 0, alpha 0.05", 0.95, size
    )


def rate_at_least_exact(claim: str, bound: float, value: float) -> Row:
    return Row(AREA, claim, f">= {bound:g}", f"{value:.4g}", value >= bound, "exact binomial sum")


def rows(quick: bool) -> list[Row]:
    sizes = (50, 1000) if quick else SIZES
    out = _type_one_rows(sizes)
    out += _family_rows(200)
    out.append(_simulated_family(100 if quick else 2000))
    out += _stderr_rows(20 if quick else 300, 300 if quick else 4000)
    out.append(_power_row())
    return out


__all__ = ["rows"]
