"""Snapshots per A/B variant and segment, and sliding windows, through the broker."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from govloop.config import Settings
from govloop.schemas import Feedback, MetricSnapshot, Prediction
from tests.kafka_helpers import WorkerProcess, consume, produce

pytestmark = pytest.mark.integration

T0 = datetime(2030, 1, 1, tzinfo=UTC)
SITES = ("north", "south", "east")


def minute_of_traffic(minute: int, n: int) -> tuple[list[Prediction], list[Feedback]]:
    """n predictions in one minute: variants alternate, sites cycle, variant b is wrong 1 in 2."""
    preds, fbs = [], []
    start = T0 + timedelta(minutes=minute)
    for i in range(n):
        ts = start + timedelta(seconds=i * 50 / n)
        rid = f"{minute}-{i}"
        variant = "ab"[i % 2]
        confidence = 0.9 if variant == "a" else 0.6
        preds.append(
            Prediction(
                model="clf",
                model_version="1",
                request_id=rid,
                ts=ts,
                probabilities={"yes": confidence, "no": 1 - confidence},
                experiment="pricing",
                variant=variant,
                segment={"site": SITES[i % 3]},
            )
        )
        wrong = variant == "b" and i % 4 == 1
        fbs.append(Feedback(request_id=rid, label="no" if wrong else "yes", ts=ts))
    return preds, fbs


def test_variant_segment_and_sliding_snapshots(settings: Settings, tmp_path: Path) -> None:
    s = settings.model_copy(
        update={
            "idle_close_seconds": 3.0,
            "window_grace_seconds": 1.0,
            "sliding_windows": 2,
            "segment_slices": 2,
        }
    )
    sizes = (24, 36, 12)  # predictions per minute
    preds, fbs = [], []
    for minute, n in enumerate(sizes):
        p, f = minute_of_traffic(minute, n)
        preds += p
        fbs += f
    produce(s, "predictions", preds)
    produce(s, "feedback", fbs)
    # per minute: overall + 2 variants + 3 segment slices (2 named, 1 __other__), x2 kinds
    want = len(sizes) * 6 * 2
    with WorkerProcess(s, tmp_path / "worker.log"):
        snaps = [
            x for x in consume(s, "metrics", want, timeout=120) if isinstance(x, MetricSnapshot)
        ]
    assert len(snaps) == want, (tmp_path / "worker.log").read_text()[-3000:]
    assert len({x.event_id for x in snaps}) == want

    def pick(window: str, slice_kind: str) -> list[MetricSnapshot]:
        def kind(x: MetricSnapshot) -> str:
            return "variant" if x.variant else "segment" if x.segment else "overall"

        return [x for x in snaps if x.window == window and kind(x) == slice_kind]

    overall = {x.window_start: x for x in pick("tumbling", "overall")}
    assert [overall[T0 + timedelta(minutes=m)].count for m in range(3)] == list(sizes)
    # the raw confidence-based estimate: the mean probability of the served class
    for m, n in enumerate(sizes):
        assert overall[T0 + timedelta(minutes=m)].estimated_accuracy_raw == pytest.approx(0.75)
        assert overall[T0 + timedelta(minutes=m)].labelled_count == n

    variants = {(x.window_start, x.variant): x for x in pick("tumbling", "variant")}
    for m, n in enumerate(sizes):
        a = variants[(T0 + timedelta(minutes=m), "a")]
        b = variants[(T0 + timedelta(minutes=m), "b")]
        assert (a.experiment, a.count, a.accuracy) == ("pricing", n // 2, 1.0)
        assert b.count == n // 2 and b.accuracy == pytest.approx(0.5)
        assert (a.estimated_accuracy_raw, b.estimated_accuracy_raw) == pytest.approx((0.9, 0.6))

    for m, n in enumerate(sizes):
        segments = [
            x for x in pick("tumbling", "segment") if x.window_start == T0 + timedelta(minutes=m)
        ]
        values = Counter(v for x in segments for v in x.segment.values())  # type: ignore[union-attr]
        # two site values get their own snapshot, the third is counted as __other__
        assert values["__other__"] == 1 and len(values) == 3, values
        assert sum(x.count for x in segments) == n
        assert {x.count for x in segments} == {n // 3}

    sliding = {x.window_end: x for x in pick("sliding", "overall")}
    for m in range(3):
        x = sliding[T0 + timedelta(minutes=m + 1)]
        assert x.window_start == T0 + timedelta(minutes=m - 1)
        assert x.count == sizes[m] + (sizes[m - 1] if m else 0)
    sliding_b = {x.window_end: x for x in pick("sliding", "variant") if x.variant == "b"}
    assert sliding_b[T0 + timedelta(minutes=2)].count == (sizes[0] + sizes[1]) // 2
