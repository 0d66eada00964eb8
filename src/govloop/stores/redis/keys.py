"""Every Redis key govloop writes, by family: the one place that names them.

All keys of a deployment start with its prefix (``Settings.redis_prefix``),
so :func:`govloop.stores.redis.windows.clear_state` can drop them all.  The
Lua scripts (``lua/*.lua``) receive the prefix and build the keys of the
families marked *Lua* from it; the Python side builds the rest with the
functions below.  ``tests/test_redis_scripts.py`` checks that every key a run
leaves behind belongs to one of :data:`FAMILIES`.
"""

from __future__ import annotations

__all__ = [
    "FAMILIES",
    "SEP",
    "autoref",
    "calibrations",
    "closed",
    "closing",
    "closing_window",
    "concept",
    "detect",
    "detectors",
    "drift_partial",
    "drift_state",
    "family_of",
    "highwaters",
    "late",
    "offsets",
    "open_windows",
    "rebuilding",
    "recent",
    "state",
]

#: Separator inside a key between model, version and the rest.
SEP = "\x1f"

#: Each family's name after the prefix, and what it holds.  A name ending in ``:`` is
#: followed by a member (a window, an event id, a partition...).
FAMILIES: dict[str, str] = {
    # window and join state (Lua: apply.lua, close.lua, order.lua)
    "state": "string: the epoch of this window state (missing: Redis lost it)",
    "rebuilding": "string, expiring: held by the worker rebuilding a lost state",
    "offsets": "hash: per input partition, the highest applied offset",
    "hw": "hash: per input partition, the high watermark its consumer last fetched",
    "ptime": "hash: per input partition, the newest event time (the watermark's input)",
    "pwall": "hash: per input partition, the wall time it last delivered",
    "first_input": "string: wall time input began (the backlog guard)",
    "last_input": "string: wall time of the newest input (the idle close)",
    "seen:": "string per event id, expiring: the duplicate filter",
    "join:": "hash per request id, expiring at the join horizon: prediction and feedback",
    "win:": "hash per open window: its counters",
    "open": "sorted set: open windows by end time",
    "slices:": "set per window group: the segment values given their own slice",
    "closed:": "string per closed window: later events amend it or count as late "
    "('r': closed before a rebuild, later events are skipped)",
    "late": "hash per window: events that came too late to amend it (counted nowhere else)",
    "outcomes": "sorted set: join outcomes waiting for the watermark, by event time",
    "closing": "sorted set: claimed windows not yet acknowledged, by claim time",
    "closing:": "hash per claimed window: its counters",
    "recent:": "string per closed window, expiring: its counters and snapshot revision, "
    "for sliding windows and amendments",
    # drift (Python: govloop.stores.redis.drift)
    "dprof:": "hash per window partial: staged drift profile rows",
    "dstate:": "hash per model version: each feature's drift state",
    "autoref:": "string per model version: the reference built from its first events",
    # concept drift (Python: govloop.stores.redis.concept)
    "concept:": "string per model version and stream: the detectors' state",
    # streaming data-drift detectors (Python: govloop.streams.detectors)
    "detect:": "string per model version: its feature detectors' states, episodes and the "
    "offsets applied",
    "calib:": "hash per model version: each feature's detector calibration",
    "detectors": "set: every streaming detector of the deployment (the false-alarm budget's N)",
}


def family_of(key: str, prefix: str) -> str | None:
    """The family of ``key``, or None when it is not govloop's.

    >>> family_of("gl.win:m\\x1f1\\x1f60.000", "gl."), family_of("gl.offsets", "gl.")
    ('win:', 'offsets')
    >>> family_of("gl.other", "gl."), family_of("x.offsets", "gl.") is None
    (None, True)
    """
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix) :]
    if rest in FAMILIES and not rest.endswith(":"):
        return rest
    head, colon, _ = rest.partition(":")
    return head + colon if colon and head + colon in FAMILIES else None


def offsets(prefix: str) -> str:
    """Per input partition, the highest applied offset (written by apply.lua)."""
    return f"{prefix}offsets"


def highwaters(prefix: str) -> str:
    """Per input partition, the high watermark its consumer last fetched."""
    return f"{prefix}hw"


def open_windows(prefix: str) -> str:
    """The open windows, by end time (written by apply.lua)."""
    return f"{prefix}open"


def rebuilding(prefix: str) -> str:
    """Held by the worker rebuilding a lost state."""
    return f"{prefix}rebuilding"


def state(prefix: str) -> str:
    """The epoch of the window state: written when it begins, checked by every batch."""
    return f"{prefix}state"


def closed(prefix: str, member: str) -> str:
    """A closed window's marker."""
    return f"{prefix}closed:{member}"


def closing(prefix: str) -> str:
    """The sorted set of claimed windows."""
    return f"{prefix}closing"


def closing_window(prefix: str, member: str) -> str:
    """A claimed window's counters."""
    return f"{prefix}closing:{member}"


def late(prefix: str) -> str:
    """Events counted after their window closed."""
    return f"{prefix}late"


def recent(prefix: str, group: str, start: float) -> str:
    """A closed tumbling window's counters, kept for the sliding windows that span it.

    >>> recent("gl.", "m\\x1f1", 60.0)
    'gl.recent:m\\x1f1\\x1f60.000'
    """
    return f"{prefix}recent:{group}{SEP}{start:.3f}"


def drift_partial(prefix: str, member: str) -> str:
    """A window partial's staged drift profile rows."""
    return f"{prefix}dprof:{member}"


def drift_state(prefix: str, model_key: str) -> str:
    """A model version's drift state per feature."""
    return f"{prefix}dstate:{model_key}"


def autoref(prefix: str, model_key: str) -> str:
    """A model version's automatic reference profile."""
    return f"{prefix}autoref:{model_key}"


def concept(prefix: str, model: str, version: str, stream: str) -> str:
    """The concept-drift detectors' state of one outcome stream of a model version.

    >>> concept("gl.", "m", "1", "error")
    'gl.concept:m\\x1f1\\x1ferror'
    """
    return f"{prefix}concept:{model}{SEP}{version}{SEP}{stream}"


def detect(prefix: str, model_key: str) -> str:
    """A model version's streaming data-drift detectors (``model\\x1fversion``)."""
    return f"{prefix}detect:{model_key}"


def calibrations(prefix: str, model_key: str) -> str:
    """A model version's detector calibrations, one field per feature."""
    return f"{prefix}calib:{model_key}"


def detectors(prefix: str) -> str:
    """The set of every streaming detector of the deployment."""
    return f"{prefix}detectors"
