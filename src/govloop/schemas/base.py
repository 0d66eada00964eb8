"""The envelope every govloop event shares: a schema tag, an id and a UTC time."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any, ClassVar, overload

from pydantic import BaseModel, ConfigDict, Field, ValidatorFunctionWrapHandler, field_validator

__all__ = ["Event", "Scalar", "as_utc", "new_event_id", "utcnow"]

#: A feature, label or segment value: what JSON and every model can carry.
Scalar = str | int | float | bool

#: ``YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z`` by length: its characters 4, 7, 10, 13, 16 and 19.
_WIRE_TIME = {20: "--T::Z"} | {n: "--T::." for n in range(22, 28)}


def _wire_time(value: Any) -> datetime | None:
    """``value`` as a datetime in UTC if it is a wire timestamp, else None.

    The wire form is ``2031-01-01T12:00:00[.ffffff]Z``; the standard library
    parses it straight to UTC, to the value pydantic's parser gives
    (``benchmarks/pipeline/check_fast_paths.py`` fuzzes that).  Anything else,
    including what the standard library rejects, is None: pydantic decides.

    >>> _wire_time("2031-01-01T12:00:00.5Z")
    datetime.datetime(2031, 1, 1, 12, 0, 0, 500000, tzinfo=datetime.timezone.utc)
    >>> _wire_time("2031-01-01T12:00:00+00:00") is None
    True
    """
    if type(value) is str and _WIRE_TIME.get(len(value)) == value[4:20:3] and value[-1] == "Z":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def new_event_id() -> str:
    """A fresh random event id (32 hex characters)."""
    return os.urandom(16).hex()


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """A datetime in UTC; a naive one (as SQLite gives stored times back) is read as UTC.

    >>> as_utc(datetime(2030, 1, 1, 12)).isoformat()
    '2030-01-01T12:00:00+00:00'
    """
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Event(BaseModel):
    """Base of every event: frozen, no unknown fields, tagged with its schema.

    Subclasses set ``SCHEMA`` (for example ``"govloop.prediction/1"``); the tag is
    written to and checked in the ``schema`` field of the JSON.  A naive
    timestamp is read as UTC; every timestamp is stored in UTC.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    SCHEMA: ClassVar[str] = ""

    schema_: str = Field(
        default="", alias="schema", validate_default=True, description="Schema tag, name/version."
    )
    event_id: str = Field(default_factory=new_event_id, min_length=1, max_length=128)
    ts: datetime = Field(default_factory=utcnow, description="When it happened (UTC).")

    @field_validator("schema_", mode="before")
    @classmethod
    def _tagged(cls, value: Any) -> str:
        if value in ("", None):
            return cls.SCHEMA
        if value != cls.SCHEMA:
            raise ValueError(f"expected {cls.SCHEMA!r}, got {value!r}")
        return cls.SCHEMA

    @field_validator("ts", mode="wrap")
    @classmethod
    def _in_utc(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
        fast = _wire_time(value)  # saves pydantic's parse and the conversion below
        if fast is not None:
            return fast
        ts: datetime = handler(value)
        tz = ts.tzinfo
        if tz is UTC:
            return ts
        if tz is None:
            return ts.replace(tzinfo=UTC)
        return ts.astimezone(UTC)

    def to_json(self) -> bytes:
        """Wire form: JSON with the ``schema`` alias; fields that are None are left out."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()

    @property
    def epoch(self) -> float:
        """The timestamp in seconds since the epoch."""
        return self.ts.timestamp()
