"""The close step: windows that are due become metric snapshots, stored and published.

Each closed tumbling window of each slice gives a snapshot, and, with
``sliding_windows > 1``, a sliding one ending with it
(:func:`window_snapshots`, pure).  :func:`close` publishes them on
``metrics``, stores them in SQL, judges drift on the overall windows and
then acknowledges the windows, so a crash before the end closes them again
(every step is idempotent by event id).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlmodel import Session

from govloop.config import Settings
from govloop.schemas import MetricSnapshot
from govloop.stores.redis.records import snapshot_of
from govloop.stores.redis.windows import ClosedWindow, WindowStore
from govloop.stores.sql import save_snapshot
from govloop.streams.monitor import DriftMonitor

__all__ = ["close", "window_snapshots"]

#: ``publish(short topic name, key, value)``: send one result event.
Publish = Callable[[str, bytes | None, bytes], Awaitable[Any]]
#: Run a function in a session of its own (committed) off the event loop.
InDb = Callable[[Callable[[Session], Any]], Awaitable[Any]]


def window_snapshots(
    settings: Settings,
    windows: Sequence[ClosedWindow],
    sliding: Sequence[Any] | None = None,
    span: float = 0.0,
) -> list[MetricSnapshot]:
    """The snapshots of closed windows: each tumbling one, then (given ``sliding``, the
    counters of the ``span`` seconds that end with each window) each sliding one."""
    prefix, size = settings.topic_prefix, settings.window_seconds
    snaps = [
        snapshot_of(prefix, w.model, w.model_version, w.start, size, w.counters, w.slice)
        for w in windows
    ]
    if sliding is None:
        return snaps
    snaps += [
        snapshot_of(
            prefix,
            w.model,
            w.model_version,
            w.start + size - span,
            span,
            counters,
            w.slice,
            "sliding",
        )
        for w, counters in zip(windows, sliding, strict=True)
    ]
    return snaps


async def close(
    windows: Sequence[ClosedWindow],
    settings: Settings,
    store: WindowStore,
    drift: DriftMonitor,
    publish: Publish,
    in_db: InDb,
) -> int:
    """Publish and store the snapshots of claimed ``windows``, judge drift, acknowledge.

    Returns how many overall (unsliced) windows were closed.
    """
    sliding = None
    if store.sliding_windows > 1:
        sliding = await store.sliding(windows)
    snaps = window_snapshots(settings, windows, sliding, store.sliding_span)
    for snap in snaps:
        await publish("metrics", snap.model.encode(), snap.to_json())
    await in_db(lambda session: sum(save_snapshot(session, s) for s in snaps))
    overall = [w for w in windows if not w.slice]
    await drift.close(
        overall, lambda alert: publish("drift", alert.model.encode(), alert.to_json())
    )
    await store.acknowledge(windows)
    await drift.forget(overall)
    return len(overall)
