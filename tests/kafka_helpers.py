"""Test helpers that talk to the real broker and run real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer

from govloop.config import Settings
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
