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
    rng = np.random.default_rng(1)
    data = rows(rng, 4000)
    whole, left, right = Profile(), Profile(), Profile()
    whole.update_many(data)
    left.update_many(data[:1500])
    right.update_many(data[1500:])
    left += right
    assert left.n == whole.n == 4000
    assert left.categorical["c"].counts() == whole.categorical["c"].counts()
    assert abs(left.numeric["x"].mean - whole.numeric["x"].mean) < 1e-9
    np.testing.assert_allclose(
        left.numeric["x"].quantiles([0.1, 0.5, 0.9]),
        whole.numeric["x"].quantiles([0.1, 0.5, 0.9]),
        atol=0.05,
    )


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
