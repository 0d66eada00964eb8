"""Faults injected against the real services while a real worker runs: the counts stay exact.

Each test streams live traffic (``tests/test_recovery.py``'s: predictions with
their feedback, 4 windows) through a worker process and injects one fault
mid-stream: the worker stalled past the idle close, its Redis state wiped,
its Redis connections killed, a new empty broker under old Redis state.  Every
window's snapshot must then hold exactly the events of that window, and none
may be counted late.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from govloop.config import Settings
from govloop.runtime import EmbeddedBroker, ensure_topics, wait_for_broker
from govloop.stores.redis.windows import clear_state
from tests.kafka_helpers import TopicTail, WorkerProcess, wait_until
from tests.test_recovery import (
    WINDOW,
    Counts,
    Traffic,
    applied_offsets,
    end_of_stream,
    log_tail,
    produce_live,
    recovery_settings,
    snapshots,
    traffic,
)

pytestmark = pytest.mark.integration

SIZES = [1200, 1500, 1500, 1000]


@pytest.fixture
def rds(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


def halves(t: Traffic) -> tuple[Traffic, Traffic]:
    """The traffic's first and second half, each prediction with its feedback."""
    half = len(t.predictions) // 2
    return (
        Traffic(t.predictions[:half], t.feedback, {}),
        Traffic(t.predictions[half:], t.feedback, {}),
    )


def applied(rds: redis.Redis, s: Settings) -> int:
    return sum(o + 1 for o in applied_offsets(rds, s).values())


def finish(
    s: Settings, t: Traffic, start: datetime, model: str, metrics: TopicTail, *logs: Path
) -> dict[datetime, Counts]:
    """Send the end-of-stream events, wait for every window's snapshot, return their counts."""
    end_of_stream(s, start + timedelta(seconds=WINDOW * len(SIZES)))
    ok = metrics.wait_for(lambda _: len(snapshots(metrics, model)) >= len(t.expected), 120)
    assert ok, (sorted(snapshots(metrics, model)), log_tail(*logs))
    metrics.drain(1.0)
    return {w: Counts.of(snap) for w, snap in snapshots(metrics, model).items()}


def test_a_stalled_worker_closes_no_window_early(
    settings: Settings, tmp_path: Path, rds: redis.Redis
) -> None:
    # idle close 3 s: under the wall-clock rule a stall of 8 s closed every open window
    s = recovery_settings(settings).model_copy(update={"idle_close_seconds": 3.0})
    start = datetime(2030, 9, 1, tzinfo=UTC)
    t = traffic("stall", start, SIZES)
    first, second = halves(t)
    log = tmp_path / "worker.log"
    with TopicTail(s, "metrics") as metrics, WorkerProcess(s, log) as worker:
        assert worker.proc is not None
        produce_live(s, first)
        assert wait_until(lambda: applied(rds, s) >= len(first.predictions), 60), log_tail(log)
        os.kill(worker.proc.pid, signal.SIGSTOP)
        try:
            produce_live(s, second)  # a backlog builds up while the worker is stalled
            time.sleep(8)
        finally:
            os.kill(worker.proc.pid, signal.SIGCONT)
        got = finish(s, t, start, "stall", metrics, log)
        assert worker.proc.poll() is None, log_tail(log)
    assert got == t.expected
    assert not rds.hgetall(f"{s.redis_prefix}late")


def test_window_state_wiped_mid_stream_is_rebuilt_from_kafka(
    settings: Settings, tmp_path: Path, rds: redis.Redis, redis_url: str
) -> None:
    s = recovery_settings(settings)
    start = datetime(2030, 9, 2, tzinfo=UTC)
    t = traffic("wiped", start, SIZES)
    first, second = halves(t)
    log = tmp_path / "worker.log"
    with TopicTail(s, "metrics") as metrics, WorkerProcess(s, log) as worker:
        produce_live(s, first)
        assert wait_until(lambda: applied(rds, s) >= len(first.predictions), 60), log_tail(log)
        assert clear_state(redis_url, s.redis_prefix) > 0  # FLUSHALL, for this deployment
        produce_live(s, second)
        got = finish(s, t, start, "wiped", metrics, log)
        assert worker.proc is not None and worker.proc.poll() is None, log_tail(log)
    assert got == t.expected
    assert "window state lost" in log.read_text()
    assert not rds.hgetall(f"{s.redis_prefix}late")


def test_window_state_lost_while_the_worker_was_down_is_rebuilt(
    settings: Settings, tmp_path: Path, rds: redis.Redis, redis_url: str
) -> None:
    s = recovery_settings(settings)
    start = datetime(2030, 9, 3, tzinfo=UTC)
    t = traffic("restart", start, SIZES)
    first, second = halves(t)
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    with TopicTail(s, "metrics") as metrics:
        with WorkerProcess(s, logs[0]):
            produce_live(s, first)
            assert wait_until(lambda: applied(rds, s) >= len(first.predictions), 60)
        # Redis restarted without persistence while no worker ran
        assert clear_state(redis_url, s.redis_prefix) > 0
        with WorkerProcess(s, logs[1]):
            produce_live(s, second)
            got = finish(s, t, start, "restart", metrics, *logs)
    assert got == t.expected
    assert "window state lost" in logs[1].read_text()


def test_redis_connections_killed_mid_stream_are_retried(
    settings: Settings, tmp_path: Path, rds: redis.Redis
) -> None:
    s = recovery_settings(settings)
    start = datetime(2030, 9, 4, tzinfo=UTC)
    t = traffic("killed", start, SIZES)
    first, second = halves(t)
    log = tmp_path / "worker.log"
    name = f"govloop-worker:{s.topic_prefix.rstrip('.')}-worker"
    with TopicTail(s, "metrics") as metrics, WorkerProcess(s, log) as worker:
        produce_live(s, first)
        assert wait_until(lambda: applied(rds, s) >= len(first.predictions), 60), log_tail(log)
        ours = [c["id"] for c in rds.client_list() if c.get("name") == name]
        assert ours, rds.client_list()
        for client_id in ours:
            rds.client_kill_filter(_id=client_id)
        produce_live(s, second)
        got = finish(s, t, start, "killed", metrics, log)
        assert worker.proc is not None and worker.proc.poll() is None, log_tail(log)
    assert got == t.expected


def test_a_new_empty_broker_under_old_redis_state_is_counted_not_skipped(
    settings: Settings, tmp_path: Path, rds: redis.Redis
) -> None:
    s = recovery_settings(settings)
    start = datetime(2030, 9, 5, tzinfo=UTC)
    before = traffic("old-broker", start, [3000])
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    with WorkerProcess(s, logs[0]):
        produce_live(s, before)
        assert wait_until(lambda: applied(rds, s) >= len(before.predictions), 60)
    # the broker is replaced by an empty one; Redis keeps the old broker's offsets
    with EmbeddedBroker() as fresh:
        wait_for_broker(fresh.bootstrap)
        s2 = s.model_copy(update={"kafka": fresh.bootstrap})
        ensure_topics(s2)
        t = traffic("new-broker", start + timedelta(hours=2), SIZES[:2])
        with TopicTail(s2, "metrics") as metrics, WorkerProcess(s2, logs[1]):
            produce_live(s2, t)
            end_of_stream(s2, start + timedelta(hours=2, seconds=WINDOW * 2))
            ok = metrics.wait_for(lambda _: len(snapshots(metrics, "new-broker")) >= 2, 120)
            assert ok, log_tail(*logs)
            metrics.drain(1.0)
            got = {w: Counts.of(x) for w, x in snapshots(metrics, "new-broker").items()}
    assert got == t.expected, (rds.hgetall(f"{s.redis_prefix}late"), log_tail(*logs))
    assert "another broker" in logs[1].read_text()
