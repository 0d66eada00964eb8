"""``govloop up``, ``govloop worker`` and ``govloop topics``: running the loop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from govloop.cli.output import console, fail
from govloop.cli.settings import environment_settings, resolved_settings
from govloop.config import Settings
from govloop.errors import GovloopError, RuntimeUnavailable
from govloop.redact import redact_url, scrub, secrets_in
from govloop.runtime.supervisor import stop_processes

if TYPE_CHECKING:
    from govloop.gates import Policy

__all__ = ["prepare_stores", "spawn_worker", "stop_processes", "topics_app"]

topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)


def prepare_stores(settings: Settings, fresh_broker: bool) -> None:
    """Make the stores ready for a running stack: the SQL tables, and Redis for a new broker.

    A new embedded broker starts empty, so state kept in Redis about an
    earlier broker's topics (applied offsets above all) would skip new events:
    it is cleared.  A Redis or database that cannot be reached is a
    :class:`~govloop.errors.RuntimeUnavailable` naming it, redacted.
    """
    from redis import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    from govloop.stores.redis.windows import clear_state
    from govloop.stores.sql import create_engine_for, init_db

    if fresh_broker and settings.redis_url is not None:
        url = settings.redis_url.get_secret_value()
        try:
            clear_state(url, settings.redis_prefix)
        except RedisError as exc:
            raise RuntimeUnavailable(f"Redis at {redact_url(url)}: {exc}") from exc
    try:
        engine = create_engine_for(settings)
        try:
            init_db(engine)
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        reason = first_line(str(exc)) or type(exc).__name__
        raise RuntimeUnavailable(f"database {redact_url(settings.database_url)}: {reason}") from exc


def secrets_of(settings: Settings) -> list[str]:
    """The secret values in the settings' service URLs, to mask wherever a message quotes them."""
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else ""
    urls = [settings.kafka or "", redis_url, settings.database_url]
    return [secret for url in urls for secret in secrets_in(url)]


def spawn_worker(settings: Settings, number: int) -> subprocess.Popen[bytes]:
    """Start worker ``number`` (1-based) of the consumer group of ``settings``."""
    env = os.environ | settings.as_env()
    if settings.worker_web_port is not None:
        env["GOVLOOP_WORKER_WEB_PORT"] = str(settings.worker_web_port + number - 1)
    return subprocess.Popen([sys.executable, "-m", "govloop", "worker"], env=env)


def say(line: str) -> None:
    """One operator line from ``up`` (never read as markup)."""
    console.print(escape(line), soft_wrap=True)


def print_banner(settings: Settings, info: dict[str, str], workers: int) -> None:
    """Where each service is, secrets redacted (``LocalStack.describe`` redacts them)."""
    from rich.table import Table

    table = Table("service", "where", "source", title="govloop is up")
    table.add_row("Kafka", escape(info["kafka"]), info["kafka_source"])
    table.add_row("Redis", escape(info["redis_url"]), info["redis_source"])
    table.add_row("SQL", escape(info["db_url"]), "configured" if settings.db_url else "SQLite")
    table.add_row("workers", str(workers), f"consumer group {settings.worker_group}")
    console.print(table)
    console.print(escape(f"export GOVLOOP_KAFKA={info['kafka']}"), soft_wrap=True)
    console.print("[dim]Ctrl-C to stop.[/]")


#: Seconds between two looks at the services while ``up`` runs.
CHECK_SECONDS = 2.0


def up(
    workers: Annotated[int, typer.Option(min=1, help="Stream worker processes to run.")] = 1,
) -> None:
    """Start the loop: embedded services for what is not configured, topics, workers.

    Workers that exit are restarted with back-off; a dead embedded Redis is
    restarted, a dead embedded broker stops everything.  Runs until Ctrl-C or
    SIGTERM, then shuts everything down.
    """
    from govloop.runtime import AlreadyRunning, LocalStack, Supervisor

    stack = LocalStack(environment_settings(), prepare=prepare_stores)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    supervisor: Supervisor | None = None
    try:
        with console.status("starting broker, Redis and database..."):
            settings = stack.start()
        print_banner(settings, stack.describe(), workers)
        supervisor = Supervisor(
            lambda n: spawn_worker(settings, n), workers, say, on_change=stack.write_runtime
        )
        supervisor.start()
        next_check = time.monotonic() + CHECK_SECONDS
        while not stopping:
            supervisor.poll()
            if time.monotonic() >= next_check:
                stack.check(say)
                next_check = time.monotonic() + CHECK_SECONDS
            time.sleep(0.2)
        console.print("stopping...")
    except AlreadyRunning as exc:
        fail(str(exc))
    except GovloopError as exc:
        fail(scrub(str(exc), secrets_of(stack.requested)))
    finally:
        if supervisor is not None:
            supervisor.stop()
        stack.stop()
    console.print("[green]stopped cleanly[/]")


def print_connections(settings: Settings, policies: list[Policy]) -> None:
    """The worker's start-up lines: what it connects to (redacted) and the policies it runs."""
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else ""
    say(
        f"worker: broker {redact_url(settings.kafka or '')}, Redis {redact_url(redis_url)}, "
        f"database {redact_url(settings.database_url)}"
    )
    if not policies:
        say("worker: no gate policies loaded (GOVLOOP_POLICIES is empty)")
    for policy in policies:
        say(f"worker: policy {policy.name} ({policy.content_hash[:12]})")


def worker() -> None:
    """Run one stream worker against the configured (or discovered) services."""
    from govloop.gates import load_policies
    from govloop.streams.worker import run_worker

    settings = resolved_settings()
    if settings.kafka is None or settings.redis_url is None:
        fail(
            "no broker or Redis configured: set GOVLOOP_KAFKA and GOVLOOP_REDIS_URL, "
            "or run `govloop up`"
        )
    secrets = secrets_of(settings)
    try:
        print_connections(settings, load_policies(settings.policies))
    except GovloopError as exc:
        fail(scrub(str(exc), secrets))
    try:
        run_worker(settings)
    except GovloopError as exc:
        fail(first_line(scrub(str(exc), secrets)))


def first_line(message: str) -> str:
    """The first line of a driver's message (they add hints and links on the next ones)."""
    return next((line.strip() for line in message.splitlines() if line.strip()), message)


@topics_app.command("create")
def topics_create() -> None:
    """Create every govloop topic that does not exist (GOVLOOP_PARTITIONS partitions)."""
    from govloop.runtime import ensure_topics

    settings = resolved_settings()
    if settings.kafka is None:
        fail("no broker configured: set GOVLOOP_KAFKA or run `govloop up`")
    try:
        created = ensure_topics(settings)
    except GovloopError as exc:
        fail(first_line(scrub(str(exc), secrets_of(settings))))
    console.print(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else ""))
