"""The calibrated accuracy estimate through the real worker: a labelled calibration period,
then unlabelled windows whose estimate is the map's, as the pure code computes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import Session

from govloop.config import Settings
from govloop.schemas import Feedback, MetricSnapshot, Prediction
from govloop.stats.binning import BinnedCalibration, confidence_bins
from govloop.stores.sql import create_engine_for, latest_calibration
from tests.kafka_helpers import WorkerProcess, consume, produce

pytestmark = pytest.mark.integration

T0 = datetime(2030, 1, 1, tzinfo=UTC)
PER_MINUTE = 100
MINUTES = 8
PERIOD = 5  # minutes of labelled traffic: the calibration period (500 events)


def test_snapshots_carry_a_calibrated_estimate_after_a_labelled_period(
    settings: Settings, tmp_path: Path
) -> None:
    s = settings.model_copy(
        update={
            "idle_close_seconds": 3.0,
            "window_grace_seconds": 1.0,
            "calibration_events": PERIOD * PER_MINUTE,
        }
    )
    rng = np.random.default_rng(10)
    # an overconfident model: right with probability confidence ** 3
    confidence = np.round(rng.uniform(0.5, 1.0, size=(MINUTES, PER_MINUTE)), 4)
    right = rng.random((MINUTES, PER_MINUTE)) < confidence**3
    preds, fbs = [], []
    for m in range(MINUTES):
        for i in range(PER_MINUTE):
            rid, ts = f"{m}-{i}", T0 + timedelta(minutes=m, seconds=i * 50 / PER_MINUTE)
            c = float(confidence[m, i])
            preds.append(
                Prediction(
                    model="clf",
                    model_version="1",
                    request_id=rid,
                    ts=ts,
                    probabilities={"yes": c, "no": round(1 - c, 4)},
                )
            )
            if m < PERIOD:  # labels only in the calibration period
                label = "yes" if right[m, i] else "no"
                fbs.append(Feedback(request_id=rid, label=label, ts=ts))
    produce(s, "predictions", preds)
    produce(s, "feedback", fbs)
    with WorkerProcess(s, tmp_path / "worker.log"):
        snaps = [
            x for x in consume(s, "metrics", MINUTES, timeout=120) if isinstance(x, MetricSnapshot)
        ]
    assert len(snaps) == MINUTES, (tmp_path / "worker.log").read_text()[-3000:]
    by_minute = {int((x.window_start - T0).total_seconds() // 60): x for x in snaps}

    expected = BinnedCalibration.fit(confidence[:PERIOD].ravel(), right[:PERIOD].ravel())
    for m in range(MINUTES):
        snap = by_minute[m]
        assert snap.estimated_accuracy_raw == pytest.approx(confidence[m].mean(), abs=1e-6)
        if m < PERIOD - 1:  # the period is not over: no map yet
            assert (snap.estimated_accuracy, snap.estimated_accuracy_se) == (None, None)
            assert snap.calibration is None
            continue
        est = expected.estimate(
            np.bincount(confidence_bins(confidence[m]), minlength=expected.bins)
        )
        assert est is not None
        assert snap.estimated_accuracy == pytest.approx(est.value)
        assert snap.estimated_accuracy_se == pytest.approx(est.se)
        assert snap.calibration == "v1: first 500 events, 500 labels"
        # the raw mean is about 13 points high; the calibrated estimate is near the truth
        assert abs(snap.estimated_accuracy - right[m].mean()) < 4 * est.se
        assert snap.estimated_accuracy_raw - right[m].mean() > 0.05

    with Session(create_engine_for(s)) as session:
        row = latest_calibration(session, "clf", "1")
    assert row is not None and (row.state, row.n_events, row.n_labels) == ("fitted", 500, 500)
