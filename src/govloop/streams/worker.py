"""Run one stream worker process: ``run_worker(settings)`` blocks until a signal."""

from __future__ import annotations

import faust
import redis
from sqlalchemy.exc import SQLAlchemyError

from govloop.config import Settings
from govloop.errors import RuntimeUnavailable
from govloop.redact import redact_url, scrub, secrets_in
from govloop.runtime import wait_for_broker
from govloop.stores.sql import create_engine_for, init_db
from govloop.streams.app import create_app

__all__ = ["check_services", "run_worker"]


def check_services(settings: Settings) -> None:
    """Fail fast, with the address, when Kafka, Redis or the database does not answer."""
    wait_for_broker(settings.kafka or "", timeout=15.0)
    url = settings.redis_url.get_secret_value() if settings.redis_url else ""
    try:
        redis.Redis.from_url(url, socket_connect_timeout=5).ping()
    except (redis.RedisError, ValueError) as exc:
        raise RuntimeUnavailable(f"Redis at {redact_url(url)} did not answer: {exc}") from exc
    try:
        init_db(create_engine_for(settings))
    except SQLAlchemyError as exc:
        db = settings.database_url
        cause = getattr(exc, "orig", None) or exc
        reason = scrub(redact_url(str(cause).splitlines()[0]), secrets_in(db))
        raise RuntimeUnavailable(f"database {redact_url(db)}: {reason}") from exc


def run_worker(settings: Settings) -> None:
    """Run the faust worker for ``settings`` until SIGINT/SIGTERM; exit non-zero on a crash."""
    check_services(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
