"""Drift detection, quality and speed: govloop beside River, Evidently and a no-skill baseline.

Labelled synthetic streams are made here, every method is fed the same
streams in the same run, and the script prints markdown tables: median
detection delay, missed detections, false alarms per 10,000 events and
events per second, with ratios to the best peer.  See README.md beside it.

    .venv/bin/python benchmarks/drift/bench_drift.py            # full run, 10-20 min on 2 cores
    .venv/bin/python benchmarks/drift/bench_drift.py --quick    # ~60 s smoke run

A second table compares the calibrated detector with an oracle: the
likelihood-ratio CUSUM for exactly the post-change distribution, at the same
false-alarm rate, for each family at half, the stated and double size.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np
from scipy.stats import poisson
from streams import (
    CONTROL_KINDS,
    DETECTOR_KIND,
    DRIFT_KINDS,
    FAMILY,
    KINDS,
    LABELS,
    SHIFTS,
    Oracle,
    Stream,
    calibrate_oracle,
    detector_values,
    first_delay,
    make_stream,
    median_delay,
    poisson_interval,
    reference,
    shift_stream,
)

from govloop.stats.adwin import ADWIN
from govloop.stats.calibrated import calibrate
from govloop.stats.cusum import CUSUM
from govloop.stats.fleet import FleetBudget
from govloop.stats.page_hinkley import PageHinkley
from govloop.stats.profile import Profile, compare, drifted_features

# -- methods: each takes a stream and returns (alarm indices, seconds), or None if n/a -----------

#: (alarm indices, seconds) or (alarm indices, seconds, set-up seconds kept apart)
Result = tuple[list[int], float] | tuple[list[int], float, float] | None


def govloop_sequential(factory: Callable[[], Any]) -> Callable[[Stream, int], Result]:
    def run(s: Stream, window: int) -> Result:
        if s.family == "categorical":
            return None
        detector = factory()
        t0 = time.perf_counter()
        alarms = detector.update_many(s.values)
        return alarms.tolist(), time.perf_counter() - t0

    return run


def govloop_calibrated(s: Stream, window: int) -> Result:
    """``govloop.stats.calibrated``: calibrated on 5,000 pre-change draws of the stream's
    family (a generator of their own per stream) to 1 false alarm per 10,000 events,
    seeded by the stream's seed.  The time is the detector's; the calibration's is
    returned apart (it runs once per model version and feature, not per event)."""
    kind = DETECTOR_KIND[s.family]
    t0 = time.perf_counter()
    calibration = calibrate(
        reference(kind, (s.seed, KINDS.index(s.kind))), kind, false_alarms_per_10k=1.0, seed=s.seed
    )
    setup = time.perf_counter() - t0
    values = detector_values(kind, s.values)
    detector = calibration.detector()
    t0 = time.perf_counter()
    alarms = detector.update_many(values)
    return alarms.tolist(), time.perf_counter() - t0, setup


def govloop_episodes(s: Stream, window: int) -> Result:
    """The stream worker's concept-drift path on the joined error stream
    (``govloop.streams.concept.advance``): the first 5,000 outcomes are the reference,
    a binary calibrated detector at 1 false alarm per 10,000 outcomes watches rises,
    episodes with a return detector; the state is carried between batches of 1,000 as
    the worker carries it through Redis."""
    from govloop.streams.concept import advance

    if s.family != "error":
        return None
    state, alarms = None, []
    t0 = time.perf_counter()
    for start in range(0, len(s.values), 1_000):
        chunk = s.values[start : start + 1_000].tolist()
        state, changes = advance(
            state, chunk, list(range(start, start + len(chunk))), 5_000, lambda _: 1.0
        )
        alarms += [int(f.change.ts) for f in changes if f.change.state == "drift"]
    return alarms, time.perf_counter() - t0


def river_detector(factory: Callable[[int], Any]) -> Callable[[Stream, int], Result]:
    def run(s: Stream, window: int) -> Result:
        if s.family == "categorical":
            return None  # category codes have no order: not a sensible input
        xs, detector, alarms = s.values.tolist(), factory(s.seed), []
        t0 = time.perf_counter()
        for i, x in enumerate(xs):
            detector.update(x)
            if detector.drift_detected:
                alarms.append(i)
        return alarms, time.perf_counter() - t0

    return run


def _rows(s: Stream) -> list[tuple[dict[str, float], dict[str, str]]]:
    """The stream as the worker's (numeric, categorical) feature rows.

    Booleans are categorical in the worker (``judging/features.py``), so the
    error indicator is the category "true"/"false".
    """
    if s.family == "numeric":
        return [({"x": v}, {}) for v in s.values.tolist()]
    if s.family == "categorical":
        return [({}, {"c": c}) for c in LABELS[s.values.astype(int)].tolist()]
    return [({}, {"error": "true" if v else "false"}) for v in s.values.tolist()]


def govloop_windowed(s: Stream, window: int) -> Result:
    """The stream worker's path: window profile vs the first window, KS / chi-square, Holm 0.01."""
    rows, budget, alarms = _rows(s), FleetBudget(alpha=0.01, method="holm"), []
    t0 = time.perf_counter()
    reference = Profile()
    reference.update_many(rows[:window])
    for start in range(window, len(rows) - window + 1, window):
        current = Profile()
        current.update_many(rows[start : start + window])
        results = {d.feature: d for d in compare(reference, current, "ks", "chi_square", 50)}
        if drifted_features(results, budget):  # type: ignore[arg-type]
            alarms.append(start + window - 1)
    return alarms, time.perf_counter() - t0


def evidently_windowed(s: Stream, window: int) -> Result:
    """Evidently's DataDriftPreset with its default tests, on the same windows and reference."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    if s.family == "numeric":
        column, data = "x", s.values
        definition = DataDefinition(numerical_columns=["x"])
    else:
        column = "c" if s.family == "categorical" else "error"
        data = (
            LABELS[s.values.astype(int)]
            if s.family == "categorical"
            else np.where(s.values > 0, "true", "false")
        )
        definition = DataDefinition(categorical_columns=[column])
    frames = [
        pd.DataFrame({column: data[a : a + window]})
        for a in range(0, len(data) - window + 1, window)
    ]
    alarms = []
    t0 = time.perf_counter()
    report = Report([DataDriftPreset()])
    reference = Dataset.from_pandas(frames[0], data_definition=definition)
    for i, frame in enumerate(frames[1:], start=1):
        snapshot = report.run(Dataset.from_pandas(frame, data_definition=definition), reference)
        counts = [
            m["value"]["count"]
            for m in snapshot.dict()["metrics"]
            if m["metric_name"].startswith("DriftedColumnsCount")
        ]
        if counts[0] > 0:
            alarms.append((i + 1) * window - 1)
    return alarms, time.perf_counter() - t0


def fixed_interval(s: Stream, window: int) -> Result:
    """No skill: an alarm every `window` events, whatever the data."""
    return list(range(window - 1, len(s.values), window)), math.nan


def _river(name: str) -> Callable[[int], Any]:
    from river import drift

    return {
        "ADWIN": lambda seed: drift.ADWIN(),
        "PageHinkley": lambda seed: drift.PageHinkley(),
        "KSWIN": lambda seed: drift.KSWIN(seed=seed),
    }[name]


METHODS: dict[str, Callable[[Stream, int], Result]] = {
    "govloop ADWIN": govloop_sequential(ADWIN),
    "govloop PageHinkley": govloop_sequential(PageHinkley),
    "govloop CUSUM": govloop_sequential(CUSUM),
    "govloop CUSUM h=8": govloop_sequential(lambda: CUSUM(threshold=8.0)),
    "govloop calibrated": govloop_calibrated,
    "govloop windowed KS/chi2": govloop_windowed,
    "govloop worker concept episodes": govloop_episodes,
    "River ADWIN": river_detector(_river("ADWIN")),
    "River PageHinkley": river_detector(_river("PageHinkley")),
    "River KSWIN": river_detector(_river("KSWIN")),
    "Evidently DataDriftPreset": evidently_windowed,
    "fixed interval": fixed_interval,
}
PEERS = ("River ADWIN", "River PageHinkley", "River KSWIN", "Evidently DataDriftPreset")
GOVLOOP = tuple(m for m in METHODS if m.startswith("govloop"))
WINDOWED = ("govloop windowed KS/chi2", "Evidently DataDriftPreset")

#: The false-alarm rate each govloop method is configured for, per 10,000 events, by family
#: (from the docstrings' tables; windowed: alpha 0.01 per window); None: not documented.
CONFIGURED: dict[str, dict[str, float | None]] = {
    "govloop ADWIN": {"numeric": 0.0025, "error": 0.0015},
    "govloop PageHinkley": {"numeric": 6.3, "error": 0.29},
    "govloop CUSUM": {"numeric": 16.7, "error": None},
    "govloop CUSUM h=8": {"numeric": 0.93, "error": None},
    "govloop calibrated": {"numeric": 1.0, "categorical": 1.0, "error": 1.0},
    # the worker's concept detector, calibrated to 1 per 10,000 (govloop.streams.concept)
    "govloop worker concept episodes": {"numeric": None, "error": 1.0},
}


# -- running ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    method: str
    kind: str
    seed: int
    n: int
    change: int | None
    alarms: tuple[int, ...]
    seconds: float
    setup: float = 0.0


def run_task(task: tuple[str, int, int, int, int]) -> list[Outcome]:
    kind, seed, n, n_control, window = task
    warnings.simplefilter("ignore")
    stream = make_stream(kind, seed, n, n_control)
    out = []
    for name, method in METHODS.items():
        result = method(stream, window)
        if result is not None:
            alarms, seconds, *setup = result
            out.append(
                Outcome(
                    name,
                    kind,
                    seed,
                    stream.values.size,
                    stream.change,
                    tuple(alarms),
                    seconds,
                    *setup,
                )
            )
    return out


@dataclass
class Score:
    streams: int = 0
    delays: list[int] | None = None  # events after the change up to the alarm, alarm included
    missed: int = 0
    false: int = 0
    pre_events: int = 0  # events before the change (all of a control)
    pre_windows: int = 0  # windows tested that end before the change
    streams_with_false: int = 0
    events: int = 0
    seconds: float = 0.0
    setup: float = 0.0  # calibration, kept out of events/s

    def add(self, o: Outcome, window: int) -> None:
        self.streams += 1
        self.delays = self.delays or []
        cut = o.n if o.change is None else o.change
        false = sum(a < cut for a in o.alarms)
        self.false += false
        self.streams_with_false += false > 0
        self.pre_events += cut
        self.pre_windows += max(0, cut // window - 1)
        self.events += o.n
        self.seconds += o.seconds
        self.setup += o.setup
        if o.change is not None:
            after = [a for a in o.alarms if a >= o.change]
            if after:
                self.delays.append(after[0] - o.change + 1)
            else:
                self.missed += 1

    @property
    def fa_rate(self) -> float:
        return 1e4 * self.false / self.pre_events if self.pre_events else math.nan

    @property
    def median_delay(self) -> float:
        return float(statistics.median(self.delays)) if self.delays else math.inf

    @property
    def rank_delay(self) -> float:
        """Median delay with missed streams counted as infinitely late."""
        return float(statistics.median((self.delays or []) + [math.inf] * self.missed))

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else math.nan

    @property
    def fa_interval(self) -> tuple[float, float]:
        """95 % Poisson interval of the false alarms per 10,000 pre-change events."""
        lo, hi = poisson_interval(self.false, self.pre_events)
        return 1e4 * lo, 1e4 * hi

    def fa_text(self) -> str:
        lo, hi = self.fa_interval
        return f"{fmt(self.fa_rate)} [{fmt(lo)}, {fmt(hi)}]"


def score(
    outcomes: Sequence[Outcome], window: int, key: Callable[[Outcome], str]
) -> dict[tuple[str, str], Score]:
    table: dict[tuple[str, str], Score] = {}
    for o in outcomes:
        table.setdefault((o.method, key(o)), Score()).add(o, window)
    return table


# -- printing ---------------------------------------------------------------------------------


def fmt(x: float, digits: int = 2) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "-"
    if x == math.inf:
        return "never"
    return f"{x:,.{digits}f}" if digits else f"{x:,.0f}"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def best_peer(
    fam: dict[tuple[str, str], Score],
    kinds: dict[tuple[str, str], Score],
    method: str | None,
    kind: str,
) -> str | None:
    """The peer with the lowest delay on `kind` among those alarming no more often than `method`.

    Delay is ranked with missed streams as infinitely late; ties go to the lower
    false-alarm rate.  ``method=None``: among all peers, whatever their rate.
    """
    family = FAMILY[kind]
    limit = math.inf if method is None else fam[(method, family)].fa_rate
    eligible = [p for p in PEERS if (p, kind) in kinds and fam[(p, family)].fa_rate <= limit]
    if not eligible:
        return None
    return min(eligible, key=lambda p: (kinds[(p, kind)].rank_delay, fam[(p, family)].fa_rate))


def delay_ratio(mine: Score, peer: Score) -> str:
    """Median delay (misses as infinitely late) over the peer's, in words when one never detects."""
    if mine.rank_delay == math.inf:
        return "both miss" if peer.rank_delay == math.inf else "govloop misses"
    if peer.rank_delay == math.inf:
        return "peer misses"
    return f"{mine.rank_delay / peer.rank_delay:.2f}x"


Scores = dict[tuple[str, str], Score]


def report(outcomes: Sequence[Outcome], window: int) -> None:
    kinds = score(outcomes, window, lambda o: o.kind)
    fam = score(outcomes, window, lambda o: FAMILY[o.kind])
    for kind in DRIFT_KINDS:
        print_kind(kinds, fam, kind)
    print_controls(kinds)
    print_false_alarm_check(fam)
    print_summary(kinds, fam)
    print_costs(score(outcomes, window, lambda o: "all"))


def print_kind(kinds: Scores, fam: Scores, kind: str) -> None:
    print(f"### {kind}\n")
    rows = []
    for m in METHODS:
        if (m, kind) not in kinds:
            rows.append([m] + ["n/a"] * 7)
            continue
        s = kinds[(m, kind)]
        peer = best_peer(fam, kinds, m, kind) if m in GOVLOOP else None
        ratio = (
            "-"
            if m not in GOVLOOP
            else "no peer at <= FA"
            if peer is None
            else f"{delay_ratio(s, kinds[(peer, kind)])} vs {peer}"
        )
        rows.append(
            [
                m,
                fmt(s.median_delay, 0),
                f"{s.missed}/{s.streams}",
                f"{s.false}",
                fmt(s.fa_rate),
                fam[(m, FAMILY[kind])].fa_text(),
                fmt(s.rate, 0),
                ratio,
            ]
        )
    print_table(
        [
            "method",
            "median delay",
            "missed",
            "false alarms",
            "FA/10k (pre-change)",
            "FA/10k (family) [95 % Poisson]",
            "events/s",
            "delay / best peer at <= family FA",
        ],
        rows,
    )


def print_controls(kinds: Scores) -> None:
    print("### no-drift controls\n")
    rows = []
    for m in METHODS:
        cells = [m]
        for kind in CONTROL_KINDS:
            s = kinds.get((m, kind))
            cells += ["n/a", "n/a"] if s is None else [f"{s.false}", fmt(s.fa_rate)]
        rows.append(cells)
    print_table(
        ["method"]
        + [
            f"{k.removeprefix('control-')} {c}" for k in CONTROL_KINDS for c in ("alarms", "FA/10k")
        ],
        rows,
    )


def false_alarm_verdict(
    false: int, observed: float, target: float | None, expected: float | None
) -> str:
    """Met, or how surprising the count is under the configured rate (Poisson)."""
    if target is None or expected is None:
        return "no target"
    if observed <= target:
        return "met"
    p = float(poisson.sf(false - 1, expected))  # P(at least this many | configured rate)
    return f"{'above, within noise' if p >= 0.05 else 'NOT met'} (p = {p:.2g})"


def print_false_alarm_check(fam: Scores) -> None:
    print("### false alarms against the configured rate (family: pre-change segments + control)\n")
    rows = []
    for m in GOVLOOP:
        for family in ("numeric", "categorical", "error"):
            s = fam.get((m, family))
            if s is None:
                continue
            if m in WINDOWED:
                observed = s.false / s.pre_windows
                seen, rate = f"{s.false}/{s.pre_windows} windows", f"{fmt(observed, 4)} per window"
                target: float | None = 0.01
                expected: float | None = 0.01 * s.pre_windows
                target_text = "0.01 per window"
            else:
                observed = s.fa_rate
                lo, hi = s.fa_interval
                seen = f"{s.false} in {s.pre_events:,} events"
                rate = f"{fmt(s.fa_rate, 3)} [{fmt(lo, 3)}, {fmt(hi, 3)}]/10k"
                target = CONFIGURED[m].get(family)
                expected = None if target is None else target * s.pre_events / 1e4
                target_text = "not documented" if target is None else f"{target}/10k"
            rows.append(
                [
                    m,
                    family,
                    seen,
                    rate,
                    f"{s.streams_with_false}/{s.streams}",
                    target_text,
                    false_alarm_verdict(s.false, observed, target, expected),
                ]
            )
    print_table(
        [
            "method",
            "family",
            "false alarms",
            "rate [95 % Poisson]",
            "streams with a false alarm",
            "configured",
            "verdict (Poisson, as if alarms were independent)",
        ],
        rows,
    )


def print_summary(kinds: Scores, fam: Scores) -> None:
    print("### summary: delay against the best peer at an equal or lower false-alarm rate\n")
    rows = []
    for kind in DRIFT_KINDS:
        fastest = best_peer(fam, kinds, None, kind)
        anyfa = (
            "-"
            if fastest is None
            else (
                f"{fastest}: {fmt(kinds[(fastest, kind)].median_delay, 0)} "
                f"@ {fmt(fam[(fastest, FAMILY[kind])].fa_rate)}"
            )
        )
        for m in GOVLOOP:
            if (m, kind) not in kinds:
                continue
            mine, peer = kinds[(m, kind)], best_peer(fam, kinds, m, kind)
            cells = [kind, m, fmt(mine.median_delay, 0), fmt(fam[(m, FAMILY[kind])].fa_rate)]
            if peer is None:
                rows.append([*cells, "none", "-", "-", "no peer at <= FA", anyfa])
                continue
            theirs = kinds[(peer, kind)]
            met = "yes" if mine.rank_delay <= theirs.rank_delay else "no"
            rows.append(
                [
                    *cells,
                    peer,
                    f"{fmt(theirs.median_delay, 0)} @ {fmt(fam[(peer, FAMILY[kind])].fa_rate)}",
                    delay_ratio(mine, theirs),
                    met,
                    anyfa,
                ]
            )
    print_table(
        [
            "stream",
            "govloop method",
            "median delay",
            "FA/10k",
            "best peer at <= FA",
            "peer delay @ FA/10k",
            "delay ratio",
            "no worse?",
            "fastest peer at any FA: delay @ FA/10k",
        ],
        rows,
    )


def print_costs(totals: Scores) -> None:
    print("### cost per event over all streams of this run (parallel workers)\n")
    river_adwin = totals[("River ADWIN", "all")]
    rows = []
    for m in METHODS:
        s = totals[(m, "all")]
        if not math.isnan(s.rate):
            rows.append(
                [
                    m,
                    f"{s.events:,}",
                    fmt(1e9 / s.rate, 0),
                    fmt(s.rate, 0),
                    fmt(river_adwin.rate / s.rate),
                ]
            )
    print_table(["method", "events", "ns/event", "events/s", "cost / River ADWIN"], rows)
    mine = totals[("govloop calibrated", "all")]
    print(
        f"govloop calibrated: calibration (5,000 reference values, once per stream, outside "
        f"events/s) took {mine.setup / mine.streams:.2f} s per stream on average over "
        f"{mine.streams} streams.\n"
    )


# -- the oracle comparison: the calibrated detector against a CUSUM told the exact change -------

ORACLE_SEED = 40_000
ORACLE_PRE, ORACLE_POST = 5_000, 20_000
ORACLE_KINDS = {"numeric": ("mean", "spread"), "categorical": ("share",), "binary": ("rate",)}
OracleKey = tuple[str, str, bool]  # family, size label, two-sided


def oracle_task(task: tuple[str, str, bool, bool]) -> Oracle:
    family, label, two_sided, quick = task
    sizes = ((200, 5_000), (1_000, 5_000)) if quick else ((400, 10_000), (4_000, 10_000))
    seed = 1_000 * list(SHIFTS).index(family) + 10 * list(SHIFTS[family]).index(label) + two_sided
    return calibrate_oracle(
        SHIFTS[family][label], two_sided, 1.0, seed=seed, search=sizes[0], verify=sizes[1]
    )


def oracle_delay_task(
    task: tuple[str, int, dict[OracleKey, Oracle]],
) -> list[tuple[str, str, float, float, float]]:
    """One reference and calibration of ``kind``; its detector (fresh each time) and the
    oracles on one stream per (family, size): (family, size, calibrated, one-sided,
    two-sided delays)."""
    kind, seed, oracles = task
    calibration = calibrate(reference(kind, (seed, 99)), kind, false_alarms_per_10k=1.0, seed=seed)
    out = []
    for family in ORACLE_KINDS[kind]:
        for label, shift in SHIFTS[family].items():
            values, change = shift_stream(shift, seed, ORACLE_PRE, ORACLE_POST)
            mine = first_delay(
                calibration.detector().update_many(detector_values(kind, values)), change
            )
            one = oracles[(family, label, False)].delay(values, change)
            two = oracles[(family, label, True)].delay(values, change)
            out.append((family, label, mine, one, two))
    return out


def ratio_cell(mine: float, oracle: float) -> tuple[str, str]:
    if mine == math.inf:
        return "calibrated misses", "no"
    r = mine / oracle
    return f"{r:.2f}", "yes" if r <= 1.3 else "no"


def report_oracle(
    oracles: dict[OracleKey, Oracle], delays: Sequence[tuple[str, str, float, float, float]]
) -> None:
    seeds = len(delays) // sum(len(SHIFTS[f]) for f in SHIFTS)
    print(
        f"### oracle comparison: median delay of govloop calibrated against a CUSUM told the "
        f"exact change ({seeds} streams per row, seeds from {ORACLE_SEED:,}; "
        f"{ORACLE_PRE:,} + U[0, 1,000) events before the change, {ORACLE_POST:,} after; "
        f"misses counted as never)\n"
    )
    rows = []
    for family in SHIFTS:
        for label, shift in SHIFTS[family].items():
            d = np.array([x[2:] for x in delays if x[0] == family and x[1] == label])
            mine, one, two = (median_delay(d[:, j]) for j in range(3))
            r1, ok1 = ratio_cell(mine, one)
            r2, ok2 = ratio_cell(mine, two)
            misses = "/".join(str(int(np.isinf(d[:, j]).sum())) for j in range(3))
            rows.append(
                [
                    family,
                    label,
                    shift.describe(),
                    fmt(mine, 0),
                    fmt(one, 0),
                    r1,
                    ok1,
                    fmt(two, 0),
                    r2,
                    ok2,
                    misses,
                ]
            )
    print_table(
        [
            "family",
            "size",
            "change",
            "calibrated delay",
            "one-sided oracle delay",
            "ratio",
            "<= 1.3",
            "two-sided oracle delay",
            "ratio",
            "<= 1.3",
            "misses (calibrated/one/two)",
        ],
        rows,
    )
    print(
        "### the oracles' own calibration: threshold set on simulated null streams of the true "
        "pre-change distribution (grid search, log-linear fit, one secant step), then the rate "
        "measured on fresh null streams; target 1 false alarm per 10,000 events, restarting\n"
    )
    rows = []
    for (family, label, two_sided), o in oracles.items():
        lo, hi = o.interval
        rows.append(
            [
                family,
                label,
                "two-sided" if two_sided else "one-sided",
                f"{o.threshold:.3f}",
                f"{o.events:,}",
                f"{o.alarms:,}",
                f"{o.per_10k:.3f} [{lo:.3f}, {hi:.3f}]",
            ]
        )
    print_table(
        [
            "family",
            "size",
            "oracle",
            "threshold",
            "null events (verification)",
            "false alarms",
            "FA/10k [95 % Poisson]",
        ],
        rows,
    )


# -- side checks of the windowed path on seeds disjoint from the evaluation seeds ------------------

CALIBRATION_SEED, POWER_SEED = 20_000, 30_000


def calibration_task(task: tuple[str, int, int, int]) -> tuple[str, int, int]:
    """False windows on one no-drift stream with its own reference: (family, alarms, windows)."""
    kind, seed, n, window = task
    alarms, _ = govloop_windowed(make_stream(kind, seed, n, n), window)  # type: ignore[misc]
    return FAMILY[kind], len(alarms), n // window - 1


def power_task(task: tuple[str, int, int, int]) -> tuple[str, dict[str, float]]:
    """Delay of the sketch KS (govloop) and of exact KS on the raw values, same windows."""
    from scipy.stats import ks_2samp

    kind, seed, n, window = task
    s = make_stream(kind, seed, n, n)
    assert s.change is not None
    alarms, _ = govloop_windowed(s, window)  # type: ignore[misc]
    after = [a for a in alarms if a >= s.change]
    out = {"govloop: KS from sketches, p < 0.01": after[0] - s.change + 1 if after else math.inf}
    reference = s.values[:window]
    for alpha in (0.01, 0.05):
        delay = math.inf
        for start in range(window, n - window + 1, window):
            end = start + window - 1
            if end >= s.change and ks_2samp(reference, s.values[start : end + 1]).pvalue < alpha:
                delay = end - s.change + 1
                break
        out[f"exact KS on raw values, p < {alpha}"] = delay
    return kind, out


def report_side_checks(
    calibration: Sequence[tuple[str, int, int]], power: Sequence[tuple[str, dict[str, float]]]
) -> None:
    refs = len(calibration) // 3
    print(
        f"### windowed path: false windows over {refs} references per family "
        f"(no-drift streams, seeds from {CALIBRATION_SEED:,})\n"
    )
    rows = []
    for family in ("numeric", "categorical", "error"):
        mine = [c for c in calibration if c[0] == family]
        false, windows = sum(c[1] for c in mine), sum(c[2] for c in mine)
        rows.append(
            [
                family,
                f"{false}",
                f"{windows:,}",
                fmt(false / windows, 4),
                "0.01",
                f"{sum(c[1] > 0 for c in mine)}/{len(mine)}",
            ]
        )
    print_table(
        [
            "family",
            "false windows",
            "windows tested",
            "per window",
            "configured",
            "streams with a false window",
        ],
        rows,
    )
    seeds = len(power) // 3
    print(
        f"### windowed path: what the delay is made of ({seeds} seeds per kind from "
        f"{POWER_SEED:,}; median delay, misses counted as never)\n"
    )
    labels = list(power[0][1])
    rows = []
    for kind in ("sudden", "gradual", "variance"):
        delays = [d for k, d in power if k == kind]
        rows.append(
            [kind]
            + [fmt(float(statistics.median(d[label] for d in delays)), 0) for label in labels]
        )
    print_table(["stream", *labels], rows)


def micro_benchmark(n: int, reps: int, window: int) -> None:
    """Serial per-event cost on one quiet N(0, 1) stream, best of `reps`."""
    stream = make_stream("control-numeric", 10_000, n, n)
    cases = [
        "govloop ADWIN",
        "govloop PageHinkley",
        "govloop CUSUM",
        "govloop calibrated",
        "govloop windowed KS/chi2",
        "River ADWIN",
        "River PageHinkley",
    ]
    # the windowed path holds one dict row per event: a shorter prefix keeps memory small
    short = Stream(stream.kind, stream.seed, stream.values[: n // 5], None)
    best: dict[str, float] = {}
    for _ in range(reps):
        for m in cases:
            s = short if m in WINDOWED else stream
            _, seconds, *_ = METHODS[m](s, window)  # type: ignore[misc]
            best[m] = min(best.get(m, math.inf), seconds / s.values.size)
    print(
        f"### per-event cost, serial, a quiet N(0, 1) stream of {n:,} values "
        f"({n // 5:,} for the windowed path), best of {reps}\n"
    )
    rows = [
        [m, fmt(1e9 * best[m], 0), fmt(1 / best[m], 0), fmt(best[m] / best["River ADWIN"])]
        for m in cases
    ]
    print_table(["method", "ns/event", "events/s", "cost / River ADWIN"], rows)


def warm_up(window: int) -> None:
    """Run every method once on short streams, so lazy imports and first-call set-up
    (scipy.signal, Evidently's registries) happen before the workers fork, not in a timing."""
    warnings.simplefilter("ignore")
    for kind in ("sudden", "categorical", "error"):
        stream = make_stream(kind, 10_001, 3 * window, 3 * window)
        for method in METHODS.values():
            method(stream, window)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few seeds, short streams")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per drift kind (default 30)")
    ap.add_argument(
        "--control-seeds", type=int, default=None, help="seeds per control kind (default 5)"
    )
    ap.add_argument(
        "--oracle-seeds", type=int, default=None, help="streams per oracle row (default 60)"
    )
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--window", type=int, default=1_000, help="tumbling window / fixed interval")
    args = ap.parse_args(argv)
    seeds = args.seeds or (2 if args.quick else 30)
    control_seeds = args.control_seeds or (1 if args.quick else 5)
    oracle_seeds = args.oracle_seeds or (4 if args.quick else 60)
    n, n_control = (6_000, 10_000) if args.quick else (12_000, 40_000)
    micro_n = 100_000 if args.quick else 1_000_000
    references, power_seeds = (20, 5) if args.quick else (200, 40)

    print("## Drift detection benchmark\n")
    print(f"- command: `{' '.join([os.path.basename(sys.executable), *sys.argv])}`")
    print(
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, {_cpu_model()}, "
        f"load average before the run {os.getloadavg()[0]:.2f}"
    )
    print(
        f"- Python {platform.python_version()}; "
        + ", ".join(
            f"{p} {version(p)}"
            for p in ("govloop", "numpy", "scipy", "pandas", "datasketches", "river", "evidently")
        )
    )
    print(
        f"- streams: {seeds} seeds per drift kind, {control_seeds} per control; drift streams "
        f"{n:,} events with the change drawn uniformly in [{n // 2:,}, {n // 2 + 1000:,}); "
        f"controls {n_control:,} events; window / interval {args.window:,}; "
        f"{args.jobs} worker processes\n"
    )

    started = time.perf_counter()
    warm_up(args.window)
    tasks = [
        (kind, seed, n, n_control, args.window)
        for kind in reversed(KINDS)
        for seed in range(control_seeds if kind in CONTROL_KINDS else seeds)
    ]  # controls, the longest, first
    calibration_tasks = [
        (kind, CALIBRATION_SEED + i, n, args.window)
        for kind in CONTROL_KINDS
        for i in range(references)
    ]
    power_tasks = [
        (kind, POWER_SEED + i, n, args.window)
        for kind in ("sudden", "gradual", "variance")
        for i in range(power_seeds)
    ]
    oracle_keys = [(f, label, two) for f in SHIFTS for label in SHIFTS[f] for two in (False, True)]

    def stage(name: str) -> None:
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)

    stage("warm-up")
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        outcomes = [o for batch in pool.imap_unordered(run_task, tasks) for o in batch]
        stage("streams")
        calibration = pool.map(calibration_task, calibration_tasks, chunksize=10)
        power = pool.map(power_task, power_tasks, chunksize=5)
        stage("windowed side checks")
        found = pool.map(oracle_task, [(*k, args.quick) for k in oracle_keys])
        stage("oracle thresholds")
        oracles = dict(zip(oracle_keys, found, strict=True))
        delay_tasks = [
            (kind, ORACLE_SEED + i, oracles) for i in range(oracle_seeds) for kind in ORACLE_KINDS
        ]
        delays = [d for batch in pool.imap_unordered(oracle_delay_task, delay_tasks) for d in batch]
        stage("oracle delays")
    outcomes.sort(key=lambda o: (KINDS.index(o.kind), o.seed, list(METHODS).index(o.method)))
    report(outcomes, args.window)
    report_oracle(oracles, delays)
    report_side_checks(calibration, power)
    micro_benchmark(micro_n, 3, args.window)
    print(
        f"Total run time: {time.perf_counter() - started:.0f} s "
        f"(load average after {os.getloadavg()[0]:.2f})"
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    import evidently  # noqa: F401  (imported once, before the workers fork)

    main()
