"""Concept drift on the joined error stream: ADWIN episodes kept in Redis, status in SQL.

Real Redis and SQL (the ``settings`` fixture isolates the keys); seeded
streams with planted changes and a long no-change control.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from sqlmodel import Session, select

from govloop.config import Settings
from govloop.schemas import DriftAlert
from govloop.stores.sql import (
    DriftAlertRow,
    DriftStatusRow,
    create_engine_for,
    drift_status,
    init_db,
)
from govloop.streams.calibration import Budget
from govloop.streams.concept import ConceptMonitor, Found, Outcome, advance, concept_key

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0


def outcomes(
    rates: Sequence[float],
    length: int,
    seed: int,
    stream: str = "error",
    model: str = "m",
    version: str = "v1",
) -> list[Outcome]:
    """``length`` outcomes per rate in turn, one second apart from ``T0``."""
    rng = np.random.default_rng(seed)
    p = np.repeat(rates, length)
    x = (rng.random(p.size) < p).astype(float)
    return [Outcome(model, version, stream, v, T0 + i) for i, v in enumerate(x.tolist())]


def batches(items: list[Outcome], size: int) -> list[list[Outcome]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def short(settings: Settings) -> Settings:
    """The tests' reference period (shorter than the default)."""
    return settings.model_copy(update={"concept_reference_outcomes": REF})


def client(settings: Settings) -> aioredis.Redis:
    assert settings.redis_url is not None
    return aioredis.from_url(settings.redis_url.get_secret_value())


async def feed(monitor: ConceptMonitor, parts: list[list[Outcome]]) -> list[DriftAlert]:
    alerts = []
    for part in parts:
        alerts += await monitor.observe(part)
    return alerts


# -- pure: the episode logic ----------------------------------------------------------

REF = 2000  # outcomes of the reference period in these tests


def per_10k(rate: float) -> float:
    """One detector's share of a 30-day budget in a fleet of 10 (see calibration.Budget)."""
    return Budget(30.0).per_10k(10, rate)


def run(stream: list[Outcome], size: int | None = None) -> tuple[dict[str, Any], list[Found]]:
    state: dict[str, Any] | None = None
    found: list[Found] = []
    for part in batches(stream, size or len(stream)):
        stored = None if state is None else json.loads(json.dumps(state))  # as in Redis
        state, changes = advance(
            stored, [o.value for o in part], [o.ts for o in part], REF, per_10k
        )
        found += changes
    assert state is not None
    return state, found


def seen(f: Found) -> tuple[Any, ...]:
    """What an alert shows of a change (its position in a batch is not part of it)."""
    return (f.change.state, f.change.ts, f.n, f.statistic, f.threshold, f.details)


def test_advance_does_not_depend_on_batch_boundaries() -> None:
    stream = outcomes([0.1, 0.4, 0.1, 0.3, 0.1], 4000, seed=3)
    whole, expected = run(stream)
    assert [f.change.state for f in expected] == ["drift", "recovered", "drift", "recovered"]
    rng = np.random.default_rng(0)
    for _ in range(3):
        cuts = sorted(rng.choice(np.arange(1, len(stream)), 60, replace=False).tolist())
        state: dict[str, Any] | None = None
        found: list[Found] = []
        for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            stored = None if state is None else json.loads(json.dumps(state))
            values, ts = [o.value for o in stream[a:b]], [o.ts for o in stream[a:b]]
            state, changes = advance(stored, values, ts, REF, per_10k)
            found += changes
        assert [seen(f) for f in found] == [seen(f) for f in expected]
        assert state == whole


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_a_small_rise_is_caught_and_never_adopted(seed: int) -> None:
    """10% -> 15%: one drift alert, and the episode stays open while the rate stays up
    (the detector stays calibrated on the reference; ADWIN's episodes adopted the new
    level half of the time)."""
    state, found = run(outcomes([0.1, 0.15], 30000, seed=seed)[REF // 2 :], 1000)
    assert [f.change.state for f in found] == ["drift"]
    assert state["watch"]["state"] == "drift"
    assert found[0].threshold == state["reference_rate"]
    assert abs(state["reference_rate"] - 0.1) < 0.025


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_an_unchanged_stream_of_the_same_length_raises_nothing(seed: int) -> None:
    state, found = run(outcomes([0.1], 59000, seed=seed + 100), 1000)
    assert found == []
    assert state["watch"]["state"] == "ok" and state["n"] == 59000


def test_a_falling_error_rate_is_no_drift() -> None:
    _, found = run(outcomes([0.3, 0.05], 5000, seed=4), 500)
    assert found == []


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_one_episode_whatever_happens_inside_it(seed: int) -> None:
    # worse, worse still, back: one drift and one recovery
    stream = outcomes([0.1, 0.4, 0.7, 0.1], 4000, seed=seed)
    _, found = run(stream, 700)
    assert [f.change.state for f in found] == ["drift", "recovered"]
    assert T0 + 4000 <= found[0].change.ts < T0 + 4300
    assert T0 + 12000 <= found[1].change.ts < T0 + 16000
    assert found[1].statistic > 0.3  # the rate over the episode


def test_advance_is_pure() -> None:
    stream = outcomes([0.1, 0.5], 3000, seed=5)
    state, _ = run(stream[:2500])
    frozen = json.dumps(state)
    advance(state, [o.value for o in stream[2500:]], [o.ts for o in stream[2500:]], REF, per_10k)
    assert json.dumps(state) == frozen


def test_nothing_is_alarmed_during_the_reference_period() -> None:
    state, found = run(outcomes([0.1, 0.9], REF // 2, seed=6))
    assert found == [] and state["ref"]["n"] == REF
    assert 0.4 < state["reference_rate"] < 0.6  # what the reference is, not what it should be


# -- the monitor, on Redis ------------------------------------------------------------------


def test_planted_change_raises_one_drift_then_one_recovery(settings: Settings) -> None:
    change, back = 3000, 6000
    stream = outcomes([0.1, 0.4, 0.1], 3000, seed=11) + outcomes([0.1], 4000, seed=12)

    async def run() -> list[DriftAlert]:
        r = client(settings)
        try:
            return await feed(ConceptMonitor(short(settings), r), batches(stream, 250))
        finally:
            await r.aclose()

    alerts = asyncio.run(run())
    assert [a.state for a in alerts] == ["drift", "recovered"]
    drift, recovered = alerts
    assert T0 + change <= drift.epoch < T0 + change + 300
    assert T0 + back <= recovered.epoch < T0 + back + 4000
    assert (drift.feature, drift.test, drift.severity) == ("error_rate", "calibrated", "critical")
    assert drift.statistic > drift.threshold
    assert 0.05 < drift.threshold < 0.15  # the reference rate
    assert recovered.threshold == drift.threshold  # the reference stays the reference
    assert 0.3 < recovered.statistic < 0.45  # the rate over the episode
    assert drift.details is not None and drift.details["detector"]["family"] == "rate"
    assert recovered.severity == "info"
    assert drift.model == "m" and drift.model_version == "v1" and drift.top_features == []


def test_negative_feedback_is_a_warning(settings: Settings) -> None:
    stream = outcomes([0.2, 0.6], 2500, seed=12, stream="negative")

    async def run() -> list[DriftAlert]:
        r = client(settings)
        try:
            return await feed(ConceptMonitor(short(settings), r), batches(stream, 500))
        finally:
            await r.aclose()

    alerts = asyncio.run(run())
    assert [(a.state, a.feature, a.severity) for a in alerts] == [
        ("drift", "negative_feedback_rate", "warning")
    ]


def test_no_change_raises_no_alert(settings: Settings) -> None:
    stream = outcomes([0.1], 100_000, seed=13)

    async def run() -> tuple[list[DriftAlert], dict[str, Any] | None]:
        r = client(settings)
        try:
            monitor = ConceptMonitor(short(settings), r)
            alerts = await feed(monitor, batches(stream, 2000))
            return alerts, await monitor.state("m", "v1", "error")
        finally:
            await r.aclose()

    alerts, state = asyncio.run(run())
    assert alerts == []
    assert state is not None and state["n"] == 100_000 and state["watch"]["state"] == "ok"


def test_alert_ids_are_deterministic(settings: Settings) -> None:
    stream = outcomes([0.1, 0.5], 2500, seed=14)

    async def run() -> tuple[list[DriftAlert], list[DriftAlert]]:
        r = client(settings)
        try:
            first = await feed(ConceptMonitor(short(settings), r), batches(stream, 300))
            await r.delete(concept_key(settings.redis_prefix, "m", "v1", "error"))
            again = await feed(ConceptMonitor(short(settings), r), batches(stream, 700))
            return first, again
        finally:
            await r.aclose()

    first, again = asyncio.run(run())
    assert len(first) == 1
    assert first == again  # same event ids, times and numbers: a re-publish is a duplicate


def test_concurrent_monitors_lose_no_update(settings: Settings) -> None:
    """Two workers, own clients, interleaved batches of the same keys at the same time."""
    streams = [
        outcomes([0.1, 0.4], 3000, seed=15),
        outcomes([0.2], 6000, seed=16, stream="negative"),
    ]
    # every batch holds outcomes of both keys; the workers take alternate batches
    parts = [a + b for a, b in zip(*(batches(s, 60) for s in streams), strict=True)]

    async def run() -> tuple[list[ConceptMonitor], list[DriftAlert], list[dict[str, Any] | None]]:
        clients = [client(settings), client(settings)]
        try:
            monitors = [ConceptMonitor(short(settings), c) for c in clients]
            found = await asyncio.gather(
                feed(monitors[0], parts[0::2]), feed(monitors[1], parts[1::2])
            )
            states = [await monitors[0].state("m", "v1", s) for s in ("error", "negative")]
            return monitors, found[0] + found[1], states
        finally:
            for c in clients:
                await c.aclose()

    monitors, alerts, states = asyncio.run(run())
    assert [None if s is None else s["n"] for s in states] == [6000, 6000]
    assert sum(m.retries for m in monitors) > 0  # the two really did collide
    # the commit order decides each key's stream order, so the episodes may vary; the
    # hysteresis holds all the same: alerts alternate, and end in the stored state
    for feature, state in zip(("error_rate", "negative_feedback_rate"), states, strict=True):
        kinds = [a.state for a in alerts if a.feature == feature]
        assert state is not None
        drifting = state["watch"]["state"] == "drift"
        assert kinds.count("drift") - kinds.count("recovered") == int(drifting)
    assert any(a.feature == "error_rate" for a in alerts)


def test_unknown_stream_is_refused(settings: Settings) -> None:
    async def run() -> None:
        r = client(settings)
        try:
            await ConceptMonitor(short(settings), r).observe(
                [Outcome("m", "v1", "latency", 1.0, T0)]
            )
        finally:
            await r.aclose()

    with pytest.raises(ValueError, match="unknown outcome stream"):
        asyncio.run(run())


# -- SQL: status rows and alerts --------------------------------------------------------------


def test_status_and_alerts_are_recorded(settings: Settings, db_url: str) -> None:
    engine = create_engine_for(settings.model_copy(update={"db_url": SecretStr(db_url)}))
    init_db(engine)
    model = f"m-{settings.topic_prefix}"  # PostgreSQL is shared between tests
    stream = outcomes([0.1, 0.4, 0.1], 3000, seed=11, model=model)
    stream += outcomes([0.1], 4000, seed=12, model=model)
    parts = batches(stream, 250)

    async def scenario() -> list[list[DriftStatusRow]]:
        r = client(settings)
        seen = []
        try:
            monitor = ConceptMonitor(short(settings), r, engine, status_seconds=0.0)
            for lo, hi in [(0, 6), (6, 20), (20, len(parts))]:
                await feed(monitor, parts[lo:hi])
                with Session(engine) as session:
                    seen.append(drift_status(session, model))
        finally:
            await r.aclose()
        return seen

    try:
        early, drifting, recovered = asyncio.run(scenario())
        with Session(engine) as session:
            alerts = list(session.exec(select(DriftAlertRow).where(DriftAlertRow.model == model)))
    finally:
        engine.dispose()
    assert [(r.feature, r.state, r.test) for r in early] == [("error_rate", "ok", "calibrated")]
    assert early[0].n_current == 1500 and early[0].since is None
    assert early[0].reference_version == "learning: 1500 of 2000 outcomes"
    row = drifting[0]
    assert (row.state, row.drifted) == ("drift", True)
    assert row.since is not None and row.threshold < row.statistic
    assert (recovered[0].state, recovered[0].drifted) == ("ok", False)
    assert recovered[0].since is not None and recovered[0].since > row.since
    assert sorted(a.state for a in alerts) == ["drift", "recovered"]


def test_concept_drift_through_the_worker(settings: Settings, tmp_path: Any) -> None:
    """Labels through the broker: the error rate jumps 5% -> 50%; one error_rate alert."""
    from datetime import UTC, datetime, timedelta

    from govloop.schemas import Feedback, Prediction
    from tests.kafka_helpers import WorkerProcess, consume, produce

    s = settings.model_copy(
        update={
            "idle_close_seconds": 20.0,
            "window_grace_seconds": 1.0,
            "reference_events": 0,
            "concept_reference_outcomes": REF,
            "policies": "",
        }
    )
    start = datetime(2030, 1, 1, tzinfo=UTC)
    rng = np.random.default_rng(5)
    preds, fbs = [], []
    for i in range(4000):
        ts = start + timedelta(seconds=i * 0.05)
        rid = f"r{i}"
        preds.append(
            Prediction(model="clf", model_version="3", request_id=rid, ts=ts, prediction="yes")
        )
        wrong = rng.random() < (0.05 if i < 2500 else 0.5)
        fbs.append(Feedback(request_id=rid, label="no" if wrong else "yes", ts=ts))
    produce(s, "predictions", preds)
    produce(s, "feedback", fbs)
    with WorkerProcess(s, tmp_path / "worker.log"):
        consume(s, "drift", 1, timeout=45)
        # and nothing more: one episode, one alert
        alerts = [a for a in consume(s, "drift", 2, timeout=6) if isinstance(a, DriftAlert)]
    log = (tmp_path / "worker.log").read_text()[-3000:]
    assert [(a.feature, a.state, a.test) for a in alerts] == [
        ("error_rate", "drift", "calibrated")
    ], log
    alert = alerts[0]
    # threshold: the reference rate; statistic: the rate the arm that fired stands for
    assert alert.threshold < 0.1 and alert.statistic > 2 * alert.threshold
    # detected after the change, within a few hundred outcomes of it
    assert start + timedelta(seconds=2500 * 0.05) <= alert.ts <= start + timedelta(seconds=135)
    with Session(create_engine_for(s)) as session:
        status = {r.feature: r for r in drift_status(session, "clf")}
    assert status["error_rate"].state == "drift"


# -- the worker's chain of observes (off the write's path) -------------------------------------


def test_chained_observes_run_in_order_and_stop_at_an_error(settings: Settings) -> None:
    """The worker queues each batch's outcomes behind the previous ones: the alerts are
    those of feeding the batches one by one, and an error reaches whoever waits."""
    from govloop.streams.hot_path import InputBatches

    stream = outcomes([0.1, 0.4, 0.1], 3000, seed=11) + outcomes([0.1], 4000, seed=12)
    published: list[tuple[str, bytes]] = []

    async def publish(topic: str, key: bytes | None, value: bytes) -> None:
        await asyncio.sleep(0)  # let the next observe be queued meanwhile
        published.append((topic, value))

    async def run() -> tuple[dict[str, Any] | None, bool]:
        r = client(settings)
        batches_ = InputBatches(short(settings), r, publish)
        try:
            await batches_.start()
            for part in batches(stream, 250):
                batches_.observes.later(part)
            await batches_.flush()
            state = await batches_.concept.state("m", "v1", "error")
            batches_.observes.later([Outcome("m", "v1", "latency", 1.0, T0)])
            batches_.observes.later(stream[:10])  # after the failed one: never observed
            with pytest.raises(ValueError, match="unknown outcome stream"):
                await batches_.observed()
            with pytest.raises(ValueError, match="unknown outcome stream"):
                await batches_.flush()  # a commit would stop here too
            after = await batches_.concept.state("m", "v1", "error")
            return state, after == state
        finally:
            batches_.engine.dispose()
            await r.aclose()

    state, unchanged = asyncio.run(run())
    assert [DriftAlert.model_validate_json(v).state for _, v in published] == ["drift", "recovered"]
    assert {topic for topic, _ in published} == {"drift"}
    assert state is not None and state["n"] == len(stream)
    assert unchanged
