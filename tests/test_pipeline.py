"""End to end through the real broker, Redis and SQL: join, windows, snapshots, gates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from govloop.audit.manifest import load_manifest
from govloop.config import Settings
from govloop.schemas import Feedback, GateResult, MetricSnapshot, Prediction
from govloop.stores.sql import GateResultRow, create_engine_for
from tests.kafka_helpers import WorkerProcess, consume, produce

pytestmark = pytest.mark.integration

T0 = datetime(2030, 1, 1, tzinfo=UTC)

POLICY = """
name: acc
rules:
  - {kind: min_samples, metric: count, value: 10}
  - {metric: accuracy, op: ">=", value: 0.8}
"""


def traffic(n: int, wrong_every: int, start: datetime, model: str = "clf") -> list:
    """n predictions 'a' with feedback; every wrong_every-th true label is 'b'."""
    events: list = []
    for i in range(n):
        ts = start + timedelta(seconds=i * 50 / n)
        rid = f"{start.timestamp()}-{i}"
        events.append(
            Prediction(
                model=model,
                model_version="1",
                request_id=rid,
                prediction="a",
                latency_ms=10 + i % 5,
                ts=ts,
            )
        )
        label = "b" if wrong_every and i % wrong_every == 0 else "a"
        events.append(Feedback(request_id=rid, label=label, positive=label == "a", ts=ts))
    return events


def fast(settings: Settings, tmp_path: Path) -> Settings:
    policy = tmp_path / "acc.yaml"
    policy.write_text(POLICY)
    return settings.model_copy(
        update={"idle_close_seconds": 3.0, "window_grace_seconds": 1.0, "policies": str(policy)}
    )


def test_snapshots_and_gate_results(settings: Settings, tmp_path: Path) -> None:
    s = fast(settings, tmp_path)
    good = traffic(40, 0, T0)
    bad = traffic(40, 2, T0 + timedelta(minutes=1))
    preds = [e for e in good + bad if isinstance(e, Prediction)]
    fbs = [e for e in good + bad if isinstance(e, Feedback)]
    produce(s, "predictions", preds)
    produce(s, "feedback", fbs)
    with WorkerProcess(s, tmp_path / "worker.log"):
        snaps = consume(s, "metrics", 2, timeout=90)
        gates = consume(s, "gates", 2, timeout=30)
    assert len(snaps) == 2, (tmp_path / "worker.log").read_text()[-3000:]
    by_start = {x.window_start: x for x in snaps if isinstance(x, MetricSnapshot)}
    first, second = by_start[T0], by_start[T0 + timedelta(minutes=1)]
    assert (first.count, first.feedback_count, first.accuracy) == (40, 40, 1.0)
    assert (second.count, second.labelled_count, second.correct_count) == (40, 40, 20)
    assert second.accuracy == 0.5 and second.positive_rate == 0.5
    assert first.latency_p50_ms == pytest.approx(12, rel=0.011)
    outcomes = {g.window_start: g.outcome for g in gates if isinstance(g, GateResult)}
    assert outcomes == {T0: "pass", T0 + timedelta(minutes=1): "fail"}
    with Session(create_engine_for(s)) as session:
        rows = session.exec(select(GateResultRow)).all()
    assert sorted(r.outcome for r in rows) == ["fail", "pass"]


def test_a_flapping_gate_publishes_changes_of_state(settings: Settings, tmp_path: Path) -> None:
    """pass, fail, pass, fail, pass, pass: the topic says pass, fail, pass; SQL has all six."""
    s = fast(settings, tmp_path)
    wrong_every = [0, 2, 0, 2, 0, 0]
    events = [
        e
        for minute, w in enumerate(wrong_every)
        for e in traffic(20, w, T0 + timedelta(minutes=minute))
    ]
    produce(s, "predictions", [e for e in events if isinstance(e, Prediction)])
    produce(s, "feedback", [e for e in events if isinstance(e, Feedback)])
    with WorkerProcess(s, tmp_path / "worker.log"):
        consume(s, "metrics", len(wrong_every), timeout=90)
        gates = [g for g in consume(s, "gates", 4, timeout=15) if isinstance(g, GateResult)]
    changes = [
        ((g.window_start - T0).seconds // 60, g.previous_outcome, g.outcome)
        for g in gates
        if g.window_start is not None
    ]
    assert changes == [(0, None, "pass"), (1, "pass", "fail"), (5, "fail", "pass")], (
        tmp_path / "worker.log"
    ).read_text()[-3000:]
    with Session(create_engine_for(s)) as session:
        rows = session.exec(select(GateResultRow)).all()
        manifests = {r.manifest_id for r in (GateResult.model_validate_json(x.body) for x in rows)}
        assert len(rows) == 6 and None not in manifests
        assert all(load_manifest(session, m) is not None for m in manifests)  # type: ignore[arg-type]


def test_online_regression_against_a_stored_baseline(settings: Settings, tmp_path: Path) -> None:
    """A policy names a stored baseline: a real drop fails, noise passes; replay agrees."""
    from govloop.audit.records import save_baseline
    from govloop.gates import MetricValue
    from govloop.repro import replay
    from govloop.stores.sql import init_db

    policy = tmp_path / "regression.yaml"
    policy.write_text("""
name: no-regression
baseline: clf-yesterday
rules:
  - {kind: regression, metric: accuracy, margin: 0.0, alpha: 0.01}
""")
    s = settings.model_copy(
        update={"idle_close_seconds": 3.0, "window_grace_seconds": 1.0, "policies": str(policy)}
    )
    engine = create_engine_for(s)
    init_db(engine)
    with Session(engine) as session:
        save_baseline(
            session,
            "clf-yesterday",
            {"accuracy": MetricValue(value=0.95, n=400, successes=380)},
            source="test",
        )
        session.commit()
    # 40 labelled per window: all right (no drop), then one in two wrong (a real drop)
    events = traffic(40, 0, T0) + traffic(40, 2, T0 + timedelta(minutes=1))
    produce(s, "predictions", [e for e in events if isinstance(e, Prediction)])
    produce(s, "feedback", [e for e in events if isinstance(e, Feedback)])
    with WorkerProcess(s, tmp_path / "worker.log"):
        consume(s, "metrics", 2, timeout=90)
        gates = [g for g in consume(s, "gates", 2, timeout=30) if isinstance(g, GateResult)]
    assert [g.outcome for g in gates] == ["pass", "fail"], (tmp_path / "worker.log").read_text()[
        -3000:
    ]
    failed = gates[1]
    assert "baseline" in failed.rules[0].detail or "0.95" in failed.rules[0].detail, failed.rules
    with Session(engine) as session:
        manifest = load_manifest(session, failed.manifest_id)  # type: ignore[arg-type]
        assert manifest is not None and manifest.evidence["baseline"]["ref"]["versions"] == [1]
        again = replay(session, failed.event_id, s)
    assert again.match, again.differences


def test_a_drift_alert_makes_the_gate_look_again(settings: Settings, tmp_path: Path) -> None:
    """A drift alert re-judges the latest snapshot with the alert active; replay agrees."""
    from govloop.repro import replay
    from govloop.schemas import DriftAlert
    from govloop.stores.sql import init_db, save_snapshot

    policy = tmp_path / "drift.yaml"
    policy.write_text("""
name: no-drift
rules:
  - {metric: accuracy, op: ">=", value: 0.8}
  - {kind: drift, features: ["*"], max_alerts: 0}
""")
    s = settings.model_copy(update={"policies": str(policy)})
    engine = create_engine_for(s)
    init_db(engine)
    snap = MetricSnapshot(
        model="clf",
        model_version="1",
        window_start=T0,
        window_end=T0 + timedelta(minutes=1),
        ts=T0 + timedelta(minutes=1),
        count=100,
        feedback_count=100,
        labelled_count=100,
        correct_count=90,
        positive_count=0,
        judged_count=0,
        accuracy=0.9,
    )
    with Session(engine) as session:
        save_snapshot(session, snap)  # what the worker stored when the window closed
        session.commit()
    alert = DriftAlert(
        model="clf",
        model_version="1",
        feature="age",
        test="ks",
        statistic=0.4,
        threshold=0.1,
        p_value=1e-6,
        ts=T0 + timedelta(minutes=2),
    )
    produce(s, "drift", [alert])
    with WorkerProcess(s, tmp_path / "worker.log"):
        gates = [g for g in consume(s, "gates", 1, timeout=45) if isinstance(g, GateResult)]
    assert [(g.outcome, g.trigger_event_id, g.window_start) for g in gates] == [
        ("fail", alert.event_id, T0)
    ], (tmp_path / "worker.log").read_text()[-3000:]
    drift_rule = gates[0].rules[1]
    assert drift_rule.outcome == "fail" and "age" in drift_rule.detail
    with Session(engine) as session:
        manifest = load_manifest(session, gates[0].manifest_id)  # type: ignore[arg-type]
        assert manifest is not None
        assert [i["kind"] for i in manifest.inputs] == ["kafka", "stored"]
        again = replay(session, gates[0].event_id, s)
    assert again.match, again.differences
