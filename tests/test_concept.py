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
from govloop.streams.concept import Change, ConceptMonitor, Outcome, advance, concept_key

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


def client(settings: Settings) -> aioredis.Redis:
    assert settings.redis_url is not None
    return aioredis.from_url(settings.redis_url.get_secret_value())


async def feed(monitor: ConceptMonitor, parts: list[list[Outcome]]) -> list[DriftAlert]:
    alerts = []
    for part in parts:
        alerts += await monitor.observe(part)
    return alerts


# -- pure: the episode logic ----------------------------------------------------------


def test_advance_does_not_depend_on_batch_boundaries() -> None:
    stream = outcomes([0.1, 0.4, 0.1, 0.25, 0.1], 2000, seed=3)
    values, ts = [o.value for o in stream], [o.ts for o in stream]
    whole, expected = advance(None, values, ts, delta=0.01)
    assert [c.state for c in expected] == ["drift", "recovered", "drift", "recovered"]
    rng = np.random.default_rng(0)
    for _ in range(3):
        cuts = sorted(rng.choice(np.arange(1, len(stream)), 60, replace=False).tolist())
        state: dict[str, Any] | None = None
        found: list[Change] = []
        for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            stored = None if state is None else json.loads(json.dumps(state))  # as in Redis
            state, changes = advance(stored, values[a:b], ts[a:b], delta=0.01)
            found += changes
        assert found == expected
        assert state == whole


def test_advance_ignores_improvement_and_partial_recovery() -> None:
    # the rate falls while ok: no alert; rises 0.05 -> 0.45, falls only to 0.35: still drifting
    stream = outcomes([0.3, 0.05, 0.45, 0.35], 3000, seed=4)
    state, changes = advance(None, [o.value for o in stream], [o.ts for o in stream], 0.01)
    assert [c.state for c in changes] == ["drift"]
    assert changes[0].ts > T0 + 6000
    assert state["state"] == "drift"
    assert state["before"] < 0.1 < 0.4 < state["rate"]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(
    ("rates", "length", "recovers_after"),
    [
        ([0.1, 0.4, 0.7, 0.1], 4000, 12000),  # worse, then back: one episode
        ([0.1, 0.4, 0.3, 0.1], 4000, 12000),  # a partial improvement does not end it
    ],
)
def test_one_episode_whatever_happens_inside_it(
    rates: list[float], length: int, recovers_after: int, seed: int
) -> None:
    stream = outcomes(rates, length, seed=seed)
    _, changes = advance(None, [o.value for o in stream], [o.ts for o in stream], 0.01, 0.1)
    assert [c.state for c in changes] == ["drift", "recovered"]
    assert T0 + length <= changes[0].ts < T0 + length + 500
    assert T0 + recovers_after <= changes[1].ts < T0 + recovers_after + 500


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_short_burst_recovers_without_a_second_cut(seed: int) -> None:
    # 300 outcomes at 40%: an alarm, and the regime after it bears it out no longer
    stream = [
        *outcomes([0.1, 0.4], 5000, seed=seed)[:5300],
        *outcomes([0.1], 20000, seed=seed + 10),
    ]
    state, changes = advance(None, [o.value for o in stream], list(range(len(stream))), 0.01)
    assert [c.state for c in changes] == ["drift", "recovered"]
    assert changes[1].ts < 6000 and state["state"] == "ok"


def test_advance_is_pure() -> None:
    stream = outcomes([0.1, 0.5], 1500, seed=5)
    state, _ = advance(None, [o.value for o in stream[:1000]], [o.ts for o in stream[:1000]], 0.01)
    frozen = json.dumps(state)
    advance(state, [o.value for o in stream[1000:]], [o.ts for o in stream[1000:]], 0.01)
    assert json.dumps(state) == frozen


# -- the monitor, on Redis ------------------------------------------------------------------


def test_planted_change_raises_one_drift_then_one_recovery(settings: Settings) -> None:
    change, back = 3000, 6000
    stream = outcomes([0.1, 0.4, 0.1], 3000, seed=11)

    async def run() -> list[DriftAlert]:
        r = client(settings)
        try:
            return await feed(ConceptMonitor(settings, r), batches(stream, 250))
        finally:
            await r.aclose()

    alerts = asyncio.run(run())
    assert [a.state for a in alerts] == ["drift", "recovered"]
    drift, recovered = alerts
    assert T0 + change <= drift.epoch < T0 + change + 1000
    assert T0 + back <= recovered.epoch < T0 + back + 1500
    assert (drift.feature, drift.test, drift.severity) == ("error_rate", "adwin", "critical")
    assert drift.statistic > drift.threshold
    assert 0.05 < drift.threshold < 0.15  # the rate before the change
    assert recovered.statistic <= recovered.threshold < 0.4
    assert drift.model == "m" and drift.model_version == "v1" and drift.top_features == []


def test_negative_feedback_is_a_warning(settings: Settings) -> None:
    stream = outcomes([0.2, 0.6], 2000, seed=12, stream="negative")

    async def run() -> list[DriftAlert]:
        r = client(settings)
        try:
            return await feed(ConceptMonitor(settings, r), batches(stream, 500))
        finally:
            await r.aclose()

    alerts = asyncio.run(run())
    assert [(a.state, a.feature, a.severity) for a in alerts] == [
        ("drift", "negative_feedback_rate", "warning")
    ]


def test_no_change_raises_no_alert(settings: Settings) -> None:
    stream = outcomes([0.1], 200_000, seed=13)

    async def run() -> tuple[list[DriftAlert], dict[str, Any] | None]:
        r = client(settings)
        try:
            monitor = ConceptMonitor(settings, r)
            alerts = await feed(monitor, batches(stream, 2000))
            return alerts, await monitor.state("m", "v1", "error")
        finally:
            await r.aclose()

    alerts, state = asyncio.run(run())
    assert alerts == []
    assert state is not None and state["n"] == 200_000 and state["state"] == "ok"


def test_alert_ids_are_deterministic(settings: Settings) -> None:
    stream = outcomes([0.1, 0.5], 2000, seed=14)

    async def run() -> tuple[list[DriftAlert], list[DriftAlert]]:
        r = client(settings)
        try:
            first = await feed(ConceptMonitor(settings, r), batches(stream, 300))
            await r.delete(concept_key(settings.redis_prefix, "m", "v1", "error"))
            again = await feed(ConceptMonitor(settings, r), batches(stream, 700))
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
            monitors = [ConceptMonitor(settings, c) for c in clients]
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
        assert kinds.count("drift") - kinds.count("recovered") == int(state["state"] == "drift")
    assert any(a.feature == "error_rate" for a in alerts)


def test_unknown_stream_is_refused(settings: Settings) -> None:
    async def run() -> None:
        r = client(settings)
        try:
            await ConceptMonitor(settings, r).observe([Outcome("m", "v1", "latency", 1.0, T0)])
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
    parts = batches(stream, 250)

    async def scenario() -> list[list[DriftStatusRow]]:
        r = client(settings)
        seen = []
        try:
            monitor = ConceptMonitor(settings, r, engine, status_seconds=0.0)
            for lo, hi in [(0, 8), (8, 20), (20, len(parts))]:
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
    assert [(r.feature, r.state, r.test) for r in early] == [("error_rate", "ok", "adwin")]
    assert early[0].n_current == 2000 and early[0].since is None
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
    assert [(a.feature, a.state, a.test) for a in alerts] == [("error_rate", "drift", "adwin")], log
    alert = alerts[0]
    # threshold: the rate before the cut; statistic: the mean of the window ADWIN keeps
    assert alert.threshold < 0.1 and alert.statistic > alert.threshold
    # detected after the change, within a few hundred outcomes of it
    assert start + timedelta(seconds=2500 * 0.05) <= alert.ts <= start + timedelta(seconds=160)
    with Session(create_engine_for(s)) as session:
        status = {r.feature: r for r in drift_status(session, "clf")}
    assert status["error_rate"].state == "drift"


# -- the worker's chain of observes (off the write's path) -------------------------------------


def test_chained_observes_run_in_order_and_stop_at_an_error(settings: Settings) -> None:
    """The worker queues each batch's outcomes behind the previous ones: the alerts are
    those of feeding the batches one by one, and an error reaches whoever waits."""
    from govloop.streams.hot_path import InputBatches

    stream = outcomes([0.1, 0.4, 0.1], 3000, seed=11)
    published: list[tuple[str, bytes]] = []

    async def publish(topic: str, key: bytes | None, value: bytes) -> None:
        await asyncio.sleep(0)  # let the next observe be queued meanwhile
        published.append((topic, value))

    async def run() -> tuple[dict[str, Any] | None, bool]:
        r = client(settings)
        batches_ = InputBatches(settings, r, publish)
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
