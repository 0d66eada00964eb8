"""`govloop up` keeps its workers running and watches its services.

The back-off is checked with real exiting processes and a clock the test
moves, so no assertion depends on how fast the machine is; the end-to-end
tests run ``govloop up`` as a real process against the session's broker and
Redis, SIGKILL its worker, and check every event is still counted once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from govloop.client import Govloop
from govloop.config import Settings
from govloop.errors import RuntimeUnavailable
from govloop.runtime import EmbeddedBroker, LocalRedis, LocalStack, Supervisor, free_port
from govloop.runtime.supervisor import WorkerGaveUp
from govloop.schemas import Event
from tests.kafka_helpers import TopicTail, wait_until
from tests.test_recovery import (
    WINDOW,
    Counts,
    Traffic,
    applied_offsets,
    end_of_stream,
    recovery_settings,
    snapshots,
    traffic,
)

# --- the supervisor, with a clock the test moves -----------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def exits_with(code: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
    proc.wait()
    return proc


def test_a_worker_that_exits_is_restarted_with_doubling_delays() -> None:
    clock, lines, spawned, changes = Clock(), [], [], []

    def spawn(number: int) -> subprocess.Popen[bytes]:
        spawned.append(number)
        return exits_with(3)

    sup = Supervisor(spawn, 2, lines.append, on_change=changes.append, clock=clock)
    sup.start()
    assert spawned == [1, 2] and changes == [sup.pids()]
    sup.poll()
    assert lines == [
        "worker 1 exited with code 3; restarting in 1 s (restart 1)",
        "worker 2 exited with code 3; restarting in 1 s (restart 1)",
    ]
    clock.now += 0.9
    sup.poll()
    assert spawned == [1, 2]  # not yet due
    clock.now += 0.1
    sup.poll()
    assert spawned == [1, 2, 1, 2] and len(changes) == 3
    sup.poll()
    assert lines[2:] == [
        "worker 1 exited with code 3; restarting in 2 s (restart 2)",
        "worker 2 exited with code 3; restarting in 2 s (restart 2)",
    ]
    clock.now += 2
    sup.poll()
    sup.poll()
    assert lines[-1] == "worker 2 exited with code 3; restarting in 4 s (restart 3)"


def test_the_delay_starts_over_after_a_stable_run() -> None:
    clock, lines = Clock(), []
    sup = Supervisor(lambda n: exits_with(1), 1, lines.append, clock=clock)
    sup.start()
    for _ in range(3):
        sup.poll()  # notices the exit
        clock.now += 60
        sup.poll()  # restarts
    assert lines[-1] == "worker 1 exited with code 1; restarting in 4 s (restart 3)"
    clock.now += 600  # this run lasted long enough to count as stable
    sup.poll()
    assert lines[-1] == "worker 1 exited with code 1; restarting in 1 s (restart 4)"


def test_a_configuration_error_is_not_retried() -> None:
    sup = Supervisor(lambda n: exits_with(2), 1, print, clock=Clock())
    sup.start()
    with pytest.raises(WorkerGaveUp, match="worker 1 exited with code 2"):
        sup.poll()


# --- watching the services ---------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GOVLOOP_"):
            monkeypatch.delenv(name)


@pytest.mark.integration
@pytest.mark.usefixtures("clean_env")
def test_a_dead_embedded_broker_stops_the_stack(redis_url: str, tmp_path: Path) -> None:
    s = Settings(
        home=tmp_path / "h",
        redis_url=SecretStr(redis_url),
        db_url=SecretStr(f"sqlite:///{tmp_path / 'db.sqlite'}"),
        topic_prefix=f"t{uuid.uuid4().hex[:12]}.",
        partitions=1,
    )
    stack = LocalStack(s, write_runtime_file=False)
    lines: list[str] = []
    try:
        stack.start()
        stack.check(lines.append)
        assert lines == []
        assert stack.broker is not None and stack.broker._process is not None
        stack.broker._process.send_signal(signal.SIGKILL)
        stack.broker._process.wait()
        with pytest.raises(RuntimeUnavailable, match="embedded broker exited with code -9"):
            stack.check(lines.append)
    finally:
        stack.stop()


@pytest.mark.integration
@pytest.mark.usefixtures("clean_env")
def test_a_dead_embedded_redis_is_restarted_with_its_state(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    s = Settings(home=tmp_path / "h", kafka=broker.bootstrap, partitions=1)
    stack = LocalStack(s, write_runtime_file=False)
    # what `start` does when nothing answers on 127.0.0.1:6379 (here something may)
    stack.redis = LocalRedis(port=free_port(), data_dir=tmp_path / "redis").start()
    lines: list[str] = []
    try:
        assert stack.redis.embedded
        client = redis.Redis.from_url(stack.redis.url)
        client.set("window", "open")
        port, pid = stack.redis.port, stack.redis.pid
        assert pid is not None
        stack.check(lines.append)
        assert lines == []
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: stack.redis is not None and stack.redis.exit_code is not None, 10)
        stack.check(lines.append)
        assert lines == [
            f"the embedded Redis on port {port} exited with code -9; restarting it from its AOF",
            f"the embedded Redis on port {port} is back",
        ]
        assert stack.redis.port == port and stack.redis.pid != pid
        assert client.get("window") == b"open"
        client.close()
    finally:
        stack.stop()


@pytest.mark.integration
@pytest.mark.usefixtures("clean_env")
def test_a_configured_service_that_stops_answering_is_reported(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    s = Settings(
        home=tmp_path / "h",
        kafka=broker.bootstrap,
        redis_url=SecretStr(f"redis://:hunter2@127.0.0.1:{free_port()}/0"),  # nothing there
        db_url=SecretStr(f"sqlite:///{tmp_path / 'db.sqlite'}"),
        topic_prefix=f"t{uuid.uuid4().hex[:12]}.",
        partitions=1,
    )
    lines: list[str] = []
    stack = LocalStack(s, write_runtime_file=False)  # no `prepare`: Redis is not needed to start
    with stack:
        stack.check(lines.append)
        stack.check(lines.append)  # said once, not on every look
    assert len(lines) == 1, lines
    assert lines[0].startswith("Redis at redis://:***@127.0.0.1:")
    assert lines[0].endswith("does not answer; the workers will retry")


# --- govloop up, end to end --------------------------------------------------------------------


class Up:
    """``govloop up`` in its own process, its output in a file."""

    def __init__(self, settings: Settings, home: Path, log: Path, *args: str) -> None:
        self.home, self.log = home, log
        env = os.environ | settings.as_env() | {"GOVLOOP_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "govloop", "up", *args],
                env=env,
                stdout=out,
                stderr=out,
                start_new_session=True,  # a group of its own: the test can kill all of it
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def runtime(self) -> dict[str, object]:
        try:
            found: dict[str, object] = json.loads((self.home / "runtime.json").read_text())
        except (OSError, ValueError):
            return {}
        return found

    def workers(self) -> list[int]:
        pids = self.runtime().get("workers") or []
        assert isinstance(pids, list)
        return [int(p) for p in pids]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def rds(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


def in_process_group(pgid: int, pid: int) -> bool:
    try:
        return os.getpgid(pid) == pgid
    except ProcessLookupError:
        return False


def emit_live(client: Govloop, t: Traffic, chunk: int = 250) -> None:
    """Predictions and their feedback advance together, as from a live service."""
    feedback = {f.request_id: f for f in t.feedback}
    for i in range(0, len(t.predictions), chunk):
        events: list[Event] = []
        for p in t.predictions[i : i + chunk]:
            events.append(p)
            if p.request_id in feedback:
                events.append(feedback[p.request_id])
        for e in events:
            client.emit(e)
        assert client.flush(timeout=60)


@pytest.mark.integration
def test_up_restarts_a_killed_worker_and_counts_every_event_once(
    settings: Settings, tmp_path: Path, rds: redis.Redis
) -> None:
    s = recovery_settings(settings)
    start = datetime(2030, 8, 1, tzinfo=UTC)
    t = traffic("supervised", start, [1500, 1500, 1500])
    cut = 1500  # the first window's predictions go before the kill, the rest after
    before = Traffic(
        t.predictions[:cut], [f for f in t.feedback if f.ts < start + timedelta(seconds=WINDOW)], {}
    )
    after = Traffic(t.predictions[cut:], t.feedback[len(before.feedback) :], {})
    up = Up(s, tmp_path / "home", tmp_path / "up.log")
    client = Govloop(s)
    try:
        assert wait_until(lambda: len(up.workers()) == 1, 60), up.output()
        [first] = up.workers()
        emit_live(client, before)
        sent = len(before.predictions) + len(before.feedback)
        assert wait_until(
            lambda: sum(o + 1 for o in applied_offsets(rds, s).values()) >= sent, 90
        ), up.output()

        os.kill(first, signal.SIGKILL)
        restarted = "worker 1 exited with code -9; restarting in 1 s (restart 1)"
        assert wait_until(lambda: restarted in up.output(), 30), up.output()
        assert wait_until(lambda: up.workers() not in ([], [first]), 30), up.output()
        [second] = up.workers()
        assert in_process_group(up.proc.pid, second)  # a child of `up`, not a stray process

        with TopicTail(s, "metrics") as metrics:
            emit_live(client, after)
            last = end_of_stream(s, start + timedelta(seconds=WINDOW * 3))
            done = metrics.wait_for(
                lambda _: len(snapshots(metrics, "supervised")) == len(t.expected), 120
            )
            assert done, (snapshots(metrics, "supervised").keys(), up.output())
            assert applied_offsets(rds, s) == last
            metrics.drain(1.0)
            got = {w: Counts.of(snap) for w, snap in snapshots(metrics, "supervised").items()}
        assert got == t.expected
        assert up.proc.poll() is None  # `up` itself never stopped
    finally:
        client.close()
        code = up.stop()
    assert code == 0, up.output()
    assert "stopped cleanly" in up.output()
    assert not (tmp_path / "home" / "runtime.json").exists()


@pytest.mark.integration
def test_a_second_up_in_the_same_home_refuses_and_leaves_the_first_alone(
    settings: Settings, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    first = Up(settings, home, tmp_path / "first.log")
    try:
        assert wait_until(lambda: len(first.workers()) == 1, 60), first.output()
        runtime = (home / "runtime.json").read_bytes()
        second = Up(settings, home, tmp_path / "second.log")
        assert second.proc.wait(60) == 2
        lines = second.output().strip().splitlines()
        assert lines == [
            f"error: govloop up is already running in {home} (pid {first.proc.pid}); "
            "stop it first or use another GOVLOOP_HOME"
        ]
        assert (home / "runtime.json").read_bytes() == runtime  # neither rewritten nor removed
        assert first.proc.poll() is None
    finally:
        code = first.stop()
    assert code == 0, first.output()
    assert not (home / "runtime.json").exists()
