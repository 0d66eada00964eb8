"""The offline regression test's error rates: exact type-I per cell, pattern FWER, power.

The test (:mod:`govloop.stats.two_sample`) gives its rejection region for given
sizes, margin and alpha; its probability at the true rates is an exact binomial
sum, so the type-I of a cell needs no simulation.  Cells: n_baseline, n_candidate
in {50, 200, 1000, 10000}, accuracy in {0.5, 0.8, 0.95, 0.99}, margin 0 / absolute
0.01 / relative 0.02, at the boundary (the true drop equal to the margin), for
accuracy (higher is better) and error rate (1 - accuracy, lower is better), at
alpha 0.05 and 0.0005.  One row per (direction, margin, alpha): the worst cell and
how many hold.  One pattern rule is simulated through the gate itself.

The standard-error path (values in [0, 1], no counts) on the same cells, margins and
alphas: for 0/1 scores (n unknown to the gate) exactly, as a sum over both binomials;
for Beta scores (concentration 0.5, 5, 50; n known) by simulation, through the gate's
own arithmetic (``bounded_p_values`` and the ``MIN_EFFECTIVE`` refusal) on arrays.
"""

from __future__ import annotations

import numpy as np
from _rows import Row, rate_at_most, value_at_most
from scipy.stats import binom

from govloop.gates import Evidence, MetricValue, RegressionRule
from govloop.gates.checks import MIN_EFFECTIVE, MIN_RARER, check_metric_rule
from govloop.stats.significance import bounded_p_values
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


DISTRIBUTIONS = (0.5, 5.0, 50.0)  # Beta concentrations of the per-sample scores
BLOCKS = ((200, 4), (1000, 5), (10000, 10))  # each size as blocks of the one before


def _valid(v: np.ndarray, se: np.ndarray, n: float | None) -> np.ndarray:
    """The gate's own refusal (inconclusive, never a fail): a zero standard error, under
    MIN_EFFECTIVE effective samples on the rarer side, or (n known) n under MIN_RARER."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rarer = np.minimum(v, 1 - v)
        ok = (se > 0) & (v * (1 - v) / (se * se) * rarer >= MIN_EFFECTIVE)
        return ok if n is None else ok & (n * rarer >= MIN_RARER)


def _fails(
    vb, sb, nb, vc, sc, nc, margin: float, relative: bool, alpha: float, known: bool = True
) -> np.ndarray:
    """Whether the gate fails each (baseline, candidate) pair: the gate's arithmetic
    (bounded_p_values) on arrays; tests/test_significance.py checks it against the gate."""
    ok = _valid(vb, sb, nb if known else None) & _valid(vc, sc, nc if known else None)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = margin * vb if relative else margin
        p = bounded_p_values(vb, sb, vc, sc, vb - vc, m, nb, nc)
    return ok & (p < alpha)


def _cells(sizes: tuple[int, ...]) -> list[tuple[int, int, float, str, float, bool]]:
    return [
        (nb, nc, acc, label, margin, rel)
        for nb in sizes
        for nc in sizes
        for acc in ACCURACIES
        for label, margin, rel in MARGINS
    ]


def _bernoulli_size(cell, alpha: float, ddof: int) -> float:
    """Exact P(fail) for 0/1 scores whose standard error is sqrt(v (1 - v) / (n - ddof)),
    the size n unknown to the gate: a sum over both binomials (tails beyond 1e-12 left out)."""
    nb, nc, acc, _, margin, rel = cell
    pb, pc = _boundary(acc, margin, rel, True)
    sides = []
    for n, p in ((nb, pb), (nc, pc)):
        k = np.arange(int(binom.ppf(1e-12, n, p)), int(binom.isf(1e-12, n, p)) + 1)
        v = k / n
        sides.append((v, np.sqrt(v * (1 - v) / (n - ddof)), float(n - ddof), binom.pmf(k, n, p)))
    (vb, sb, eb, wb), (vc, sc, ec, wc) = sides
    fail = _fails(
        vb[:, None], sb[:, None], eb, vc[None, :], sc[None, :], ec, margin, rel, alpha, False
    )
    return float(wb @ fail @ wc)


def _bernoulli_rows(sizes: tuple[int, ...]) -> list[Row]:
    rows = []
    for ddof, how in ((0, "sqrt(p(1-p)/n)"), (1, "sample sd / sqrt(n)")):
        for alpha in ALPHAS:
            cells = _cells(sizes)
            sized = [(_bernoulli_size(c, alpha, ddof), c) for c in cells]
            size, (nb, nc, acc, label, _, _) = max(sized)
            held = sum(x <= alpha for x, _ in sized)
            rows.append(
                value_at_most(
                    AREA,
                    f"type-I from standard errors, 0/1 scores, stderr {how}, n unknown, "
                    f"alpha {alpha:g}: worst of {len(cells)} cells (n_b={nb}, n_c={nc}, "
                    f"acc {acc}, {label}); {held} hold",
                    alpha,
                    size,
                    how="exact binomial sum",
                )
            )
    return rows


def _center(s1: np.ndarray, s2: np.ndarray, n: int, mean: float) -> tuple[np.ndarray, np.ndarray]:
    """Map every score of a pool by one affine map of [0, 1] into itself (x -> c x when the
    pool's mean is too high, 1 - c (1 - x) when too low, c <= 1) so its mean is exact."""
    got = s1.mean() / n
    if got > mean:
        c = mean / got
        return c * s1, c * c * s2
    c = (1 - mean) / (1 - got)
    return n * (1 - c) + c * s1, n * (1 - c) ** 2 + 2 * c * (1 - c) * s1 + c * c * s2


def _pools(mean: float, kappa: float, size: int, rng: np.random.Generator) -> dict:
    """``size`` samples of (sum, sum of squares) of n Beta(mean kappa, (1 - mean) kappa)
    scores for each n in SIZES: n = 50 drawn, each larger n the sum of blocks drawn with
    replacement from the pool of the size before (sampling from the empirical law of the
    blocks, each pool's mean made exact by :func:`_center`)."""
    x = rng.beta(mean * kappa, (1 - mean) * kappa, (size, SIZES[0]))
    pools = {SIZES[0]: _center(x.sum(1), (x * x).sum(1), SIZES[0], mean)}
    prev = SIZES[0]
    for n, k in BLOCKS:
        idx = rng.integers(0, size, (size, k))
        pools[n] = _center(pools[prev][0][idx].sum(1), pools[prev][1][idx].sum(1), n, mean)
        prev = n
    return pools


def _mean_se(pool: dict, n: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s1, s2 = pool[n][0][idx], pool[n][1][idx]
    v = s1 / n
    return v, np.sqrt(np.maximum(s2 - n * v * v, 0) / (n - 1) / n)


def _beta_rates(kappa: float, cells: list, trials: int, rng: np.random.Generator) -> list:
    """(fails at each alpha, cell) of Beta scores, n known to the gate (the value not a
    whole fraction, so no counts)."""
    out, pools = [], {}
    for cell in cells:
        nb, nc, acc, _, margin, rel = cell
        pb, pc = _boundary(acc, margin, rel, True)
        for key in (("b", pb), ("c", pc)):
            if key not in pools:
                pools[key] = _pools(key[1], kappa, trials, rng)
        vb, sb = _mean_se(pools["b", pb], nb, rng.integers(0, trials, trials))
        vc, sc = _mean_se(pools["c", pc], nc, rng.integers(0, trials, trials))
        fails = [int(_fails(vb, sb, nb, vc, sc, nc, margin, rel, a).sum()) for a in ALPHAS]
        out.append((fails, cell))
    return out


def _beta_rows(sizes: tuple[int, ...], screen: int, trials: int, seed: int = 3) -> list[Row]:
    """Per-sample scores from a Beta with mean acc and concentration 0.5 (near 0/1), 5 or
    50 (tight, skewed near 0 and 1); value their mean, standard error their sd / sqrt(n),
    n given.  Every cell is screened with ``screen`` trials; the worst at each alpha is
    measured again with fresh pools and ``trials`` trials, so the row is not the luckiest
    of many noisy cells."""
    rng = np.random.default_rng(seed)
    rows = []
    cells = _cells(sizes)
    for kappa in DISTRIBUTIONS:
        screened = _beta_rates(kappa, cells, screen, rng)
        for i, alpha in enumerate(ALPHAS):
            _, cell = max(screened, key=lambda fc, i=i: fc[0][i])
            fails = _beta_rates(kappa, [cell], trials, rng)[0][0][i]
            nb, nc, acc, label, _, _ = cell
            rows.append(
                rate_at_most(
                    AREA,
                    f"type-I from standard errors, Beta scores (concentration {kappa:g}), n "
                    f"known, alpha {alpha:g}: worst of {len(cells)} cells (n_b={nb}, "
                    f"n_c={nc}, acc {acc}, {label})",
                    alpha,
                    fails,
                    trials,
                )
            )
    return rows


def _stderr_power_row() -> Row:
    """0/1 scores, stderr sqrt(p(1-p)/n), n unknown: exact, as in _bernoulli_size."""
    k = np.arange(1001)
    v = k / 1000
    se = np.sqrt(v * (1 - v) / 1000)
    fail = _fails(
        v[:, None], se[:, None], 1000.0, v[None, :], se[None, :], 1000.0, 0, False, 0.05, False
    )
    size = float(binom.pmf(k, 1000, 0.90) @ fail @ binom.pmf(k, 1000, 0.85))
    return rate_at_least_exact(
        "power from standard errors only (0/1 scores), accuracy 0.90 -> 0.85, n=1000 each, "
        "margin 0, alpha 0.05",
        0.9,
        size,
    )


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
    out += _bernoulli_rows(sizes)
    out += _beta_rows(sizes, 20_000 if quick else 100_000, 100_000 if quick else 600_000)
    out.append(_power_row())
    out.append(_stderr_power_row())
    return out


__all__ = ["rows"]
