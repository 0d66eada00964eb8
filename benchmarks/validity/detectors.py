"""The calibrated streaming detectors (``govloop.stats.calibrated``): what they promise, measured.

The streams, the oracle CUSUM and the delay are the drift benchmark's
(``benchmarks/drift/streams.py``), on seeds of their own (from 60,000 and
70,000; the drift benchmark uses 0-29, 20,000, 30,000 and 40,000).

* False alarms per 10,000 events on no-change streams, per kind, at most the
  configured 1.0: every stream gets a fresh 5,000-value reference and its own
  calibration, so the reference's sampling error is part of the rate.  Exact
  Poisson interval on the count over the events fed.
* Median detection delay per issue target (sudden 0.5 sd <= 45, gradual ramp to
  0.5 sd over 2,000 <= 800, sd x 1.5 <= 30, share x 1.75 <= 120, error rate
  10 % -> 15 % <= 320), with a distribution-free order-statistic interval for
  the median; and no missed change.
* At half and double those sizes, the median delay over that of the
  likelihood-ratio CUSUM for the exact post-change distribution (one-sided, and
  both directions at the size), its threshold simulated on the true pre-change
  distribution to the same 1 false alarm per 10,000 events: at most 1.3, with a
  paired bootstrap interval for the ratio of medians.

One reference and calibration per (kind, seed) serves all the change streams of
that seed (each stream its own draw, the detector fresh for each).
"""

from __future__ import annotations

import math
import multiprocessing
import sys
from pathlib import Path

import numpy as np
from _rows import Row, value_at_most
from fleet import percentile_interval

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "drift"))

from streams import (
    SHIFTS,
    Oracle,
    calibrate_oracle,
    detector_values,
    first_delay,
    make_stream,
    median_delay,
    poisson_interval,
    reference,
    shift_stream,
)

from govloop.stats.calibrated import Calibration, calibrate

__all__ = ["rows"]

AREA = "detector"
PER_10K = 1.0
FA_SEED, DELAY_SEED = 60_000, 70_000
N_CHANGE = 12_000  # change in [6,000, 7,000): at least 5,000 events after it
PRE, POST = 5_000, 20_000  # the oracle streams

#: Issue targets: stream kind -> (detector kind, bound on the median delay, words).
TARGETS = {
    "sudden": ("numeric", 45, "sudden mean shift 0.5 sd"),
    "gradual": ("numeric", 800, "mean ramp to 0.5 sd over 2,000 events"),
    "variance": ("numeric", 30, "sd x 1.5"),
    "categorical": ("categorical", 120, "share of one category x 1.75 (0.2 -> 0.35)"),
    "error": ("binary", 320, "error rate 10 % -> 15 %"),
}
FAMILIES = {"numeric": ("mean", "spread"), "categorical": ("share",), "binary": ("rate",)}
SIZES = ("half", "double")
OracleKey = tuple[str, str, bool]


def _calibration(kind: str, key: tuple[int, int]) -> Calibration:
    return calibrate(reference(kind, key), kind, false_alarms_per_10k=PER_10K, seed=key[0])


def _fa_task(task: tuple[str, int, int]) -> tuple[str, int, int]:
    """(kind, false alarms, events) of one no-change stream with a fresh reference."""
    kind, seed, n = task
    family = FAMILIES[kind][0]
    rng = np.random.default_rng([seed, 3])
    values = detector_values(kind, SHIFTS[family]["stated"].draw(rng, n, False))
    alarms = _calibration(kind, (seed, 1)).detector().update_many(values)
    return kind, len(alarms), n


def _delay_task(
    task: tuple[str, int, dict[OracleKey, Oracle]],
) -> list[tuple[str, float, float, float]]:
    """(target, calibrated delay, one-sided oracle, two-sided oracle) on one seed."""
    kind, seed, oracles = task
    calibration = _calibration(kind, (seed, 2))
    out = []
    for target, (k, _, _) in TARGETS.items():
        if k == kind:
            s = make_stream(target, seed, N_CHANGE, N_CHANGE)
            assert s.change is not None
            alarms = calibration.detector().update_many(detector_values(kind, s.values))
            out.append((target, first_delay(alarms, s.change), math.nan, math.nan))
    for family in FAMILIES[kind]:
        for size in SIZES:
            values, change = shift_stream(SHIFTS[family][size], seed, PRE, POST)
            alarms = calibration.detector().update_many(detector_values(kind, values))
            out.append(
                (
                    f"{family} {size}",
                    first_delay(alarms, change),
                    oracles[(family, size, False)].delay(values, change),
                    oracles[(family, size, True)].delay(values, change),
                )
            )
    return out


def _oracle_task(task: tuple[str, str, bool, bool]) -> Oracle:
    family, size, two_sided, quick = task
    sizes = ((100, 5_000), (500, 5_000)) if quick else ((400, 10_000), (4_000, 10_000))
    seed = 500_000 + 1_000 * list(SHIFTS).index(family) + 10 * SIZES.index(size) + two_sided
    return calibrate_oracle(SHIFTS[family][size], two_sided, PER_10K, seed, *sizes)


def ratio_interval(
    mine: np.ndarray, oracle: np.ndarray, seed: int, draws: int = 2_000
) -> tuple[float, tuple[float, float]]:
    """Ratio of medians (misses as infinite) and a paired percentile-bootstrap 95 % interval.

    >>> r, (lo, hi) = ratio_interval(np.full(20, 12.0), np.full(20, 10.0), 0)
    >>> round(r, 2), round(lo, 2), round(hi, 2)
    (1.2, 1.2, 1.2)
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, mine.size, (draws, mine.size))
    with np.errstate(invalid="ignore"):
        boot = np.median(mine[idx], axis=1) / np.median(oracle[idx], axis=1)
    lo, hi = np.quantile(np.nan_to_num(boot, nan=math.inf), [0.025, 0.975])
    return float(median_delay(mine) / median_delay(oracle)), (float(lo), float(hi))


def rows(quick: bool) -> list[Row]:
    fa_streams, fa_events = (3, 20_000) if quick else (30, 50_000)
    seeds = 5 if quick else 60
    keys = [(f, size, two) for f in SHIFTS for size in SIZES for two in (False, True)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        fa = pool.map(
            _fa_task, [(k, FA_SEED + i, fa_events) for k in FAMILIES for i in range(fa_streams)]
        )
        oracles = dict(zip(keys, pool.map(_oracle_task, [(*k, quick) for k in keys]), strict=True))
        tasks = [(k, DELAY_SEED + i, oracles) for i in range(seeds) for k in FAMILIES]
        found = [d for batch in pool.map(_delay_task, tasks) for d in batch]
    out = []
    for kind in FAMILIES:
        k = sum(a for kd, a, _ in fa if kd == kind)
        n = sum(e for kd, _, e in fa if kd == kind)
        lo, hi = poisson_interval(k, n)
        out.append(
            value_at_most(
                AREA,
                f"false alarms per 10k events, no-change {kind} streams, calibrated to "
                f"{PER_10K:g}/10k on a fresh 5,000-value reference per stream",
                PER_10K,
                1e4 * k / n,
                (1e4 * lo, 1e4 * hi),
                f"{k} alarms in {n:,} events ({fa_streams} streams, restarting); exact Poisson",
            )
        )
    for target, (_, bound, words) in TARGETS.items():
        d = np.array([x[1] for x in found if x[0] == target])
        point, lo, hi = percentile_interval(d, q=0.5)
        misses = int(np.isinf(d).sum())
        how = f"{d.size} streams, change in [6,000, 7,000) of {N_CHANGE:,}"
        out.append(
            value_at_most(
                AREA,
                f"median delay, {words}, at {PER_10K:g} false alarm per 10k",
                bound,
                point,
                (lo, hi),
                how + "; order-statistic interval, misses as never; judged on the median",
                point=True,
            )
        )
        out.append(value_at_most(AREA, f"missed changes, {words}", 0, misses, how=how))
    for i, (family, size) in enumerate((f, s) for f in SHIFTS for s in SIZES):
        rows_ = np.array([x[1:] for x in found if x[0] == f"{family} {size}"])
        for j, sides in ((1, "one-sided"), (2, "two-sided")):
            ratio, interval = ratio_interval(rows_[:, 0], rows_[:, j], seed=i * 2 + j)
            o = oracles[(family, size, j == 2)]
            olo, ohi = o.interval
            out.append(
                value_at_most(
                    AREA,
                    f"median delay / {sides} oracle CUSUM's, {SHIFTS[family][size].describe()} "
                    f"({size} size)",
                    1.3,
                    ratio,
                    interval,
                    f"{len(rows_)} streams; oracle threshold {o.threshold:.2f} at "
                    f"{o.per_10k:.2f} [{olo:.2f}, {ohi:.2f}]/10k on {o.events:,} null "
                    f"events; paired bootstrap; judged on the ratio",
                    point=True,
                )
            )
    return out
