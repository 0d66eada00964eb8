"""``govloop state reset``: clear a model's window state in Redis, safely.

After a crash left a window poisoned (or to start a model's counting afresh),
this deletes that model's window counters, drift and concept-drift state,
late count and waiting join outcomes, and nothing else; what exactly is kept
and why is in :mod:`govloop.stores.redis.reset`.  Workers consuming meanwhile
would write into the keys being deleted, so it refuses while the worker group
has members unless ``--force``.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from govloop.cli.output import console, fail, redact_url, shown
from govloop.cli.settings import resolved_settings
from govloop.cli.status import group_members

if TYPE_CHECKING:
    from govloop.config import Settings

__all__ = ["app", "reset"]

app = typer.Typer(help="Window state in Redis.", no_args_is_help=True)


def _running_workers(settings: Settings) -> list[str]:
    """The worker group's members, or a one-line error when the broker cannot say."""
    from aiokafka.errors import KafkaError as AioKafkaError
    from kafka.errors import KafkaError

    if settings.kafka is None:
        fail("no broker configured, so running workers cannot be ruled out: pass --force")
    try:
        return group_members(settings)
    except (KafkaError, AioKafkaError, OSError, TimeoutError) as exc:
        fail(
            f"cannot tell whether workers are running (Kafka at {settings.kafka}: "
            f"{exc.__class__.__name__}): stop them and pass --force"
        )


@app.command("reset")
def reset(
    model: Annotated[str, typer.Option(help="The model whose window state is cleared.")],
    version: Annotated[
        str | None, typer.Option("--version", help="Only this version (default: every one).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before deleting.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Even while workers consume (they may write back).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Clear a model's window state in Redis (open windows, drift state, late count)."""
    import redis

    from govloop.stores.redis.reset import model_state, reset_model

    settings = resolved_settings()
    if settings.redis_url is None:
        fail("no Redis configured: set GOVLOOP_REDIS_URL or run `govloop up`")
    what = shown(model) + (f" {shown(version)}" if version else " (every version)")
    if not force:
        members = _running_workers(settings)
        if members:
            fail(
                f"{len(members)} worker(s) consuming in group {settings.worker_group}: "
                "stop them first (or pass --force)"
            )
    url = settings.redis_url.get_secret_value()
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
    try:
        found = model_state(client, settings.redis_prefix, model, version).counts()
        if not found:
            _report(as_json, model, version, {}, f"no window state of {what} in Redis")
            return
        if not yes:
            if not sys.stdin.isatty():
                fail("state reset asks before deleting: pass --yes when not at a terminal")
            console.print(f"would delete, for {what}: {_counts(found)}", soft_wrap=True)
            if not typer.confirm("delete?"):
                fail("nothing deleted", code=1)
        removed = reset_model(client, settings.redis_prefix, model, version)
    except (redis.RedisError, OSError) as exc:
        fail(f"Redis at {redact_url(url)}: {exc.__class__.__name__}: {exc}")
    finally:
        client.close()
    _report(as_json, model, version, removed, f"cleared the window state of {what}")


def _counts(found: dict[str, int]) -> str:
    return ", ".join(f"{n} {family.rstrip(':')}" for family, n in sorted(found.items()))


def _report(
    as_json: bool, model: str, version: str | None, removed: dict[str, int], text: str
) -> None:
    if as_json:
        print(json.dumps({"model": model, "model_version": version, "removed": removed}))
    elif removed:
        console.print(f"{text}: {_counts(removed)}", soft_wrap=True)
    else:
        console.print(text, soft_wrap=True)
