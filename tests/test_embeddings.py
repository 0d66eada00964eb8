"""Embedding samples (bottom-k, projected) and the MMD drift test on them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from govloop.stats.embeddings import EmbeddingSample, embedding_drift


def stream(n: int, dim: int, seed: int, shift: float = 0.0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [f"{seed}-{i}" for i in range(n)], rng.normal(shift, 1.0, size=(n, dim))


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_merged_partial_samples_equal_the_whole_window(parts: int) -> None:
    ids, vectors = stream(1000, 128, seed=parts)
    whole = EmbeddingSample(k=40, dims=16)
    whole.add_many(ids, vectors)
    partials = [EmbeddingSample(k=40, dims=16) for _ in range(parts)]
    for i, (event_id, v) in enumerate(zip(ids, vectors, strict=True)):
        partials[i % parts].add(event_id, v)
    merged = partials[0]
    for p in partials[1:]:
        merged.merge(p)
    assert merged.n == whole.n == 1000
    assert np.allclose(merged.matrix(), whole.matrix())


def test_memory_is_bounded_and_order_does_not_matter() -> None:
    ids, vectors = stream(5000, 64, seed=1)
    forward, backward = EmbeddingSample(k=32, dims=8), EmbeddingSample(k=32, dims=8)
    forward.add_many(ids, vectors)
    backward.add_many(ids[::-1], vectors[::-1])
    assert len(forward) == 32 and forward.matrix().shape == (32, 8)
    assert np.allclose(forward.matrix(), backward.matrix())


def test_round_trip_through_json() -> None:
    ids, vectors = stream(300, 48, seed=2)
    s = EmbeddingSample(k=20, dims=8)
    s.add_many(ids, vectors)
    again = EmbeddingSample.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again.n == s.n and np.allclose(again.matrix(), s.matrix())
    more_ids, more = stream(300, 48, seed=3)
    s.add_many(more_ids, more)
    again.add_many(more_ids, more)  # the projection is rebuilt from the seed
    assert np.allclose(again.matrix(), s.matrix())


def test_bad_input_is_named() -> None:
    s = EmbeddingSample()
    s.add("a", [0.0] * 10)
    with pytest.raises(ValueError, match="11 dimensions, this sample holds 10"):
        s.add("b", [0.0] * 11)
    with pytest.raises(ValueError, match="different k, dims or seed"):
        s.merge(EmbeddingSample(k=10))
    with pytest.raises(ValueError, match="at least 2 vectors"):
        embedding_drift(s, s)


def test_false_alarms_at_the_stated_rate_and_a_shift_is_found() -> None:
    trials, alpha, alarms = 200, 0.05, 0
    for seed in range(trials):
        ref, cur = EmbeddingSample(), EmbeddingSample()
        ref.add_many(*stream(400, 96, seed=2 * seed))
        cur.add_many(*stream(400, 96, seed=2 * seed + 1))
        alarms += embedding_drift(ref, cur, alpha=alpha, n_permutations=199, seed=seed).drifted
    # at most alpha plus three binomial standard errors
    assert alarms / trials <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / trials), alarms
    found = 0
    for seed in range(20):
        ref, cur = EmbeddingSample(), EmbeddingSample()
        ref.add_many(*stream(400, 96, seed=1000 + seed))
        cur.add_many(*stream(400, 96, seed=2000 + seed, shift=0.3))
        found += embedding_drift(ref, cur, n_permutations=199, seed=seed).drifted
    assert found >= 18, found


def test_profiles_carry_and_compare_embeddings() -> None:
    from govloop.stats import Profile, compare
    from govloop.stats.profile import Columns

    def profile(seed: int, shift: float) -> Profile:
        ids, vectors = stream(300, 96, seed=seed, shift=shift)
        p = Profile()
        p.update_columns(Columns(300, {}, {}, tuple(zip(ids, vectors.tolist(), strict=True))))
        return p

    ref = Profile.from_dict(json.loads(json.dumps(profile(1, 0.0).to_dict())))
    same, moved = profile(2, 0.0), profile(3, 0.4)
    assert ref.embeddings is not None and ref.embeddings.n == 300
    [(name, kind, result)] = [(d.feature, d.kind, d.result) for d in compare(ref, moved)]
    assert (name, kind, result.drifted) == ("embedding", "embedding", True)
    assert not compare(ref, same)[0].result.drifted
    # partitions merge into one sample
    whole = profile(2, 0.0)
    whole.merge(profile(3, 0.4))
    assert whole.embeddings is not None and whole.embeddings.n == 600
