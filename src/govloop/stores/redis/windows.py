"""Shared window and join state in Redis, updated atomically per batch.

Every worker of a consumer group adds to the same counters, so a window's
metrics do not depend on which worker read which partition.  One Lua call per
batch applies all of it atomically, which is what makes at-least-once
delivery count every event exactly once:

* per (topic, partition) the highest applied offset is kept beside the
  counters: a batch redelivered after a crash is skipped record by record;
* per ``event_id`` a "seen" key (expiring after ``dedupe_seconds``) drops a
  duplicate that a producer sent twice;
* a prediction waits ``join_horizon_seconds`` for its feedback (and feedback
  that arrives first waits for its prediction), so the join state is bounded
  by the horizon and survives a worker restart.

Windows close when the watermark (the slowest active partition's event time)
passes their end plus the grace period, or when no input has arrived for
``idle_close_seconds`` and every record in Kafka is applied (the worker
passes Kafka's end offsets to :meth:`WindowStore.claim_closed`: a partition
with records still to read stays active, so a stalled worker, a slow
database or a broker outage never closes a window early).  In the first
``idle_close_seconds`` after input begins, an input partition that has
delivered nothing yet holds every window open, so a worker that starts on a
backlog does not close windows early.

Closing is two-step (claim, then acknowledge after the snapshot is
published), so a crash in between re-publishes the same snapshot, with the
same event id, instead of losing it.  An acknowledged window's counters are
kept a little longer than a sliding window spans: every counter is a sum, so
a sliding window is the sum of the tumbling ones it covers.

Besides the overall window of its model version, an event counts in the
window of each *slice* its prediction names (A/B variant, segment values;
see :mod:`govloop.stores.redis.records`).  A window takes at most
``segment_slices`` segment values; later ones are counted as
``<attribute>=__other__``, so memory stays bounded whatever the cardinality.

Join outcomes (a label right or wrong, a thumb up or down) wait in a sorted
set by event time until the watermark passes them and are then released
once, in time order, for the concept-drift detectors: a backlog read one
partition ahead of another does not look like a change of the error rate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib.resources import files
from typing import Any, NamedTuple

from redis.exceptions import NoScriptError

from govloop.stats import sliding_counters
from govloop.stores.redis import keys

__all__ = [
    "UNKNOWN",
    "Applied",
    "Claimed",
    "ClosedWindow",
    "Encoded",
    "Outcome",
    "Progress",
    "StateLost",
    "StateRebuilt",
    "WindowStore",
    "clear_state",
]

#: A closed window's counters are kept this long beyond the sliding span and the allowed
#: lateness, so a worker restart within it still publishes complete windows.
RECENT_SLACK_SECONDS = 3600.0
#: Where a kept window's counters note the revision of its last snapshot.
REVISION = "__revision__"


class _Unknown:
    """The input's progress could not be read (the broker does not answer)."""

    def __repr__(self) -> str:
        return "UNKNOWN"


#: Input progress could not be read: no window closes for want of input, only by event time.
UNKNOWN = _Unknown()
#: What a closer knows of input progress: None (nothing: a partition quiet for
#: ``idle_close_seconds`` of wall time counts as idle), :data:`UNKNOWN`, or each input
#: partition's end offset in Kafka (``{"topic:partition": end offset}``).
Progress = Mapping[str, int] | _Unknown | None


def _script(name: str) -> str:
    """A Lua script of this package (``lua/<name>.lua``)."""
    return (files("govloop.stores.redis") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


#: Shared by both scripts: the watermark, and releasing join outcomes in event-time order.
_ORDER = _script("order")
#: One batch of prediction and feedback records: offsets, dedupe, join, window counters.
_APPLY = _ORDER + _script("apply")
#: Claim the windows that are due (two-step close: claim, then :meth:`WindowStore.acknowledge`).
_CLOSE = _ORDER + _script("close")


class StateLost(Exception):
    """Redis no longer holds the window state this store was applying to."""


class StateRebuilt(Exception):
    """Another worker rebuilt the window state: this one must re-read its input too."""

    def __init__(self, epoch: str) -> None:
        super().__init__(f"the window state was rebuilt (epoch {epoch})")
        self.epoch = epoch


class Encoded(NamedTuple):
    """A batch of records ready to send: how many, and their JSON."""

    n: int
    json: str


class Outcome(NamedTuple):
    """One joined label or thumb, in stream order: ``value`` 1 is an error / a thumb down."""

    model: str
    model_version: str
    stream: str  # "error" (label != served label) or "negative" (thumb down)
    value: float
    ts: float  # the feedback's event time


class Applied(NamedTuple):
    """What one batch changed: how many events were new, the join outcomes released, and
    how many events came too late to amend their window (counted only in ``late``)."""

    events: int
    outcomes: list[Outcome]
    late: int = 0


def _outcomes(released: bytes | str) -> list[Outcome]:
    """Outcomes as the scripts release them: a JSON array of ``[model, version, stream,
    value, ts, id]``, or ``""`` for none.

    >>> _outcomes(b'[["m","1","error",1,60.5,"e1"],["m","1","negative",0,61,"e2"]]')
    [Outcome(model='m', model_version='1', stream='error', value=1, ts=60.5), \
Outcome(model='m', model_version='1', stream='negative', value=0, ts=61)]
    >>> _outcomes(b"")
    []
    """
    if not released:
        return []
    return [Outcome(*o[:5]) for o in json.loads(released)]


class Claimed(NamedTuple):
    """What :meth:`WindowStore.claim_closed` returns."""

    windows: list[ClosedWindow]
    outcomes: list[Outcome]


@dataclass(frozen=True)
class ClosedWindow:
    """A window claimed for publishing: its identity, slice (``""``: overall) and raw counters."""

    member: str
    model: str
    model_version: str
    start: float
    counters: dict[str, int]
    slice: str = ""
    revision: int = 0  # 0: its first snapshot; n: the n-th amendment by late events

    @property
    def group(self) -> str:
        """The (model, version, slice) the window belongs to: its sliding windows' key."""
        return f"{self.model}\x1f{self.model_version}\x1f{self.slice}"


class WindowStore:
    """Window counters and join state under ``prefix`` in one Redis (asyncio client)."""

    def __init__(
        self,
        redis: Any,
        prefix: str,
        window_seconds: float,
        grace_seconds: float,
        idle_close_seconds: float,
        horizon_seconds: float,
        dedupe_seconds: float = 900.0,
        retry_seconds: float = 30.0,
        partitions: Sequence[str] = (),
        segment_slices: int = 64,
        sliding_windows: int = 1,
        lateness_seconds: float = 0.0,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.window_seconds = window_seconds
        self.grace_seconds = grace_seconds
        self.idle_close_seconds = idle_close_seconds
        self.horizon_seconds = horizon_seconds
        self.dedupe_seconds = dedupe_seconds
        self.retry_seconds = retry_seconds
        self.partitions = list(partitions)  # every input "topic:partition" to wait for
        self.segment_slices = segment_slices
        self.sliding_windows = sliding_windows
        self.lateness_seconds = lateness_seconds
        #: the state this store applies to (:mod:`govloop.streams.state`); None: unchecked
        self.epoch: str | None = None
        self._apply = redis.register_script(_APPLY)
        self._close = redis.register_script(_CLOSE)

    @staticmethod
    def encode(records: Sequence[Sequence[Any]]) -> Encoded:
        """A batch of records in the form :meth:`apply` sends (done ahead, off the I/O path)."""
        return Encoded(
            len(records), json.dumps(records, separators=(",", ":"), check_circular=False)
        )

    async def apply(
        self,
        records: Sequence[Sequence[Any]] | Encoded,
        before: Callable[[Any], object] | None = None,
    ) -> Applied:
        """Apply a batch of records (:func:`.records.record_of`), or its encoding.

        ``before(pipeline)`` may queue commands that must take effect in the
        same transaction, ahead of the counters (the drift profiles of the
        batch).  Returns how many records were new (not redelivered, not
        duplicates) and the join outcomes that every input partition has now
        passed in event time (of this batch and earlier ones), each released
        once, in event-time order.
        """
        batch = records if isinstance(records, Encoded) else self.encode(records)
        if not batch.n and before is None:
            return Applied(0, [])
        args = [
            self.prefix,
            self.window_seconds,
            self.horizon_seconds,
            self.dedupe_seconds,
            batch.json,
            self.segment_slices,
            self.idle_close_seconds,
            self.lateness_seconds,
            self.epoch or "",
            *self.partitions,
        ]
        try:
            return await self._transaction(batch.n, args, before)
        except NoScriptError:  # a restarted or flushed Redis
            await self.redis.script_load(_APPLY)
            return await self._transaction(batch.n, args, before)

    async def _transaction(
        self, count: int, args: list[Any], before: Callable[[Any], object] | None
    ) -> Applied:
        pipe = self.redis.pipeline(transaction=True)
        if before is not None:
            before(pipe)
        if count:
            # EVALSHA, not the script object: one round trip, no SCRIPT EXISTS first
            pipe.evalsha(self._apply.sha, 0, *args)
        results = await pipe.execute()
        if not count:
            return Applied(0, [])
        applied, released, late = results[-1]
        if applied == -1:
            raise StateLost("its marker is gone (Redis restarted empty, or was flushed)")
        if applied == -2:
            raise StateRebuilt(_text(released))
        return Applied(int(applied), _outcomes(released), int(late))

    async def claim_closed(self, progress: Progress = None) -> Claimed:
        """Close every due window and claim it (and any claim left over by a crash).

        Also releases the join outcomes every input partition has passed (all
        of them when input is idle).  ``progress`` is what the caller knows of
        the input (:data:`Progress`): with Kafka's end offsets, a partition whose
        records are not all applied holds the watermark however long ago it
        delivered, so a stalled worker or broker never makes input look idle.
        """
        if progress is None:
            known = ""
        elif progress is UNKNOWN:
            known = "?"
        else:
            known = json.dumps(progress, separators=(",", ":"))
        args = [
            self.prefix,
            self.grace_seconds,
            self.idle_close_seconds,
            self.horizon_seconds,
            self.retry_seconds,
            known,
            *self.partitions,
        ]
        released, *flat = await self._close(keys=[], args=args)
        windows = []
        for i in range(0, len(flat), 2):
            member = _text(flat[i])
            model, version, start, *slice_ = member.split("\x1f")
            raw = flat[i + 1]
            counters = {_text(raw[j]): int(raw[j + 1]) for j in range(0, len(raw), 2)}
            windows.append(
                ClosedWindow(
                    member, model, version, float(start), counters, slice_[0] if slice_ else ""
                )
            )
        return Claimed(windows, _outcomes(released))

    @property
    def sliding_span(self) -> float:
        """Length in seconds of a sliding window (``sliding_windows`` tumbling windows)."""
        return self.sliding_windows * self.window_seconds

    async def sliding(self, windows: Sequence[ClosedWindow]) -> list[dict[str, int]]:
        """Per window, the counters of the sliding window that ends where it ends.

        That is the window's own counters plus those of the ``sliding_windows - 1``
        tumbling windows of its group before it: from this claim when they are in
        it (a backlog closes several at once), else as :meth:`acknowledge` kept them.
        """
        size, k = self.window_seconds, self.sliding_windows
        claimed = {(w.group, w.start): w.counters for w in windows}
        wanted = sorted(
            {(w.group, w.start - i * size) for w in windows for i in range(1, k)} - claimed.keys()
        )
        stored: dict[tuple[str, float], dict[str, int]] = {}
        if wanted:
            raw = await self.redis.mget([self._recent(g, start) for g, start in wanted])
            stored = {key: _stored(v)[0] for key, v in zip(wanted, raw, strict=True) if v}
        out = []
        for w in windows:
            recent: dict[float, dict[str, int]] = {}
            for i in range(k):
                start = w.start - i * size
                counters = claimed.get((w.group, start)) or stored.get((w.group, start))
                if counters:
                    recent[start] = counters
            out.append(sliding_counters(recent, w.start + size, self.sliding_span))
        return out

    async def revise(self, windows: Sequence[ClosedWindow]) -> list[ClosedWindow]:
        """The claimed windows with their whole counters: an amendment (a window that late
        events opened again) adds the counters of its last snapshot, as
        :meth:`acknowledge` kept them, and is that snapshot's next revision."""
        if not windows:
            return []
        raw = await self.redis.mget([self._recent(w.group, w.start) for w in windows])
        out = []
        for w, before in zip(windows, raw, strict=True):
            if not before:
                out.append(w)
                continue
            counters, revision = _stored(before)
            for name, n in w.counters.items():
                counters[name] = counters.get(name, 0) + n
            out.append(replace(w, counters=counters, revision=revision + 1))
        return out

    async def acknowledge(self, windows: Sequence[ClosedWindow]) -> None:
        """Forget windows whose snapshots were published, keeping their counters as long as
        a sliding window or an amendment by late events may need them."""
        if not windows:
            return
        keep = round(self.sliding_span + self.lateness_seconds + RECENT_SLACK_SECONDS)
        pipe = self.redis.pipeline(transaction=True)
        for w in windows:
            kept = w.counters | {REVISION: w.revision}
            pipe.set(self._recent(w.group, w.start), json.dumps(kept), ex=keep)
            pipe.delete(keys.closing_window(self.prefix, w.member))
            pipe.zrem(keys.closing(self.prefix), w.member)
        await pipe.execute()

    async def forget_claims(self, members: Sequence[str]) -> None:
        """Drop claims that will never be published (their windows stay closed)."""
        pipe = self.redis.pipeline(transaction=True)
        for member in members:
            pipe.delete(keys.closing_window(self.prefix, member))
            pipe.zrem(keys.closing(self.prefix), member)
        await pipe.execute()

    def _recent(self, group: str, start: float) -> str:
        return keys.recent(self.prefix, group, start)


def clear_state(redis_url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (synchronously); return how many were deleted."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        found = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(found), 500):
            client.delete(*found[i : i + 500])
        return len(found)
    finally:
        client.close()


def _stored(raw: bytes | str) -> tuple[dict[str, int], int]:
    """A kept window's counters and revision (:meth:`WindowStore.acknowledge`).

    >>> _stored(b'{"count": 3, "__revision__": 1}')
    ({'count': 3}, 1)
    """
    counters = json.loads(raw)
    return counters, int(counters.pop(REVISION, 0))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
