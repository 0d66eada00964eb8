"""The envelope every govloop event shares: a schema tag, an id and a UTC time."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Event", "Scalar", "new_event_id", "utcnow"]

#: A feature, label or segment value: what JSON and every model can carry.
Scalar = str | int | float | bool


def new_event_id() -> str:
    """A fresh random event id (32 hex characters)."""
    return os.urandom(16).hex()


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


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

    @field_validator("ts")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def to_json(self) -> bytes:
        """Wire form: JSON with the ``schema`` alias; fields that are None are left out."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()

    @property
    def epoch(self) -> float:
        """The timestamp in seconds since the epoch."""
        return self.ts.timestamp()
