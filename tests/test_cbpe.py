"""CBPE: interval coverage in simulations, a real classifier, calibration, late labels."""

from __future__ import annotations

import pickle
import subprocess
import sys
from dataclasses import astuple

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from govloop.stats.cbpe import (
    AccuracyEstimate,
    Calibrator,
    ConfidenceBasedAccuracy,
    EstimateCheck,
    top_class,
)

TRIALS = 200


def calibrated_stream(
    rng: np.random.Generator, n: int, low: float = 0.5, high: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Top-class confidences and outcomes of a perfectly calibrated classifier."""
    confidence = rng.uniform(low, high, size=n)
    return confidence, rng.random(n) < confidence


# --- the estimate ------------------------------------------------------------------------------


def test_interval_covers_realised_accuracy_at_its_level() -> None:
    rng = np.random.default_rng(20240601)
    covered = 0
    for _ in range(TRIALS):
        confidence, correct = calibrated_stream(rng, 400)
        cbpe = ConfidenceBasedAccuracy()
        cbpe.update_many(confidence)
        est = cbpe.estimate()
        assert est is not None
        covered += est.low <= correct.mean() <= est.high
    assert 0.85 <= covered / TRIALS <= 1.0, covered


def test_a_narrower_level_covers_less() -> None:
    rng = np.random.default_rng(5)
    covered = 0
    for _ in range(TRIALS):
        confidence, correct = calibrated_stream(rng, 400)
        cbpe = ConfidenceBasedAccuracy(level=0.5)
        cbpe.update_many(confidence)
        est = cbpe.estimate()
        assert est is not None
        covered += est.low <= correct.mean() <= est.high
    assert 0.38 <= covered / TRIALS <= 0.62, covered


def test_estimate_by_hand() -> None:
    cbpe = ConfidenceBasedAccuracy()
    cbpe.update({"a": 0.9, "b": 0.1})
    cbpe.update([0.2, 0.5, 0.3])
    cbpe.update(0.7)  # a bare number is the top-class confidence
    est = cbpe.estimate()
    assert est is not None
    assert est.value == pytest.approx((0.9 + 0.5 + 0.7) / 3)
    assert est.se == pytest.approx(np.sqrt(0.9 * 0.1 + 0.5 * 0.5 + 0.7 * 0.3) / 3)
    assert est.low == pytest.approx(est.value - 1.959963984540054 * est.se)
    assert est.n == 3


def test_interval_is_clipped_and_empty_is_none() -> None:
    cbpe = ConfidenceBasedAccuracy()
    assert cbpe.get() is None and cbpe.estimate() is None and cbpe.compare() is None
    cbpe.update_many([1.0, 1.0, 0.99])
    est = cbpe.estimate()
    assert est is not None and est.high == 1.0 and est.low < 1.0


def test_entry_points_agree() -> None:
    rng = np.random.default_rng(1)
    proba = rng.dirichlet([1.0, 1.0, 1.0], size=300)
    one, matrix, vector = (ConfidenceBasedAccuracy() for _ in range(3))
    for row in proba:
        one.update(dict(zip("abc", row.tolist(), strict=True)))
    matrix.update_many(proba)
    vector.update_many(proba.max(axis=1))
    for other in (matrix, vector):
        assert vars(other) == pytest.approx(vars(one), rel=1e-12)


def test_inputs_are_validated() -> None:
    cbpe = ConfidenceBasedAccuracy()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cbpe.update(1.5)
    with pytest.raises(ValueError, match="probability vector"):
        cbpe.update([])
    with pytest.raises(ValueError, match="probability vector"):
        cbpe.update({})
    with pytest.raises(ValueError, match="shape"):
        cbpe.update_many(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cbpe.update_many([0.5, -0.1])
    with pytest.raises(ValueError, match="level"):
        ConfidenceBasedAccuracy(level=1.0)
    with pytest.raises(ValueError, match="classes"):
        top_class([[0.5, 0.5]], classes=["a"])


# --- merge and contract ------------------------------------------------------------------------


def test_merging_partitions_equals_the_whole() -> None:
    rng = np.random.default_rng(2)
    confidence, correct = calibrated_stream(rng, 500)
    whole, left, right = (ConfidenceBasedAccuracy() for _ in range(3))
    whole.update_many(confidence)
    left.update_many(confidence[:123])
    for c in confidence[123:]:
        right.update(c)
    for i, (c, ok) in enumerate(zip(confidence[:200], correct[:200], strict=True)):
        whole.observe(ok, c)
        (left if i % 2 else right).observe(ok, c)
    left += right
    assert vars(left) == pytest.approx(vars(whole), rel=1e-12)
    merged, expected = left.compare(), whole.compare()
    assert merged is not None and expected is not None
    assert astuple(merged) == pytest.approx(astuple(expected), rel=1e-12)


def test_contract() -> None:
    cbpe = ConfidenceBasedAccuracy(level=0.9)
    cbpe.update_many([0.8, 0.9])
    cbpe.observe(True, 0.8)
    restored = pickle.loads(pickle.dumps(cbpe))
    assert vars(restored) == vars(cbpe)
    clone = cbpe.clone()
    assert clone.level == 0.9 and vars(clone) == vars(ConfidenceBasedAccuracy(level=0.9))
    assert repr(cbpe) == "ConfidenceBasedAccuracy(level=0.9): 0.8500"
    cbpe._reset()
    assert vars(cbpe) == vars(ConfidenceBasedAccuracy(level=0.9))
    with pytest.raises(ValueError, match="cannot merge"):
        cbpe += ConfidenceBasedAccuracy(level=0.95)


# --- comparison with the labels that arrive ----------------------------------------------------


def _compare(
    rng: np.random.Generator,
    shift: float,
    matched: bool,
    n: int = 1000,
    m: int = 300,
    pick_hardest: bool = False,
) -> EstimateCheck:
    """n calibrated predictions whose accuracy moves by ``shift``; m of them get labels."""
    confidence = rng.uniform(0.5, 1.0, size=n)
    correct = rng.random(n) < np.clip(confidence + shift, 0.0, 1.0)
    cbpe = ConfidenceBasedAccuracy()
    cbpe.update_many(confidence)
    labelled = np.argsort(confidence)[:m] if pick_hardest else rng.choice(n, m, replace=False)
    for i in labelled:
        cbpe.observe(bool(correct[i]), float(confidence[i]) if matched else None)
    result = cbpe.compare()
    assert result is not None and result.matched is matched and result.labelled == m
    return result


@pytest.mark.parametrize("matched", [True, False])
def test_calibrated_model_rarely_flags(matched: bool) -> None:
    rng = np.random.default_rng(3)
    zs = np.array([_compare(rng, 0.0, matched).z for _ in range(TRIALS)])
    assert np.mean(np.abs(zs) > 1.96) <= 0.12
    assert abs(zs.mean()) < 0.25 and 0.8 < zs.std() < 1.2


@pytest.mark.parametrize("matched", [True, False])
def test_concept_drift_is_flagged_by_the_labels(matched: bool) -> None:
    rng = np.random.default_rng(4)
    results = [_compare(rng, -0.15, matched) for _ in range(20)]
    assert all(r.z < -3 and r.p_value < 0.01 for r in results)
    assert all(abs(r.estimate - 0.75) < 0.03 for r in results)  # the estimate cannot see it


def test_matched_comparison_survives_labels_chosen_by_confidence() -> None:
    # Active learning labels the least confident predictions first: their accuracy is
    # low, but so is their own estimate. Only the unmatched comparison is fooled.
    rng = np.random.default_rng(6)
    matched = [_compare(rng, 0.0, True, pick_hardest=True).z for _ in range(50)]
    unmatched = [_compare(rng, 0.0, False, pick_hardest=True).z for _ in range(50)]
    assert np.mean(np.abs(matched) > 1.96) <= 0.15
    assert np.mean(np.asarray(unmatched) < -3) >= 0.9


# --- calibration ---------------------------------------------------------------------------------


def test_calibrator_matches_isotonic_regression() -> None:
    rng = np.random.default_rng(7)
    raw = rng.uniform(0.3, 1.0, size=2000)
    right = rng.random(2000) < raw**2
    cal = Calibrator().fit(raw, right)
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(raw, right)
    grid = np.linspace(0.0, 1.0, 501)  # also outside the fitted range: clipped
    np.testing.assert_allclose(cal.transform(grid), iso.predict(grid), atol=1e-12)
    assert np.all(np.diff(cal.transform(grid)) >= 0)
    assert isinstance(cal.transform(0.8), float)
    restored = pickle.loads(pickle.dumps(cal))
    np.testing.assert_array_equal(restored.transform(grid), cal.transform(grid))
    assert repr(cal).startswith("Calibrator(): ") and "breakpoints" in repr(cal)


def test_calibrator_needs_fitting_and_good_data() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        Calibrator().transform(0.5)
    with pytest.raises(ValueError, match="1-D"):
        Calibrator().fit([0.5, 0.6], [True])


def test_calibration_repairs_an_overconfident_model() -> None:
    rng = np.random.default_rng(8)
    raw_ref = rng.uniform(0.6, 1.0, size=3000)
    cal = Calibrator().fit(raw_ref, rng.random(3000) < raw_ref - 0.2)
    raw = rng.uniform(0.6, 1.0, size=3000)
    correct = rng.random(3000) < raw - 0.2
    naive, calibrated = ConfidenceBasedAccuracy(), ConfidenceBasedAccuracy()
    naive.update_many(raw)
    calibrated.update_many(cal.transform(raw))
    est = calibrated.estimate()
    assert est is not None
    assert abs((naive.get() or 0.0) - correct.mean()) > 0.15
    assert abs(est.value - correct.mean()) < 0.02


def _breast_cancer_errors(c: float, seed: int) -> tuple[float, float, AccuracyEstimate]:
    """(|raw estimate - accuracy|, |calibrated estimate - accuracy|, calibrated estimate)."""
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=0.5, random_state=seed, stratify=y
    )
    x_cal, x_test, y_cal, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
    model.fit(x_train, y_train)
    confidence, predicted = top_class(model.predict_proba(x_cal), model.classes_)
    cal = Calibrator().fit(confidence, predicted == y_cal)
    confidence, _ = top_class(model.predict_proba(x_test), model.classes_)
    raw, calibrated = ConfidenceBasedAccuracy(), ConfidenceBasedAccuracy()
    raw.update_many(confidence)  # no label of the test split is used
    calibrated.update_many(cal.transform(confidence))
    accuracy = accuracy_score(y_test, model.predict(x_test))
    est = calibrated.estimate()
    assert est is not None
    return abs((raw.get() or 0.0) - accuracy), abs(est.value - accuracy), est


def test_estimate_tracks_a_logistic_regression_on_breast_cancer() -> None:
    errors = np.array([_breast_cancer_errors(1.0, seed)[1] for seed in range(6)])
    assert errors.max() < 0.045 and errors.mean() < 0.025, errors


def test_calibrating_an_underconfident_regression_on_breast_cancer() -> None:
    # Strong regularisation leaves the model right ~94 % of the time at ~85 % confidence.
    raw, calibrated = np.array([_breast_cancer_errors(0.01, seed)[:2] for seed in range(6)]).T
    assert raw.mean() > 0.07 and calibrated.mean() < 0.035, (raw, calibrated)


def test_modules_import_no_io_packages() -> None:
    code = (
        "import sys\n"
        "import govloop.stats.metrics, govloop.stats.cbpe\n"
        "io = ('faust', 'mode', 'redis', 'sqlmodel', 'sqlalchemy', 'kafka', 'aiokafka')\n"
        "print(','.join(sorted({m for m in sys.modules if m.split('.')[0] in io})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "" and out.stderr == ""
