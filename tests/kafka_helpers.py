"""Test helpers that talk to the real broker and run real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from pydantic import SecretStr

from govloop.config import Settings
from govloop.runtime import ensure_topics
from govloop.schemas import Event, decode, topic_of


def produce(settings: Settings, topic: str, messages: Iterable[Event | bytes]) -> int:
    """Send events (keyed as the registry says) or raw bytes to a short-named topic."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka, acks="all", linger_ms=5)
    n = 0
    for m in messages:
        if isinstance(m, Event):
            producer.send(settings.topic(topic), key=topic_of(type(m)).key(m), value=m.to_json())
        else:
            producer.send(settings.topic(topic), value=m)
        n += 1
    producer.flush()
    producer.close()
    return n


def consume(settings: Settings, topic: str, want: int, timeout: float = 60.0) -> list[Event]:
    """Read ``want`` events from the start of a short-named topic, or what came by ``timeout``."""
    consumer = KafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.kafka,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    out: list[Event] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < want and time.monotonic() < deadline:
            for message in consumer:
                out.append(decode(topic, message.value))
                if len(out) >= want:
                    break
    finally:
        consumer.close()
    return out


class WorkerProcess:
    """``python -m govloop worker`` with the test's settings, in its own process."""

    def __init__(self, settings: Settings, log: Path, **overrides: str) -> None:
        self.env = os.environ | settings.as_env() | overrides
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with open(self.log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "govloop", "worker"], env=self.env, stdout=out, stderr=out
            )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def consume_raw(settings: Settings, topic: str, want: int, timeout: float = 60.0) -> list[Any]:
    """Like :func:`consume`, but the undecoded records (topic, partition, offset, key, value)."""
    consumer = KafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.kafka,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < want and time.monotonic() < deadline:
            for message in consumer:
                out.append(message)
                if len(out) >= want:
                    break
    finally:
        consumer.close()
    return out


def wait_until(condition: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it is truthy (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def produce_located(
    settings: Settings,
    topic: str,
    messages: Iterable[Event | bytes | None],
    partition: int | None = None,
) -> list[tuple[int, int]]:
    """Like :func:`produce`, but return each message's (partition, offset).

    ``None`` sends a tombstone; ``partition`` sends everything to that partition.
    """
    producer = KafkaProducer(bootstrap_servers=settings.kafka, acks="all", linger_ms=5)
    name = settings.topic(topic)
    futures = []
    for m in messages:
        if isinstance(m, Event):
            key, value = topic_of(type(m)).key(m), m.to_json()
        else:
            key, value = (b"tombstone" if m is None else None), m  # a record needs one of them
        futures.append(producer.send(name, key=key, value=value, partition=partition))
    producer.flush()
    located = []
    for f in futures:
        meta = f.get(timeout=30)
        located.append((meta.partition, meta.offset))
    producer.close()
    return located


class TopicTail:
    """Reads a short-named topic from its start, keeping every decoded event it has seen.

    ``wait_for(condition)`` polls until ``condition(events)`` holds, so a test can wait for
    exactly what it expects instead of for a count that something else may also fill.
    """

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.events: list[Event] = []
        self.records: list[Any] = []
        self.consumer = KafkaConsumer(
            settings.topic(topic),
            bootstrap_servers=settings.kafka,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )

    def poll(self, timeout_ms: int = 200) -> list[Event]:
        new: list[Event] = []
        for records in self.consumer.poll(timeout_ms=timeout_ms).values():
            for r in records:
                self.records.append(r)
                new.append(decode(self.topic, r.value))
        self.events.extend(new)
        return new

    def wait_for(self, condition: Callable[[list[Event]], object], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition(self.events):
            if time.monotonic() >= deadline:
                return False
            self.poll()
        return True

    def drain(self, seconds: float) -> None:
        """Keep reading for ``seconds`` more (to catch duplicates that come late)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.poll()

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> TopicTail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def module_deployment(bootstrap: str, redis_url: str, home: Path, **overrides: Any) -> Settings:
    """An isolated deployment that every example of a test module shares (one worker for all):
    its own topics (created), SQLite file and Redis keys; short idle close and grace."""
    s = Settings(
        kafka=bootstrap,
        redis_url=SecretStr(redis_url),
        db_url=SecretStr(f"sqlite:///{home / 'govloop.db'}"),
        home=home / ".govloop",
        topic_prefix=f"t{uuid.uuid4().hex[:12]}.",
        partitions=2,
        session_timeout_seconds=6.0,
        idle_close_seconds=2.0,
        window_grace_seconds=1.0,
        policies="",
        **overrides,
    )
    ensure_topics(s)
    return s


@dataclass
class Running:
    """A worker process and its log."""

    worker: WorkerProcess
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextmanager
def running_worker(settings: Settings) -> Iterator[Running]:
    """A worker for ``settings``, logging beside its home, stopped on exit."""
    log = Path(settings.home).parent / "worker.log"
    w = WorkerProcess(settings, log).start()
    try:
        yield Running(w, log)
    finally:
        w.stop()
