"""Histogram-binning calibration: scikit-learn's reference computations, hand-worked pooling
and variance, unbiasedness and coverage by simulation, and the window counters' path."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score

from govloop.schemas import Prediction
from govloop.stats import summarize_window
from govloop.stats.binning import (
    CONFIDENCE_EDGES,
    BinnedCalibration,
    bin_counts,
    confidence_bin,
    confidence_bins,
)
from govloop.stats.windows import BIN_COUNTERS
from govloop.stores.redis.records import prediction_record

TENTHS = tuple(round(0.1 * k, 1) for k in range(1, 10))


def overconfident(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Confidences of a model that is right with probability ``confidence ** 3``."""
    confidence = rng.uniform(0.3, 1.0, size=n)
    return confidence, rng.random(n) < confidence**3


def test_bins_agree_with_numpy_digitize() -> None:
    c = np.random.default_rng(0).uniform(0, 1, 5000)
    c = np.concatenate([c, CONFIDENCE_EDGES, [0.0, 1.0]])
    expected = np.digitize(c, CONFIDENCE_EDGES, right=False)
    assert confidence_bins(c).tolist() == expected.tolist()
    assert [confidence_bin(x) for x in c] == expected.tolist()
    assert confidence_bin(1.0) == len(CONFIDENCE_EDGES)


def test_per_bin_map_is_sklearn_calibration_curve() -> None:
    rng = np.random.default_rng(1)
    conf, right = overconfident(rng, 20_000)
    cal = BinnedCalibration.fit(conf, right, edges=TENTHS, min_labels=1)
    prob_true, _ = calibration_curve(right, conf, n_bins=10, strategy="uniform")
    occupied = np.array(cal.labelled) > 0
    assert cal.accuracy()[occupied] == pytest.approx(prob_true, abs=1e-12)


def test_one_block_estimates_the_reference_accuracy() -> None:
    rng = np.random.default_rng(2)
    conf, right = overconfident(rng, 500)
    cal = BinnedCalibration.fit(conf, right, min_labels=500)
    assert len(cal.blocks) == 1
    est = cal.estimate(np.bincount(confidence_bins(conf), minlength=cal.bins))
    assert est is not None and est.value == pytest.approx(accuracy_score(np.ones(500), right))


def test_estimate_is_the_mean_of_the_map_over_the_predictions() -> None:
    rng = np.random.default_rng(3)
    ref_c, ref_ok = overconfident(rng, 3000)
    cal = BinnedCalibration.fit(ref_c, ref_ok)
    live, _ = overconfident(rng, 800)
    est = cal.estimate(np.bincount(confidence_bins(live), minlength=cal.bins))
    assert est is not None
    assert est.value == pytest.approx(cal.accuracy()[confidence_bins(live)].mean())
    assert est.n == 800 and est.low < est.value < est.high


def test_pooling_by_hand() -> None:
    # labels per bin 5, 0, 12, 3, 30, 2 with min 10: [0..2] has 17, [3..4] 33, tail 2 joins it
    cal = BinnedCalibration(
        (5, 0, 12, 3, 30, 2), (1, 0, 6, 3, 27, 2), (0.5, 0.6, 0.7, 0.8, 0.9), min_labels=10
    )
    assert cal.blocks == ((0, 2, 17, 7), (3, 5, 35, 32))
    assert cal.accuracy().tolist() == pytest.approx([7 / 17] * 3 + [32 / 35] * 3)


def test_standard_error_by_hand() -> None:
    cal = BinnedCalibration((10, 30), (5, 27), (0.8,), min_labels=10)
    est = cal.estimate([4, 16])
    assert est is not None
    s1, s2 = 6 / 12, 28 / 32  # shrunk (correct + 1) / (labelled + 2)
    var = (4 * s1 * (1 - s1) + 16 * s2 * (1 - s2)) / 20**2  # the outcomes given the map
    var += ((4 / 20) ** 2 * s1 * (1 - s1) / 10) + ((16 / 20) ** 2 * s2 * (1 - s2) / 30)  # the map
    assert est.value == pytest.approx((4 * 0.5 + 16 * 0.9) / 20)
    assert est.se == pytest.approx(math.sqrt(var))


def test_unbiased_and_covering_in_distribution() -> None:
    """400 reference/stream pairs of an overconfident model: the mean error is within
    Monte Carlo error of 0 (the raw mean confidence is 15 points high), and the 95 %
    interval covers the stream's realised accuracy at about its level."""
    rng = np.random.default_rng(4)
    errors, covered, raw = [], 0, []
    for _ in range(400):
        cal = BinnedCalibration.fit(*overconfident(rng, 400))
        live, ok = overconfident(rng, 400)
        est = cal.estimate(np.bincount(confidence_bins(live), minlength=cal.bins))
        assert est is not None
        errors.append(est.value - ok.mean())
        raw.append(live.mean() - ok.mean())
        covered += est.low <= ok.mean() <= est.high
    e = np.array(errors)
    assert abs(e.mean()) < 3 * e.std() / math.sqrt(e.size)
    assert np.mean(raw) > 0.1
    assert 0.92 <= covered / 400 <= 0.98, covered


def test_invalid_maps() -> None:
    with pytest.raises(ValueError, match="bins"):
        BinnedCalibration((1, 2), (1, 2))
    with pytest.raises(ValueError, match="correct <= labelled"):
        BinnedCalibration((10, 30), (11, 3), (0.5,), min_labels=1)
    with pytest.raises(ValueError, match="at least 30 labels"):
        BinnedCalibration((10, 3), (5, 3), (0.5,))
    with pytest.raises(ValueError, match="increase"):
        BinnedCalibration((10, 30, 0), (5, 3, 0), (0.5, 0.5), min_labels=1)
    cal = BinnedCalibration((10, 30), (5, 3), (0.5,), min_labels=1)
    with pytest.raises(ValueError, match="2 non-negative"):
        cal.estimate([1, 2, 3])
    assert cal.estimate([0, 0]) is None


def test_round_trip() -> None:
    cal = BinnedCalibration.fit(*overconfident(np.random.default_rng(5), 1000))
    assert BinnedCalibration.from_dict(cal.to_dict()) == cal


def test_window_counters_as_the_hot_path_counts_them() -> None:
    """Bins from the prediction record (what the Lua script counts as ``cb:<bin>``):
    summarize_window gives the map's estimate, and the raw mean beside it."""
    rng = np.random.default_rng(6)
    cal = BinnedCalibration.fit(*overconfident(rng, 2000))
    live, _ = overconfident(rng, 300)
    counters: dict[str, int] = {"count": 300, "conf_n": 300, "conf_sum": 0}
    for i, c in enumerate(live):
        p = Prediction(
            model="m",
            model_version="1",
            request_id=f"r{i}",
            prediction="a",
            probabilities={"a": float(c), "b": 1 - float(c)},
        )
        record = prediction_record(p, "t:0", i, 0.0, "a")
        counters["conf_sum"] += record[10]
        name = BIN_COUNTERS[0] + record[12]
        counters[name] = counters.get(name, 0) + 1
    m = summarize_window(counters, cal)
    est = cal.estimate(np.bincount(confidence_bins(live), minlength=cal.bins))
    assert est is not None
    assert m["estimated_accuracy"] == pytest.approx(est.value)
    assert m["estimated_accuracy_se"] == pytest.approx(est.se)
    assert m["estimated_accuracy_raw"] == pytest.approx(live.mean(), abs=1e-6)
    assert (
        bin_counts(counters, "cb:", cal.bins)
        == np.bincount(confidence_bins(live), minlength=cal.bins).tolist()
    )
    assert summarize_window(counters)["estimated_accuracy"] is None
