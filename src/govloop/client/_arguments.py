"""What the SDK checks in the caller's thread, before an event is buffered.

Everything here raises a ``ValueError`` naming the problem (an
:class:`~govloop.errors.EventError` for events): a caller's mistake is
reported to the caller, at once, and never reaches the wire.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from govloop.errors import EventError
from govloop.schemas import Event, describe_validation_error, utcnow

__all__ = ["EARLIEST_TS", "MAX_FUTURE_SECONDS", "build", "check_time", "seconds"]

#: Seconds an event's ``ts`` may be ahead of this machine's clock by default (clock skew).
MAX_FUTURE_SECONDS = 300.0
#: The earliest ``ts`` accepted: anything before is a unit or clock mistake (1970 = 0 s).
EARLIEST_TS = datetime(2000, 1, 1, tzinfo=UTC)


def build(model: type[Event], fields: Mapping[str, Any]) -> Event:
    """Validate ``fields`` into ``model``; a ValueError naming each failing field if invalid."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise EventError(f"invalid {model.SCHEMA}: {describe_validation_error(exc)}") from exc


def check_time(event: Event, max_future: timedelta) -> None:
    """EventError unless ``event.ts`` is after 2000 and not more than ``max_future``
    ahead of this machine's clock.

    Such a time is a unit or clock mistake that the window it lands in cannot
    hold (year 9999 overflows at window close); refusing it here tells the
    service at once, where the worker could only dead-letter it.
    """
    if event.ts < EARLIEST_TS:
        raise EventError(f"ts: {event.ts.isoformat()} is before {EARLIEST_TS.date()}")
    ahead = event.ts - utcnow()
    if ahead > max_future:
        raise EventError(
            f"ts: {event.ts.isoformat()} is more than {max_future.total_seconds():g} s "
            "ahead of this machine's clock"
        )


def seconds(name: str, value: float) -> float:
    """``value`` if it is a finite number of seconds >= 0; a ValueError naming ``name`` if not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite number of seconds >= 0, got {value!r}")
    return float(value)
