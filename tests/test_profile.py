"""Profiles: bounded memory per feature, merging, serialisation, comparison."""

from __future__ import annotations

import json

import numpy as np

from govloop.stats import NumericSketch, Profile, compare


def rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> list:
    x = rng.normal(shift, 1, n)
    return [({"x": float(v)}, {"c": "a" if v > 0 else "b"}) for v in x]


def test_memory_per_feature_stays_constant_as_events_grow() -> None:
    """The serialised profile of a long stream: the size levels off (KLL keeps O(k log n/k))."""
    rng = np.random.default_rng(0)
    profile = Profile()
    sizes = {}
    seen = 0
    for n in (20_000, 200_000, 2_000_000):
        batch = rng.normal(0, 1, n - seen)
        profile.numeric.setdefault("x", NumericSketch()).update_many(batch)
        profile.update_many([({}, {"c": "a" if v > 0 else "b"}) for v in batch[:1000]])
        seen = n
        sizes[n] = len(json.dumps(profile.to_dict()))
    assert profile.numeric["x"].n == 2_000_000
    # 100 times the events, at most 25 % more bytes, and under 10 kB for a feature
    assert sizes[2_000_000] <= 1.25 * sizes[20_000], sizes
    assert sizes[2_000_000] < 10_000, sizes


def test_features_beyond_the_cap_are_counted_not_kept() -> None:
    profile = Profile(max_features=3)
    profile.update_many([({f"f{i}": 1.0 for i in range(5)}, {})])
    assert len(profile.numeric) == 3 and profile.ignored_features == 2


def test_merge_of_partitions_equals_one_profile() -> None:
    """Merged partitions answer like one profile: counts, moments, quantiles within rank error.

    KLL compaction is randomised (no seed exposed), so the quantiles are checked by
    their rank in the data, the sketch's own guarantee, not by value.  The partitions
    hold different ranges of ``x``, so a merge that lost either one would be far off.
    """
    rng = np.random.default_rng(1)
    data = sorted(rows(rng, 4000), key=lambda row: row[0]["x"])
    whole, left, right = Profile(), Profile(), Profile()
    whole.update_many(data)
    left.update_many(data[:1500])
    right.update_many(data[1500:])
    left += right
    assert left.n == whole.n == 4000
    assert left.categorical["c"].counts() == whole.categorical["c"].counts()
    assert abs(left.numeric["x"].mean - whole.numeric["x"].mean) < 1e-9
    xs = np.array([x["x"] for x, _ in data])
    qs = np.array([0.1, 0.5, 0.9])
    for sketch in (left.numeric["x"], whole.numeric["x"]):
        ranks = np.searchsorted(xs, sketch.quantiles(qs), side="right") / len(xs)
        # twice the sketch's 99 % bound: a lost partition is off by 0.375 or more
        assert np.all(np.abs(ranks - qs) <= 2 * sketch.rank_error), (ranks, sketch.rank_error)


def test_round_trip_and_compare() -> None:
    rng = np.random.default_rng(2)
    ref, same, shifted = Profile(), Profile(), Profile()
    ref.update_many(rows(rng, 3000))
    same.update_many(rows(rng, 1000))
    shifted.update_many(rows(rng, 1000, shift=0.5))
    ref = Profile.from_dict(json.loads(json.dumps(ref.to_dict())))
    assert [d.result.drifted for d in compare(ref, same)] == [False, False]
    assert [(d.feature, d.result.drifted) for d in compare(ref, shifted)] == [
        ("x", True),
        ("c", True),
    ]
    assert compare(ref, same, min_count=5000) == []
