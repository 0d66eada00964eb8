"""``govloop up``, ``govloop worker`` and ``govloop topics``: running the loop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Annotated

import typer

from govloop.cli.output import console, fail
from govloop.cli.settings import environment_settings, resolved_settings
from govloop.config import Settings
from govloop.errors import GovloopError

topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)


def prepare_stores(settings: Settings, fresh_broker: bool) -> None:
    """Make the stores ready for a running stack: the SQL tables, and Redis for a new broker.

    A new embedded broker starts empty, so state kept in Redis about an
    earlier broker's topics (applied offsets above all) would skip new events:
    it is cleared.
    """
    from govloop.stores.redis.windows import clear_state
    from govloop.stores.sql import create_engine_for, init_db

    if fresh_broker and settings.redis_url is not None:
        clear_state(settings.redis_url.get_secret_value(), settings.redis_prefix)
    init_db(create_engine_for(settings))


def spawn_workers(settings: Settings, count: int) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` worker processes in one consumer group."""
    env = os.environ | settings.as_env()
    procs = []
    for i in range(count):
        worker_env = dict(env)
        if settings.worker_web_port is not None:
            worker_env["GOVLOOP_WORKER_WEB_PORT"] = str(settings.worker_web_port + i)
        procs.append(subprocess.Popen([sys.executable, "-m", "govloop", "worker"], env=worker_env))
    return procs


def stop_processes(procs: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def up(
    workers: Annotated[int, typer.Option(help="Stream worker processes to run.")] = 1,
) -> None:
    """Start the loop: embedded services for what is not configured, topics, workers.

    Runs until Ctrl-C or SIGTERM, then shuts everything down.
    """
    from rich.table import Table

    from govloop.runtime import LocalStack

    stack = LocalStack(environment_settings(), prepare=prepare_stores)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with console.status("starting broker, Redis and database..."):
            settings = stack.start()
        table = Table("service", "where", "source", title="govloop is up")
        info = stack.describe()
        table.add_row("Kafka", info["kafka"], info["kafka_source"])
        table.add_row("Redis", info["redis_url"], info["redis_source"])
        table.add_row("SQL", info["db_url"], "configured" if settings.db_url else "SQLite")
        table.add_row("workers", str(workers), f"consumer group {settings.topic_prefix}worker")
        console.print(table)
        console.print(f"export GOVLOOP_KAFKA={settings.kafka}")
        console.print("[dim]Ctrl-C to stop.[/]")
        procs = spawn_workers(settings, workers)
        while not stopping:
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                fail(f"a worker exited with code {dead[0].returncode}", code=1)
            time.sleep(0.3)
        console.print("stopping...")
    except GovloopError as exc:
        fail(str(exc), code=1)
    finally:
        stop_processes(procs)
        stack.stop()
    console.print("[green]stopped cleanly[/]")


def worker() -> None:
    """Run one stream worker against the configured (or discovered) services."""
    from govloop.streams.worker import run_worker

    settings = resolved_settings()
    if settings.kafka is None or settings.redis_url is None:
        fail(
            "no broker or Redis configured: set GOVLOOP_KAFKA and GOVLOOP_REDIS_URL, "
            "or run `govloop up`"
        )
    try:
        run_worker(settings)
    except GovloopError as exc:
        fail(str(exc), code=1)


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
        fail(str(exc), code=1)
    console.print(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else ""))
