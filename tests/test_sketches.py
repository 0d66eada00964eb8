"""Sketches against numpy on raw data: quantiles and CDF within the stated rank error,
exact moments after every prefix and after merges, serialization, category counts."""

from __future__ import annotations

import json
import math
import pickle
from collections import Counter

import numpy as np
import pytest

from govloop.stats.sketches import OTHER, CategoricalCounts, NumericSketch

LEVELS = np.linspace(0.0, 1.0, 101)


def data(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "lognormal":
        return rng.lognormal(3.0, 1.5, n)
    if kind == "integers":  # heavy ties
        return rng.poisson(3.0, n).astype(float)
    return rng.normal(-2.0, 5.0, n)


def true_cdf(values: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.sort(values), points, side="right") / len(values)


def sketch_of(values: np.ndarray, k: int = 200) -> NumericSketch:
    s = NumericSketch(k)
    s.update_many(values)
    return s


# --- numeric sketch ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["normal", "lognormal", "integers"])
def test_exact_while_small_matches_numpy(kind: str) -> None:
    values = data(kind, 150, seed=1)
    s = sketch_of(values)
    assert s.is_exact
    np.testing.assert_array_equal(
        s.quantiles(LEVELS), np.quantile(values, LEVELS, method="inverted_cdf")
    )
    points = np.linspace(values.min() - 1, values.max() + 1, 57)
    np.testing.assert_allclose(s.cdf(points), true_cdf(values, points), atol=1e-12)


@pytest.mark.parametrize("kind", ["normal", "lognormal", "integers"])
@pytest.mark.parametrize(("n", "k"), [(20_000, 200), (100_000, 100), (50_000, 800)])
def test_ranks_within_the_stated_error(kind: str, n: int, k: int) -> None:
    values = data(kind, n, seed=n + k)
    s = sketch_of(values, k)
    assert not s.is_exact
    # The stated bound is met in 99 % of trials (DataSketches' empirical fit); in 300 trials
    # per case the largest error seen was 1.03 eps, so allow 1.5 eps to never flake.
    eps = 1.5 * s.rank_error
    # The quantile at level q has true rank within q +- eps.
    q_values = s.quantiles(LEVELS)
    below = np.searchsorted(np.sort(values), q_values, side="left") / n
    upto = true_cdf(values, q_values)
    assert np.all(upto >= LEVELS - eps)
    assert np.all(below <= LEVELS + eps)
    # The CDF at any point is within eps of the empirical CDF.
    points = np.quantile(values, np.linspace(0.0, 1.0, 301))
    assert np.max(np.abs(s.cdf(points) - true_cdf(values, points))) <= eps
    assert (s.min, s.max) == (values.min(), values.max())


def test_rank_error_is_the_datasketches_bound() -> None:
    assert NumericSketch(200).rank_error == pytest.approx(0.01329, abs=1e-5)
    assert (
        NumericSketch(800).rank_error
        < NumericSketch(200).rank_error
        < NumericSketch(100).rank_error
    )


def test_merging_a_coarser_sketch_takes_its_error_bound() -> None:
    fine, coarse = (
        sketch_of(data("normal", 5000, 9), k=400),
        sketch_of(data("normal", 5000, 10), k=100),
    )
    fine += coarse
    assert fine.rank_error == pytest.approx(NumericSketch(100).rank_error)


def test_moments_are_exact_after_every_prefix() -> None:
    values = data("lognormal", 3000, seed=2)
    s = NumericSketch()
    for i, chunk in enumerate(np.array_split(values, 30)):
        if i % 2:
            s.update_many(chunk)
        else:
            for v in chunk:
                s.update(v)
        seen = values[: s.n]
        assert s.mean == pytest.approx(seen.mean(), rel=1e-12)
        assert s.variance == pytest.approx(seen.var(), rel=1e-10)
        assert s.std == pytest.approx(seen.std(), rel=1e-10)


def test_merge_equals_one_sketch_of_all_values() -> None:
    parts = [data("normal", n, seed=n) for n in (1, 700, 5000, 12_345)]
    merged = NumericSketch()
    for part in parts:
        merged += sketch_of(part)
    merged.merge(NumericSketch())  # an empty partition changes nothing
    values = np.concatenate(parts)
    assert merged.n == values.size
    assert merged.mean == pytest.approx(values.mean(), rel=1e-12)
    assert merged.variance == pytest.approx(values.var(), rel=1e-10)
    assert (merged.min, merged.max) == (values.min(), values.max())
    points = np.quantile(values, LEVELS)
    assert np.max(np.abs(merged.cdf(points) - true_cdf(values, points))) <= 1.5 * merged.rank_error


def test_invalid_values_are_counted_not_sketched() -> None:
    s = NumericSketch()
    s.update_many(np.array([1.0, np.nan, np.inf, -np.inf, 2.0]))
    s.update(float("nan"))
    s.update(3.0)
    other = NumericSketch()
    other.update(float("inf"))
    s += other
    assert (s.n, s.invalid) == (3, 5)
    assert s.mean == 2.0
    assert s.quantiles([1.0]).tolist() == [3.0]


def test_empty_sketch() -> None:
    s = NumericSketch()
    assert s.n == 0
    assert all(math.isnan(v) for v in (s.mean, s.variance, s.min, s.max))
    with pytest.raises(ValueError, match="empty"):
        s.quantiles([0.5])
    with pytest.raises(ValueError, match="empty"):
        s.cdf([0.0])
    s.update_many([])
    assert s.n == 0


def test_cdf_accepts_unsorted_repeated_points_and_rejects_nan() -> None:
    s = sketch_of(np.arange(1.0, 11.0))
    assert s.cdf([5.0, 1.0, 5.0, 10.5]).tolist() == [0.5, 0.1, 0.5, 1.0]
    assert s.cdf([]).size == 0
    with pytest.raises(ValueError, match="finite"):
        s.cdf([np.nan])


def test_serialization_round_trip() -> None:
    s = sketch_of(data("lognormal", 30_000, seed=3), k=300)
    s.update(float("nan"))
    for copy in (NumericSketch.from_bytes(s.to_bytes()), pickle.loads(pickle.dumps(s))):
        assert (copy.k, copy.n, copy.invalid) == (300, s.n, 1)
        assert (copy.mean, copy.variance, copy.min, copy.max) == (s.mean, s.variance, s.min, s.max)
        np.testing.assert_array_equal(copy.quantiles(LEVELS), s.quantiles(LEVELS))
    assert len(s.to_bytes()) < 10_000  # bounded: 30k values in a few kB
    assert NumericSketch.from_bytes(NumericSketch().to_bytes()).n == 0
    with pytest.raises(ValueError, match="NumericSketch"):
        NumericSketch.from_bytes(b"GLNX" + s.to_bytes()[4:])
    with pytest.raises(ValueError, match="too short"):
        NumericSketch.from_bytes(b"GL")


def test_repr() -> None:
    assert repr(sketch_of(np.ones(3), k=50)) == "NumericSketch(k=50) n=3 invalid=0"


# --- categorical counts -----------------------------------------------------------------------


def test_counts_match_counter_below_the_cap() -> None:
    rng = np.random.default_rng(4)
    values = rng.choice(["a", "b", "c", "d"], size=1000, p=[0.4, 0.3, 0.2, 0.1])
    c = CategoricalCounts()
    c.update_many(values)
    assert c.counts() == dict(Counter(values.tolist()))
    assert c.n == 1000
    assert c.other == 0
    np.testing.assert_allclose(
        c.proportions(["a", "d", "x"]), [np.mean(values == "a"), np.mean(values == "d"), 0.0]
    )


def test_values_past_the_cap_go_to_other_in_first_seen_order() -> None:
    values = [5, 1, 5, 2, 3, 1, 4, 2, 9]
    one_by_one, batch = CategoricalCounts(max_distinct=3), CategoricalCounts(max_distinct=3)
    for v in values:
        one_by_one.update(v)
    batch.update_many(values)
    expected = {"5": 2, "1": 2, "2": 2, OTHER: 3}
    assert one_by_one.counts() == batch.counts() == expected
    assert batch.other == 3
    assert batch.proportions([OTHER]).tolist() == [3 / 9]


def test_merge_and_dict_round_trip() -> None:
    a, b = CategoricalCounts(max_distinct=3), CategoricalCounts(max_distinct=3)
    a.update_many(["x", "y", "x"])
    b.update_many(["y", "z", "w", "w", True])
    a += b
    assert a.counts() == {"x": 2, "y": 2, "z": 1, OTHER: 3}
    copy = CategoricalCounts.from_dict(json.loads(json.dumps(a.to_dict())))
    assert copy.counts() == a.counts()
    assert (copy.max_distinct, copy.n) == (3, 8)
    copy.update("x")
    copy.update("new")
    assert copy.counts() == {"x": 3, "y": 2, "z": 1, OTHER: 4}


def test_categorical_validation() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CategoricalCounts(max_distinct=0)
    with pytest.raises(ValueError, match="exceed"):
        CategoricalCounts.from_dict({"max_distinct": 1, "counts": {"a": 1, "b": 2}})
    assert CategoricalCounts().proportions(["a"]).tolist() == [0.0]
    assert repr(CategoricalCounts(5)) == "CategoricalCounts(max_distinct=5) n=0"
