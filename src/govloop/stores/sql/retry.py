"""SQL writes that outlast a locked SQLite file or a PostgreSQL restart.

A worker's write that meets a transient error (SQLite's "database is
locked" past its busy timeout, a dropped or refused PostgreSQL connection, a
serialization failure) is rolled back and run again in a fresh session, with
exponential back-off, until it succeeds: the worker waits for its database
instead of crashing with counts half stored.  Every write the worker makes
is idempotent (rows are inserted once by their event id), so running one
again is safe.  Any other error (a bug, a constraint the code did not
expect) is raised at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session

__all__ = ["backoff", "in_session", "transient"]

log = logging.getLogger("govloop.stores")

T = TypeVar("T")

#: PostgreSQL SQLSTATEs worth running again: serialization failure, deadlock.
_RETRY_STATES = {"40001", "40P01"}


def transient(exc: BaseException) -> bool:
    """Whether a database error may go away if the same work is done again.

    >>> transient(OperationalError("INSERT", {}, Exception("database is locked")))
    True
    >>> transient(ValueError("no"))
    False
    """
    if isinstance(exc, OperationalError):
        return True  # locked or busy SQLite, a connection lost or refused
    if isinstance(exc, DBAPIError):
        state = getattr(exc.orig, "sqlstate", None)
        return exc.connection_invalidated or state in _RETRY_STATES
    return False


def backoff(attempt: int, base: float = 0.2, cap: float = 10.0) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): doubling from ``base`` to ``cap``.

    >>> [backoff(n) for n in (1, 2, 3, 8)]
    [0.2, 0.4, 0.8, 10.0]
    """
    return min(cap, base * 2 ** (attempt - 1))


def in_session(
    engine: Engine, fn: Callable[[Session], T], what: str = "write", attempts: int | None = None
) -> T:
    """``fn(session)`` in a session of its own, committed; run again while the error is
    :func:`transient` (forever, or ``attempts`` times in all)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            with Session(engine) as session:
                result = fn(session)
                session.commit()
                return result
        except Exception as exc:
            if not transient(exc) or (attempts is not None and attempt >= attempts):
                raise
            delay = backoff(attempt)
            log.warning(
                "database %s failed (%s); retrying in %.1f s (attempt %d)",
                what,
                type(exc.__cause__ or exc).__name__,
                delay,
                attempt,
            )
            time.sleep(delay)
