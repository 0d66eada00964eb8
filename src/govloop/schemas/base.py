"""The envelope every govloop event shares: a schema tag, an id and a UTC time."""

from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, datetime
from typing import Any, ClassVar, overload

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)

__all__ = ["TIMESTAMP_PATTERN", "Event", "Scalar", "as_utc", "new_event_id", "utcnow"]

#: A feature, label or segment value: what JSON and every model can carry.
Scalar = str | int | float | bool

_YEAR = "(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-9]))"
)
_TIME = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:[.][0-9]{1,9})?"
_OFFSET = "(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"

#: The one timestamp format: RFC 3339 with an offset (``2031-01-01T12:00:00Z``,
#: ``2031-01-01T14:00:00.5+02:00``), as a JSON Schema ``pattern``.  What a
#: pattern cannot say (February 29 only in leap years; the time must stay
#: within years 1 to 9999 once converted to UTC) the validator checks and the
#: schema's ``$comment`` states.
TIMESTAMP_PATTERN = f"^{_YEAR}-{_MONTH_DAY}T{_TIME}{_OFFSET}$"
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN.removeprefix("^").removesuffix("$"))
_TIMESTAMP_RULE = "must be an RFC 3339 timestamp with an offset, like 2031-01-01T12:00:00Z"

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


class _Untagged(str):
    """The type of the ``schema`` field's default, which no input can be."""


#: The ``schema`` field's default: the tag is filled in from the model.
UNTAGGED = _Untagged("")


class Event(BaseModel):
    """Base of every event: frozen, no unknown fields, tagged with its schema.

    Subclasses set ``SCHEMA`` (for example ``"govloop.prediction/1"``); the tag is
    written to and checked in the ``schema`` field of the JSON.  A naive
    timestamp is read as UTC; every timestamp is stored in UTC.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    SCHEMA: ClassVar[str] = ""

    schema_: str = Field(
        default=UNTAGGED,
        alias="schema",
        validate_default=True,
        description="Schema tag, name/version; may be left out.",
    )
    event_id: str = Field(
        default_factory=new_event_id,
        min_length=1,
        max_length=128,
        description="Unique id; consumers drop repeats by it.  Left out, it is derived from "
        "the event's content (see Event.content_id), so an event sent twice is counted once.",
    )
    ts: datetime = Field(
        default_factory=utcnow,
        description="When it happened: RFC 3339 with an offset (2031-01-01T12:00:00Z).",
        json_schema_extra={
            "pattern": TIMESTAMP_PATTERN,
            "$comment": "Also checked, beyond the pattern: the date exists (February 29 "
            "only in leap years) and stays within years 1-9999 once converted to UTC.  "
            "A worker dead-letters an event whose ts is further in the past or the "
            "future than its configured bounds (max_event_age_seconds, "
            "max_future_seconds).",
        },
    )

    @field_validator("schema_", mode="before")
    @classmethod
    def _tagged(cls, value: Any, info: ValidationInfo) -> str:
        # left out, the tag is filled in; on the wire, when present, it must be the
        # model's own (as the exported schema's ``const`` says); Python callers may pass
        # None or "" for "fill it in"
        if value is UNTAGGED or (value in ("", None) and info.mode == "python"):
            return cls.SCHEMA
        if value != cls.SCHEMA:
            raise ValueError(f"expected {cls.SCHEMA!r}, got {value!r}")
        return cls.SCHEMA

    @field_validator("ts", mode="wrap")
    @classmethod
    def _in_utc(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
        fast = _wire_time(value)  # saves the pattern, pydantic's parse and the conversion
        if fast is not None:
            return fast
        if isinstance(value, str):
            if _TIMESTAMP.fullmatch(value) is None:
                raise ValueError(_TIMESTAMP_RULE)
        elif not isinstance(value, datetime):  # Python callers may pass a datetime
            raise ValueError(_TIMESTAMP_RULE)
        ts: datetime = handler(value)
        tz = ts.tzinfo
        if tz is UTC:
            return ts
        if tz is None:  # only a Python datetime can be naive: read as UTC
            return ts.replace(tzinfo=UTC)
        try:
            return ts.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range once converted to UTC") from None

    def content_id(self) -> str:
        """A deterministic event id: the SHA-256 of the event's canonical JSON without its id.

        An event that arrives without ``event_id`` gets this one, so the same
        event sent twice is one event to the deduplication that follows.

        >>> from govloop.schemas import Feedback
        >>> a = Feedback(request_id="r1", label="yes", ts="2031-01-01T12:00:00Z")
        >>> b = Feedback(request_id="r1", label="yes", ts="2031-01-01T13:00:00+01:00")
        >>> a.content_id() == b.content_id() != a.event_id
        True
        """
        body = self.model_dump_json(by_alias=True, exclude={"event_id"}, exclude_none=True)
        return hashlib.sha256(body.encode()).hexdigest()[:32]

    def with_content_id(self) -> Event:
        """This event, or a copy with :meth:`content_id` when it came without an ``event_id``."""
        if "event_id" in self.model_fields_set:
            return self
        return self.model_copy(update={"event_id": self.content_id()})

    def to_json(self) -> bytes:
        """Wire form: JSON with the ``schema`` alias; fields that are None are left out."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()

    @property
    def epoch(self) -> float:
        """The timestamp in seconds since the epoch."""
        return self.ts.timestamp()
