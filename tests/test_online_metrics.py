"""Online metrics against scikit-learn and numpy after every prefix; merge, batch and contracts."""

from __future__ import annotations

import copy
import functools
import math
import pickle
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    mean_absolute_error,
    root_mean_squared_error,
)

from govloop.stats.metrics import (
    ECE,
    F1,
    MAE,
    RMSE,
    Accuracy,
    Brier,
    ErrorRate,
    LatencyQuantiles,
    MacroF1,
    MeanRating,
    Metric,
    PositiveRate,
)
from govloop.stats.quantiles import DEFAULT_GAMMA, MIN_VALUE

N = 150
CLASSES = ["a", "b", "c"]
#: The sketch's relative accuracy plus float rounding.
SKETCH_TOLERANCE = (DEFAULT_GAMMA - 1) / (DEFAULT_GAMMA + 1) + 1e-12


@functools.cache
def stream(seed: int, n: int = N) -> dict[str, np.ndarray]:
    """A seeded stream of everything the metrics eat (cached: do not mutate)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(CLASSES, size=n, p=[0.5, 0.3, 0.2])
    noisy = np.where(rng.random(n) < 0.7, labels, rng.choice(CLASSES, size=n))
    p_pos = rng.beta(2, 2, size=n)
    proba = rng.dirichlet([1.0, 1.0, 1.0], size=n)
    return {
        "labels": labels,
        "pred": noisy,
        "bin_true": (rng.random(n) < 0.4).astype(int),
        "bin_pred": (rng.random(n) < 0.4).astype(int),
        "y": rng.normal(10.0, 3.0, size=n),
        "y_hat": rng.normal(10.0, 3.0, size=n),
        "p_pos": p_pos,
        "bin_outcome": (rng.random(n) < p_pos).astype(int),
        "proba": proba,
        "multi_outcome": np.array([rng.choice(CLASSES, p=row) for row in proba]),
        "flags": rng.random(n) < 0.3,
        "ratings": rng.integers(1, 6, size=n).astype(float),
        "latency": rng.lognormal(3.0, 1.0, size=n),
    }


def ece_reference(confidence: np.ndarray, correct: np.ndarray, bins: int) -> float:
    """ECE from its definition, bin by bin with explicit edges."""
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (confidence >= lo) & ((confidence < hi) | ((b == bins - 1) & (confidence <= hi)))
        if inside.any():
            gap = abs(correct[inside].mean() - confidence[inside].mean())
            total += inside.sum() / confidence.size * gap
    return total


def top_class_of(d: dict[str, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    proba = d["proba"][:k]
    return proba.max(axis=1), np.asarray(CLASSES)[proba.argmax(axis=1)] == d["multi_outcome"][:k]


def latency_oracle(d: dict[str, np.ndarray], k: int) -> dict[str, float]:
    return {
        f"p{100 * q:g}": float(
            np.quantile(np.maximum(d["latency"][:k], MIN_VALUE), q, method="lower")
        )
        for q in (0.5, 0.95, 0.99)
    }


@dataclass(frozen=True)
class Case:
    make: Callable[[], Metric[Any]]
    one: Callable[[Any, dict[str, np.ndarray], int], None]  # feed observation i
    many: Callable[[Any, dict[str, np.ndarray], slice], None]  # feed a slice
    oracle: Callable[[dict[str, np.ndarray], int], Any]  # the value after the first k


def _binary_f1(d: dict[str, np.ndarray], k: int) -> float | None:
    t, p = d["bin_true"][:k], d["bin_pred"][:k]
    if not (t == 1).any() and not (p == 1).any():
        return None
    return float(f1_score(t, p, pos_label=1))


def _proba_dict(row: np.ndarray) -> dict[str, float]:
    return dict(zip(CLASSES, row.tolist(), strict=True))


CASES: dict[str, Case] = {
    "accuracy": Case(
        Accuracy,
        lambda m, d, i: m.update(d["labels"][i], d["pred"][i]),
        lambda m, d, s: m.update_many(d["labels"][s], d["pred"][s]),
        lambda d, k: accuracy_score(d["labels"][:k], d["pred"][:k]),
    ),
    "f1": Case(
        F1,
        lambda m, d, i: m.update(int(d["bin_true"][i]), int(d["bin_pred"][i])),
        lambda m, d, s: m.update_many(d["bin_true"][s], d["bin_pred"][s]),
        _binary_f1,
    ),
    "macro_f1": Case(
        MacroF1,
        lambda m, d, i: m.update(str(d["labels"][i]), str(d["pred"][i])),
        lambda m, d, s: m.update_many(d["labels"][s], d["pred"][s]),
        lambda d, k: f1_score(d["labels"][:k], d["pred"][:k], average="macro", zero_division=0.0),
    ),
    "mae": Case(
        MAE,
        lambda m, d, i: m.update(d["y"][i], d["y_hat"][i]),
        lambda m, d, s: m.update_many(d["y"][s], d["y_hat"][s]),
        lambda d, k: mean_absolute_error(d["y"][:k], d["y_hat"][:k]),
    ),
    "rmse": Case(
        RMSE,
        lambda m, d, i: m.update(d["y"][i], d["y_hat"][i]),
        lambda m, d, s: m.update_many(d["y"][s], d["y_hat"][s]),
        lambda d, k: root_mean_squared_error(d["y"][:k], d["y_hat"][:k]),
    ),
    "brier_binary": Case(
        Brier,
        lambda m, d, i: m.update(int(d["bin_outcome"][i]), float(d["p_pos"][i])),
        lambda m, d, s: m.update_many(d["bin_outcome"][s], d["p_pos"][s]),
        lambda d, k: brier_score_loss(d["bin_outcome"][:k], d["p_pos"][:k], labels=[0, 1]),
    ),
    "brier_multiclass": Case(
        Brier,
        lambda m, d, i: m.update(str(d["multi_outcome"][i]), _proba_dict(d["proba"][i])),
        lambda m, d, s: m.update_many(d["multi_outcome"][s], d["proba"][s], classes=CLASSES),
        lambda d, k: brier_score_loss(d["multi_outcome"][:k], d["proba"][:k], labels=CLASSES),
    ),
    "ece": Case(
        ECE,
        lambda m, d, i: m.update(str(d["multi_outcome"][i]), _proba_dict(d["proba"][i])),
        lambda m, d, s: m.update_many(d["multi_outcome"][s], d["proba"][s], classes=CLASSES),
        lambda d, k: ece_reference(*top_class_of(d, k), bins=10),
    ),
    "ece_binary": Case(
        lambda: ECE(bins=5),
        lambda m, d, i: m.update(int(d["bin_outcome"][i]), float(d["p_pos"][i])),
        lambda m, d, s: m.update_many(d["bin_outcome"][s], d["p_pos"][s]),
        lambda d, k: ece_reference(
            np.maximum(d["p_pos"][:k], 1 - d["p_pos"][:k]),
            (d["p_pos"][:k] >= 0.5) == (d["bin_outcome"][:k] == 1),
            bins=5,
        ),
    ),
    "positive_rate": Case(
        PositiveRate,
        lambda m, d, i: m.update(bool(d["flags"][i])),
        lambda m, d, s: m.update_many(d["flags"][s]),
        lambda d, k: np.mean(d["flags"][:k]),
    ),
    "error_rate": Case(
        ErrorRate,
        lambda m, d, i: m.update(bool(d["flags"][i])),
        lambda m, d, s: m.update_many(d["flags"][s]),
        lambda d, k: np.mean(d["flags"][:k]),
    ),
    "mean_rating": Case(
        MeanRating,
        lambda m, d, i: m.update(float(d["ratings"][i])),
        lambda m, d, s: m.update_many(d["ratings"][s]),
        lambda d, k: np.mean(d["ratings"][:k]),
    ),
    "latency": Case(
        LatencyQuantiles,
        lambda m, d, i: m.update(float(d["latency"][i])),
        lambda m, d, s: m.update_many(d["latency"][s]),
        latency_oracle,
    ),
}


def assert_close(got: Any, expected: Any, rel: float = 1e-9) -> None:
    if expected is None:
        assert got is None
    elif isinstance(expected, dict):
        assert got is not None and got.keys() == expected.keys()
        for key, value in expected.items():
            assert abs(got[key] - value) / value <= SKETCH_TOLERANCE, (key, got[key], value)
    else:
        assert got == pytest.approx(float(expected), rel=rel, abs=1e-12)


def state(metric: Metric[Any]) -> dict[str, Any]:
    params = metric._params()
    return {k: v for k, v in vars(metric).items() if k not in params}


def assert_same_state(a: Metric[Any], b: Metric[Any]) -> None:
    sa, sb = state(a), state(b)
    assert sa.keys() == sb.keys()
    for name, va in sa.items():
        vb = sb[name]
        if isinstance(va, Counter):
            assert +va == +vb, name
        elif isinstance(va, np.ndarray):
            np.testing.assert_allclose(va, vb, rtol=1e-12, atol=1e-12, err_msg=name)
        elif isinstance(va, float):
            assert va == pytest.approx(vb, rel=1e-12, abs=1e-12), name
        else:
            assert va == vb, name


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_oracle_after_every_prefix(name: str, seed: int) -> None:
    case, d = CASES[name], stream(seed)
    metric = case.make()
    assert metric.get() is None
    for i in range(N):
        case.one(metric, d, i)
        assert_close(metric.get(), case.oracle(d, i + 1))


@pytest.mark.parametrize("name", CASES)
def test_batches_equal_single_updates(name: str) -> None:
    case, d = CASES[name], stream(2)
    single, batched = case.make(), case.make()
    for i in range(N):
        case.one(single, d, i)
    for start in range(0, N, 37):
        case.many(batched, d, slice(start, start + 37))
    assert_same_state(single, batched)
    assert_close(batched.get(), case.oracle(d, N))


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("cut", [0, 1, 64, N])
def test_merging_two_halves_equals_the_whole(name: str, cut: int) -> None:
    case, d = CASES[name], stream(3)
    whole, left, right = case.make(), case.make(), case.make()
    case.many(whole, d, slice(0, N))
    case.many(left, d, slice(0, cut))
    for i in range(cut, N):
        case.one(right, d, i)
    before = copy.deepcopy(left)
    summed = left + right  # a new metric; left is untouched
    assert_same_state(summed, whole)
    assert_same_state(left, before)
    left += right
    assert_same_state(left, whole)
    assert_close(left.get(), case.oracle(d, N))


@pytest.mark.parametrize("name", CASES)
def test_contract(name: str) -> None:
    case, d = CASES[name], stream(4)
    metric = case.make()
    fresh = case.make()
    case.many(metric, d, slice(0, N))
    restored = pickle.loads(pickle.dumps(metric))
    assert_same_state(restored, metric)
    assert restored.get() == metric.get()
    clone = metric.clone()
    assert clone._params() == metric._params() and clone.get() is None
    assert_same_state(clone, fresh)
    assert repr(metric).startswith(f"{type(metric).__name__}(")
    metric._reset()
    assert_same_state(metric, fresh)
    with pytest.raises(ValueError, match="cannot merge"):
        metric += MAE() if not isinstance(metric, MAE) else RMSE()


@pytest.mark.parametrize("name", CASES)
def test_memory_is_bounded(name: str) -> None:
    case = CASES[name]
    metric = case.make()
    sizes = []
    for seed in range(20):
        case.many(metric, stream(seed, 1000), slice(None))
        sizes.append(len(pickle.dumps(metric)))
    assert max(sizes) < 8192  # 20k events; an event list would be hundreds of kB
    assert sizes[-1] - sizes[4] < 2048


def test_different_parameters_do_not_merge() -> None:
    with pytest.raises(ValueError, match="cannot merge"):
        F1(pos_label=1).merge(F1(pos_label=0))
    with pytest.raises(ValueError, match="cannot merge"):
        ECE(bins=10).merge(ECE(bins=5))


def test_undefined_values_are_none() -> None:
    f1 = F1()
    f1.update_many([0, 0], [0, 0])
    assert f1.get() is None  # no positive seen: F1 is undefined, not 0
    f1.update(1, 0)
    assert f1.get() == 0.0
    assert LatencyQuantiles().get() is None
    assert MacroF1().get() is None


def test_batches_are_validated() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        Accuracy().update_many([1, 2], [1])
    with pytest.raises(ValueError, match="1-D"):
        MAE().update_many([[1.0]], [[1.0]])
    with pytest.raises(ValueError, match="needs `classes`"):
        Brier().update_many(["a"], [[0.5, 0.5]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ECE().update_confidence(1.2, True)
    with pytest.raises(ValueError, match="positive integer"):
        ECE(bins=0)
    with pytest.raises(ValueError, match="quantiles"):
        LatencyQuantiles(quantiles=(0.5, 1.5))


def test_ece_hand_worked() -> None:
    # bins of width 0.25: [0.5, 0.75) holds 0.6 (right), 0.7 (wrong); [0.75, 1] holds 0.8, 1.0.
    ece = ECE(bins=4)
    ece.update_confidence([0.6, 0.7, 0.8, 1.0], [True, False, True, True])
    # bin 2: acc 1/2, conf 0.65 -> gap 0.15; bin 3: acc 1, conf 0.9 -> gap 0.1
    assert ece.get() == pytest.approx(0.5 * 0.15 + 0.5 * 0.1)
    perfect = ECE()
    perfect.update_confidence([1.0, 1.0], [True, True])
    assert perfect.get() == 0.0
    # a confidence of exactly 1 lands in the last bin, an edge in the bin it opens
    edges = ECE(bins=10)
    edges.update_confidence([1.0, 0.3, 0.7], [True, True, True])
    assert edges._count.tolist() == [0, 0, 0, 1, 0, 0, 0, 1, 0, 1]


def test_ece_entry_points_agree() -> None:
    d = stream(5)
    by_mapping, by_matrix, by_confidence = ECE(), ECE(), ECE()
    for i in range(N):
        by_mapping.update(str(d["multi_outcome"][i]), _proba_dict(d["proba"][i]))
    by_matrix.update_many(d["multi_outcome"], d["proba"], classes=CLASSES)
    by_confidence.update_confidence(*top_class_of(d, N))
    assert_same_state(by_mapping, by_matrix)
    assert_same_state(by_mapping, by_confidence)


def test_brier_counts_an_unlisted_true_class() -> None:
    brier = Brier()
    brier.update("z", {"a": 0.6, "b": 0.4})  # 0.36 + 0.16 + (0 - 1)^2
    assert brier.get() == pytest.approx(1.52)
    batch = Brier()
    batch.update_many(["z"], [[0.6, 0.4]], classes=["a", "b"])
    assert batch.get() == pytest.approx(1.52)


def test_macro_f1_batches_with_unsortable_labels() -> None:
    single, batched = MacroF1(), MacroF1()
    y_true, y_pred = ["a", 1, "a", 2], ["a", 1, 1, 2]
    for t, p in zip(y_true, y_pred, strict=True):
        single.update(t, p)
    batched.update_many(np.array(y_true, dtype=object), np.array(y_pred, dtype=object))
    assert single._confusion == batched._confusion
    assert math.isclose(batched.get() or 0.0, (2 / 3 + 2 / 3 + 1) / 3)  # a, 1, 2


def test_latency_custom_quantiles_and_tiny_values() -> None:
    lat = LatencyQuantiles(quantiles=(0.25, 0.999))
    lat.update_many([0.0, 5.0, 6.0])
    lat.update(-1.0)  # clamped to the lowest bucket, like bucket_of; ranks 0 and 2 of 4
    got = lat.get()
    assert got is not None and list(got) == ["p25", "p99.9"]
    assert got["p25"] == pytest.approx(MIN_VALUE, rel=SKETCH_TOLERANCE)
    assert got["p99.9"] == pytest.approx(5.0, rel=SKETCH_TOLERANCE)
