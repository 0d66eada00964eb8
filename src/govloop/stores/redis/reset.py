"""A model's window state seen and cleared from outside the worker (synchronous client).

``govloop state reset`` uses :func:`model_state` to say what it would delete
and :func:`reset_model` to delete it; ``govloop status`` reads the open
windows, late counts and automatic references with the readers below.

What a reset clears, for one model (or one version of it), by family of
:data:`govloop.stores.redis.keys.FAMILIES`:

* the window counters: open (``win:``, members of ``open``), claimed
  (``closing:``, members of ``closing``), their segment sets (``slices:``)
  and the closed ones kept for sliding windows (``recent:``);
* the staged drift profiles of those windows (``dprof:``), the drift state
  (``dstate:``), the automatic reference being collected (``autoref:``),
  the concept-drift detectors (``concept:``) and the streaming data-drift
  detectors with their calibrations (``detect:``, ``calib:``);
* its late count (field of ``late``) and its join outcomes waiting for the
  watermark (members of ``outcomes``).

What it keeps: the applied offsets and the duplicate filter (so nothing
already counted is counted again), the markers of closed windows (so a late
event does not reopen one) and the join state (so feedback to a prediction
already seen is still joined).  Windows open at the reset lose what they had
counted; the SQL store, the system of record, is untouched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from govloop.stores.redis import keys

__all__ = [
    "OpenWindow",
    "late_counts",
    "model_state",
    "open_windows",
    "pending_references",
    "reset_model",
]

#: Families whose keys start with a model version (``<family><model>\x1f<version>...``).
_PER_MODEL = (
    "win:",
    "closing:",
    "slices:",
    "recent:",
    "dprof:",
    "dstate:",
    "autoref:",
    "concept:",
    "detect:",
    "calib:",
)
#: Of those, the ones named ``<model>\x1f<version>`` with nothing after it.
_ONE_PER_VERSION = ("dstate:", "autoref:", "detect:", "calib:")
#: Keys per SCAN round trip.
_SCAN_BATCH = 1000


@dataclass(frozen=True)
class OpenWindow:
    """A window the worker is counting: its model version, start, end and predictions so far."""

    model: str
    model_version: str
    slice: str
    start: float
    end: float
    count: int


@dataclass
class ModelState:
    """What a model (version) holds in Redis: keys by family, and members of shared keys."""

    keys: dict[str, list[bytes]] = field(default_factory=dict)
    open: list[bytes] = field(default_factory=list)
    closing: list[bytes] = field(default_factory=list)
    outcomes: list[bytes] = field(default_factory=list)
    late: list[bytes] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many keys (or members, or fields) each family holds: what a reset removes."""
        out = {family: len(found) for family, found in self.keys.items() if found}
        shared = {"open": self.open, "closing": self.closing, "outcomes": self.outcomes}
        out |= {name: len(members) for name, members in shared.items() if members}
        if self.late:
            out["late"] = len(self.late)
        return out

    @property
    def empty(self) -> bool:
        return not self.counts()


def _glob(text: str) -> str:
    """``text`` as a literal inside a Redis MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _head(model: str, version: str | None) -> str:
    """The start every key and member of the model (version) has after its family."""
    return f"{model}{keys.SEP}" + ("" if version is None else f"{version}{keys.SEP}")


def _owns(name: bytes, model: str, version: str | None) -> bool:
    """Whether a member or field name (``model\\x1fversion...``) is the model version's."""
    text = name.decode(errors="replace")
    parts = text.split(keys.SEP)
    return len(parts) >= 2 and parts[0] == model and (version is None or parts[1] == version)


def _scan(client: Any, pattern: str) -> Iterator[bytes]:
    yield from client.scan_iter(match=pattern, count=_SCAN_BATCH)


def model_state(client: Any, prefix: str, model: str, version: str | None = None) -> ModelState:
    """Everything :func:`reset_model` would delete for ``model`` (every version if None)."""
    state = ModelState()
    head = _glob(_head(model, version))
    for family in _PER_MODEL:
        if version is not None and family in _ONE_PER_VERSION:
            exact = f"{prefix}{family}{model}{keys.SEP}{version}".encode()
            state.keys[family] = [exact] if client.exists(exact) else []
        else:
            state.keys[family] = list(_scan(client, f"{_glob(prefix)}{family}{head}*"))
    state.open = [
        m for m in client.zrange(keys.open_windows(prefix), 0, -1) if _owns(m, model, version)
    ]
    state.closing = [
        m for m in client.zrange(keys.closing(prefix), 0, -1) if _owns(m, model, version)
    ]
    state.late = [f for f in client.hkeys(keys.late(prefix)) if _owns(f, model, version)]
    state.outcomes = [
        m for m in client.zrange(f"{prefix}outcomes", 0, -1) if _outcome_of(m, model, version)
    ]
    return state


def _outcome_of(member: bytes, model: str, version: str | None) -> bool:
    """Whether a waiting join outcome (``[model, version, stream, value, ts, id]``) is ours."""
    try:
        found = json.loads(member)
    except ValueError:
        return False
    return (
        isinstance(found, list)
        and len(found) >= 2
        and found[0] == model
        and (version is None or found[1] == version)
    )


def reset_model(client: Any, prefix: str, model: str, version: str | None = None) -> dict[str, int]:
    """Delete the window state of ``model`` (one ``version``, or all); what was deleted, by family.

    One transaction, so the worker never sees half a reset; keys and members
    that appear between reading and deleting (a worker still consuming) are
    not covered, which is why the CLI refuses while workers run.
    """
    state = model_state(client, prefix, model, version)
    pipe = client.pipeline(transaction=True)
    for found in state.keys.values():
        for i in range(0, len(found), 500):
            pipe.delete(*found[i : i + 500])
    if state.open:
        pipe.zrem(keys.open_windows(prefix), *state.open)
    if state.closing:
        pipe.zrem(keys.closing(prefix), *state.closing)
    if state.outcomes:
        pipe.zrem(f"{prefix}outcomes", *state.outcomes)
    if state.late:
        pipe.hdel(keys.late(prefix), *state.late)
    pipe.execute()
    return state.counts()


def open_windows(client: Any, prefix: str) -> list[OpenWindow]:
    """Every open window, oldest end first, with the predictions it has counted."""
    members = client.zrange(keys.open_windows(prefix), 0, -1, withscores=True)
    pipe = client.pipeline(transaction=False)
    for member, _ in members:
        pipe.hget(f"{prefix}win:{member.decode(errors='replace')}", "count")
    counts = pipe.execute() if members else []
    out = []
    for (member, end), count in zip(members, counts, strict=True):
        model, version, start, *rest = member.decode(errors="replace").split(keys.SEP)
        out.append(
            OpenWindow(model, version, rest[0] if rest else "", float(start), end, int(count or 0))
        )
    return out


def late_counts(client: Any, prefix: str) -> dict[tuple[str, str], int]:
    """Events per model version that came too late to amend their window (counted nowhere
    else); the ``late`` hash has a field per window, ``model\x1fversion\x1fstart...``."""
    out: dict[tuple[str, str], int] = {}
    for name, n in client.hgetall(keys.late(prefix)).items():
        parts: list[str] = name.decode(errors="replace").split(keys.SEP)
        key = (parts[0], parts[1] if len(parts) > 1 else "")
        out[key] = out.get(key, 0) + int(n)
    return out


def pending_references(client: Any, prefix: str) -> dict[tuple[str, str], int]:
    """Per model version still collecting its automatic reference: the events it holds."""
    out = {}
    for key in _scan(client, f"{_glob(prefix)}autoref:*"):
        raw = client.get(key)
        if not raw:
            continue
        model_key = key.decode(errors="replace")[len(prefix) + len("autoref:") :]
        model, _, version = model_key.partition(keys.SEP)
        out[(model, version)] = int(json.loads(raw).get("n", 0))
    return out
