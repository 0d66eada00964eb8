"""The worker's Redis client: a connection error is retried with back-off, never fatal.

Redis restarting, failing over or briefly unreachable makes every command
wait and try again (exponential back-off with jitter, capped at
``RETRY_CAP`` seconds, forever), with a WARNING per retry, instead of
crashing the worker.  Retrying is safe: a batch's script skips the offsets it
has applied, and a window claim is re-read until acknowledged.  Whether Redis
came back *with* its data is another question (:mod:`govloop.streams.state`).
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError, TimeoutError

__all__ = ["RETRY_CAP", "connect"]

log = logging.getLogger("govloop.stores")

#: Longest wait between two attempts (seconds).
RETRY_CAP = 10.0


class _LoggedBackoff(ExponentialWithJitterBackoff):
    """redis-py's back-off, saying each time that Redis does not answer."""

    def compute(self, failures: int) -> float:
        delay = float(super().compute(failures))
        log.warning("Redis does not answer (attempt %d); retrying in %.1f s", failures, delay)
        return delay


def connect(url: str, name: str | None = None) -> Any:
    """An asyncio Redis client for ``url`` that retries on connection errors, forever;
    ``name`` is its connections' name in ``CLIENT LIST``."""
    import redis.asyncio as aioredis

    retry = Retry(_LoggedBackoff(cap=RETRY_CAP, base=0.1), retries=-1)
    return aioredis.from_url(
        url,
        retry=retry,
        retry_on_error=[ConnectionError, TimeoutError, OSError],
        health_check_interval=10,
        client_name=name,
    )
