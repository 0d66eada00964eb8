"""Streaming data drift: calibrated detectors per feature, state in Redis, alerts in SQL.

Real Redis and SQL (the ``settings`` fixture isolates the keys and the
database), and one run through the broker and the worker process.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis
from sqlmodel import Session

from govloop.config import Settings
from govloop.schemas import DriftAlert, Prediction
from govloop.stats.profile import Profile
from govloop.stores.redis import keys
from govloop.stores.sql import create_engine_for, drift_status, init_db, save_reference
from govloop.streams.detectors import FeatureDetectors, Row

pytestmark = pytest.mark.integration

T0 = datetime(2030, 6, 1, tzinfo=UTC).timestamp()
PLANS = ("free", "pro", "team")


def rows(shifts: list[float], length: int, seed: int, tp: str = "p:0", start: int = 0) -> list[Row]:
    """``length`` events per mean shift of ``x`` in turn (``y`` and ``plan`` never move),
    20 per second from ``T0``."""
    rng = np.random.default_rng(seed)
    mean = np.repeat(shifts, length)
    x, y = rng.normal(mean, 1.0), rng.normal(0.0, 1.0, mean.size)
    plan = rng.choice(PLANS, mean.size, p=[0.5, 0.3, 0.2])
    return [
        Row(
            tp, start + i, T0 + (start + i) * 0.05, {"x": float(a), "y": float(b)}, {"plan": str(c)}
        )
        for i, (a, b, c) in enumerate(zip(x, y, plan, strict=True))
    ]


def reference(seed: int, n: int = 2000) -> Profile:
    profile = Profile()
    profile.update_many([(r.numeric, r.categorical) for r in rows([0.0], n, seed)])
    return profile


#: One reference for every test (a sketch of 2,000 values compacts at random: each build
#: differs a little, and so would the detectors calibrated on it).
REFERENCE = reference(99).to_dict()


def prepared(settings: Settings, model: str = "m", version: str = "1") -> Any:
    engine = create_engine_for(settings)
    init_db(engine)
    with Session(engine) as session:
        save_reference(session, model, version, "test", 2000, REFERENCE, datetime.now(UTC))
        session.commit()
    return engine


async def feed(detectors: FeatureDetectors, parts: list[list[Row]]) -> list[DriftAlert]:
    alerts = []
    for part in parts:
        alerts += await detectors.observe({("m", "1"): part})
    return alerts


def batches(items: list[Row], size: int) -> list[list[Row]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def run(settings: Settings, parts: list[list[Row]]) -> tuple[list[DriftAlert], dict[str, Any]]:
    engine = prepared(settings)

    async def go() -> tuple[list[DriftAlert], dict[str, Any]]:
        assert settings.redis_url is not None
        r = aioredis.from_url(settings.redis_url.get_secret_value())
        try:
            alerts = await feed(FeatureDetectors(settings, r, engine), parts)
            raw = await r.get(keys.detect(settings.redis_prefix, "m\x1f1"))
            return alerts, json.loads(raw)
        finally:
            await r.aclose()

    try:
        return asyncio.run(go())
    finally:
        engine.dispose()


def test_a_mean_shift_raises_one_alert_long_before_the_window_ends(settings: Settings) -> None:
    """0.5 sd on ``x`` from event 4800 (a window's start: 60 s, 1200 events): one alert."""
    alerts, state = run(settings, batches(rows([0.0, 0.5], 4800, seed=1), 500))
    assert [(a.feature, a.state) for a in alerts] == [("x", "drift")]
    alert = alerts[0]
    change = T0 + 4800 * 0.05
    assert change <= alert.epoch < change + 20.0  # within 400 events; the window is 60 s
    assert alert.details is not None and alert.details["detector"]["family"] == "mean"
    assert alert.details["detector"]["direction"] == "up"
    assert alert.reference_version == "v1 (test)" and alert.top_features == ["x"]
    assert state["features"]["x"]["watch"]["state"] == "drift"
    assert state["seen"]["n"] == 9600 and state["offsets"] == {"p:0": 9599}


def test_an_unchanged_stream_of_the_same_length_raises_nothing(settings: Settings) -> None:
    alerts, state = run(settings, batches(rows([0.0, 0.0], 4800, seed=2), 500))
    assert alerts == []
    assert {f: d["watch"]["state"] for f, d in state["features"].items()} == {
        "plan": "ok",
        "x": "ok",
        "y": "ok",
    }


def test_recovery_gives_one_recovered_alert(settings: Settings, db_url: str) -> None:
    alerts, state = run(settings, batches(rows([0.0, 1.0, 0.0], 3000, seed=3), 400))
    assert [(a.feature, a.state) for a in alerts] == [("x", "drift"), ("x", "recovered")]
    drift, recovered = alerts
    assert T0 + 3000 * 0.05 <= drift.epoch < T0 + 3300 * 0.05
    assert T0 + 6000 * 0.05 <= recovered.epoch < T0 + 8000 * 0.05
    assert recovered.severity == "info" and recovered.details is not None
    assert recovered.details["detector"]["direction"] == "down"  # the return, watched for
    assert state["features"]["x"]["watch"]["state"] == "ok"
    engine = create_engine_for(settings)
    try:
        with Session(engine) as session:
            status = {r.feature: r for r in drift_status(session, "m")}
    finally:
        engine.dispose()
    assert status["x"].state == "ok" and status["x"].since is None


def test_a_redelivered_batch_does_not_double_alerts(settings: Settings) -> None:
    stream = rows([0.0, 1.0], 3000, seed=4)
    parts = batches(stream, 500)
    # the batch that raised the alert comes again (a crash before the commit), and again
    # mixed with the next one; a second partition's events are applied all the same
    other = rows([1.0], 500, seed=5, tp="p:1")
    redelivered = [*parts[:8], parts[7], parts[7] + parts[8] + other, *parts[9:]]
    once, _ = run(settings, [*parts[:8], parts[8] + other, *parts[9:]])
    twice, state = run(
        settings.model_copy(update={"topic_prefix": settings.topic_prefix + "again."}),
        redelivered,
    )
    assert [(a.feature, a.state) for a in once] == [("x", "drift")]
    assert [(a.feature, a.state, a.epoch) for a in twice] == [
        (a.feature, a.state, a.epoch) for a in once
    ]
    assert state["seen"]["n"] == len(stream) + len(other)
    assert state["offsets"] == {"p:0": len(stream) - 1, "p:1": len(other) - 1}


def test_a_new_reference_ends_an_episode_with_its_reason(settings: Settings) -> None:
    engine = prepared(settings)
    drifted = rows([0.0, 1.5], 1500, seed=6)

    async def go() -> list[DriftAlert]:
        assert settings.redis_url is not None
        r = aioredis.from_url(settings.redis_url.get_secret_value())
        try:
            detectors = FeatureDetectors(settings, r, engine)
            alerts = await feed(detectors, batches(drifted, 500))
            new = Profile()
            new.update_many([(r.numeric, r.categorical) for r in rows([1.5], 2000, seed=7)])
            with Session(engine) as session:
                save_reference(
                    session, "m", "1", "operator", 2000, new.to_dict(), datetime.now(UTC)
                )
                session.commit()
            detectors._references.clear()  # the worker re-reads it within REFERENCE_TTL
            after = rows([1.5], 2000, seed=8, start=len(drifted))
            return alerts + await feed(detectors, batches(after, 500))
        finally:
            await r.aclose()

    try:
        alerts = asyncio.run(go())
    finally:
        engine.dispose()
    assert [(a.feature, a.state) for a in alerts] == [("x", "drift"), ("x", "recovered")]
    assert alerts[1].details == {"reason": "new reference v2 (operator)"}
    assert alerts[1].reference_version == "v2 (operator)"


def test_data_drift_through_the_worker_before_the_window_closes(
    settings: Settings, tmp_path: Path
) -> None:
    """A stored reference, then events through the broker: 0.5 sd on ``x`` from a window's
    start raises one alert dated well inside that window."""
    from tests.kafka_helpers import WorkerProcess, consume, produce

    s = settings.model_copy(
        update={
            "idle_close_seconds": 20.0,
            "window_grace_seconds": 1.0,
            "reference_events": 0,
            "policies": "",
        }
    )
    prepared(s, "clf", "7").dispose()
    stream = rows([0.0, 0.5], 2400, seed=9)
    events = [
        Prediction(
            model="clf",
            model_version="7",
            request_id=f"r{r.offset}",
            ts=datetime.fromtimestamp(r.ts, UTC),
            features={**r.numeric, **r.categorical},
            prediction="yes",
        )
        for r in stream
    ]
    produce(s, "predictions", events)
    with WorkerProcess(s, tmp_path / "worker.log"):
        alerts = [a for a in consume(s, "drift", 3, timeout=60) if isinstance(a, DriftAlert)]
    log = (tmp_path / "worker.log").read_text()[-3000:]
    assert [(a.feature, a.state) for a in alerts] == [("x", "drift")], log
    change = datetime.fromtimestamp(T0 + 2400 * 0.05, UTC)
    assert change <= alerts[0].ts < change + timedelta(seconds=40), log  # the window: 60 s
