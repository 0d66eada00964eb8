"""The close step: windows that are due become metric snapshots, stored and published.

Each closed tumbling window of each slice gives a snapshot, and, with
``sliding_windows > 1``, a sliding one ending with it
(:func:`window_snapshots`, pure).  :func:`close` publishes them on
``metrics``, stores them in SQL, judges drift on the overall windows and
then acknowledges the windows, so a crash before the end closes them again
(every step is idempotent by event id).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from govloop.config import Settings
from govloop.schemas import MetricSnapshot
from govloop.stores.redis.records import snapshot_of
from govloop.stores.redis.windows import ClosedWindow, WindowStore
from govloop.stores.sql import (
    Calibration,
    ReferenceWindow,
    calibrate_windows,
    fitted_calibration,
    save_snapshot,
)
from govloop.streams.decode import dead_letter
from govloop.streams.monitor import DriftMonitor

__all__ = ["close", "window_snapshots"]

log = logging.getLogger("govloop.streams")

#: ``publish(short topic name, key, value)``: send one result event.
Publish = Callable[[str, bytes | None, bytes], Awaitable[Any]]
#: Run a function in a session of its own (committed) off the event loop.
InDb = Callable[[Callable[[Session], Any]], Awaitable[Any]]
#: Each model version's calibration map of ``estimated_accuracy`` (None: none yet).
Calibrations = Mapping[tuple[str, str], Calibration | None]


def window_snapshots(
    settings: Settings,
    windows: Sequence[ClosedWindow],
    sliding: Sequence[Any] | None = None,
    span: float = 0.0,
    calibrations: Calibrations | None = None,
) -> list[MetricSnapshot]:
    """The snapshots of closed windows: each tumbling one, then (given ``sliding``, the
    counters of the ``span`` seconds that end with each window) each sliding one; each
    with its version's map in ``calibrations``, if any."""
    prefix, size = settings.topic_prefix, settings.window_seconds
    maps = {} if calibrations is None else calibrations

    def calibrated(w: ClosedWindow) -> dict[str, Any]:
        found = maps.get((w.model, w.model_version))
        if found is None:
            return {}
        return {"calibration": found.map, "calibration_label": found.label}

    snaps = [
        snapshot_of(
            prefix,
            w.model,
            w.model_version,
            w.start,
            size,
            w.counters,
            w.slice,
            "tumbling",
            w.revision,
            **calibrated(w),
        )
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
            **calibrated(w),
        )
        for w, counters in zip(windows, sliding, strict=True)
    ]
    return snaps


def unsummarisable(settings: Settings, windows: Sequence[ClosedWindow]) -> dict[str, str]:
    """The windows whose counters give no valid snapshot, by member, with the reason.

    Input is checked on the way in, so none should; one that does is a bug or
    state from elsewhere, and goes to the dead-letter topic rather than stopping
    every other window from closing.
    """
    broken = {}
    for w in windows:
        try:
            snapshot_of(
                settings.topic_prefix,
                w.model,
                w.model_version,
                w.start,
                settings.window_seconds,
                w.counters,
                w.slice,
            )
        except (ValueError, OverflowError, TypeError) as exc:
            broken[w.member] = f"window {w.member!r} could not be summarised: {exc}"
    return broken


def calibrate(
    session: Session, settings: Settings, windows: Sequence[ClosedWindow]
) -> dict[tuple[str, str], Calibration | None]:
    """Every closing window's version's calibration map, after adding the overall windows
    of a version's calibration period to it (:mod:`govloop.stores.sql.calibration`)."""
    versions = {(w.model, w.model_version) for w in windows}
    overall = [
        ReferenceWindow(w.model, w.model_version, w.start, w.counters)
        for w in windows
        if not w.slice and not w.revision
    ]
    found = calibrate_windows(
        session,
        overall,
        settings.calibration_events,
        settings.calibration_min_labels,
        datetime.now(UTC),
    )
    for model, version in versions - found.keys():  # only its slices or revisions close
        found[(model, version)] = fitted_calibration(session, model, version)
    return found


async def close(
    windows: Sequence[ClosedWindow],
    settings: Settings,
    store: WindowStore,
    drift: DriftMonitor,
    publish: Publish,
    in_db: InDb,
    delivered: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Publish and store the snapshots of claimed ``windows``, judge drift, acknowledge.

    A window that late events opened again gets its next revision: its whole
    counters, under a new event id.  Returns how many overall (unsliced)
    windows were closed.
    """
    windows = await store.revise(windows)
    broken = unsummarisable(settings, windows)
    if broken:
        windows = [w for w in windows if w.member not in broken]
        for member, reason in broken.items():
            letter = dead_letter(settings.topic("metrics"), None, None, reason, member.encode())
            await publish("deadletter", None, letter.to_json())
        log.warning(
            "%d windows could not be summarised; sent to the dead-letter topic", len(broken)
        )
    for w in windows:
        if w.revision and not w.slice:
            log.warning(
                "window %s of %s %s amended by %d late events (revision %d)",
                datetime.fromtimestamp(w.start, UTC).isoformat(),
                w.model,
                w.model_version,
                w.counters.get("late", 0),
                w.revision,
            )
    sliding = None
    if store.sliding_windows > 1:
        sliding = await store.sliding(windows)
    calibrations = await in_db(lambda session: calibrate(session, settings, windows))
    snaps = window_snapshots(settings, windows, sliding, store.sliding_span, calibrations)
    for snap in snaps:
        await publish("metrics", snap.model.encode(), snap.to_json())
    await in_db(lambda session: sum(save_snapshot(session, s) for s in snaps))
    overall = [w for w in windows if not w.slice]
    # drift is judged once per window, on its first snapshot
    first = [w for w in overall if not w.revision]
    try:
        await drift.close(
            first, lambda alert: publish("drift", alert.model.encode(), alert.to_json())
        )
    except (ValueError, TypeError, ArithmeticError, LookupError) as exc:
        # a bug or state the drift round cannot judge: said, and the windows still close
        log.exception("the drift round of %d windows failed", len(first))
        for w in first:
            reason = f"drift round of window {w.member!r} failed: {exc!r}"
            letter = dead_letter(settings.topic("metrics"), None, None, reason, w.member.encode())
            await publish("deadletter", None, letter.to_json())
    if delivered is not None:
        await delivered()  # every snapshot and alert acknowledged before the claim is
    await store.acknowledge(windows)
    if broken:  # given up: a claim that cannot be summarised would come back forever
        await store.forget_claims(list(broken))
    await drift.forget(overall)
    return len(overall)
