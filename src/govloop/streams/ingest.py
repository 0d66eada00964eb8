"""The ingest step: a batch of predictions and feedback into Redis, in two halves.

:func:`prepare` is the CPU half: decode and validate each record
(:class:`govloop.streams.decode.Decoder`), build the counter records the
window scripts read, and extract drift features.  It does no I/O and yields
to the event loop now and then, so the previous batch's write gets its
transaction to Redis while this batch is validated.

:func:`write` is the I/O half: one Redis transaction that applies the
counters and stores the drift profiles that are due.  It returns what the
transaction changed (new events, and the join outcomes it released for the
concept-drift detectors).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, NamedTuple

from govloop.errors import EventError
from govloop.judging.features import observed_features
from govloop.schemas import DeadLetter, Prediction
from govloop.stores.redis.drift import Saving
from govloop.stores.redis.records import feedback_record, prediction_record, skip_record
from govloop.stores.redis.windows import Applied, Encoded, WindowStore
from govloop.streams.decode import Decoder, dead_letter
from govloop.streams.detectors import Row
from govloop.streams.monitor import DriftMonitor, Located, Staged

__all__ = ["YIELD_EVERY", "Prepared", "prepare", "write"]

log = logging.getLogger("govloop.streams")

#: :func:`prepare` lets other tasks run after this many records.
YIELD_EVERY = 100


class Prepared(NamedTuple):
    """A batch after :func:`prepare`, ready for :func:`write`."""

    records: Encoded  # for the window store, in batch order
    staged: Staged  # predictions of partials that are not cached yet, with their features
    dead: list[DeadLetter]
    #: each model version's predictions with their features, for the streaming detectors
    rows: dict[tuple[str, str], list[Row]]


async def prepare(
    records: Iterable[Any], decode: Decoder, store: WindowStore, drift: DriftMonitor
) -> Prepared:
    """Validate a batch (``decode``: the deployment's decoder), build its counter records,
    extract its features."""
    where: dict[tuple[str, int], str] = {}
    located: list[Located] = []
    rows: list[list[Any]] = []
    bad: list[DeadLetter] = []
    for i, r in enumerate(records):
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        tp = where.get((r.topic, r.partition))
        if tp is None:
            tp = where[(r.topic, r.partition)] = f"{r.topic}:{r.partition}"
        try:
            event = decode(r.topic, r.value)
        except EventError as exc:
            bad.append(dead_letter(r.topic, r.partition, r.offset, exc.reason, r.value))
            rows.append(skip_record(tp, r.offset))  # its offset is applied all the same
            continue
        epoch = event.ts.timestamp()
        if isinstance(event, Prediction):
            label = event.predicted_label
            located.append((event, tp, r.offset, epoch, label))
            rows.append(prediction_record(event, tp, r.offset, epoch, label))
        else:
            rows.append(feedback_record(event, tp, r.offset, epoch))  # type: ignore[arg-type]
    # what can be done without I/O is done here, so the write is quick to send
    staged = drift.stage_cached(drift.group(located))
    return Prepared(store.encode(rows), staged, bad, detector_rows(located))


def detector_rows(located: Iterable[Located]) -> dict[tuple[str, str], list[Row]]:
    """The streaming detectors' input: each model version's predictions, in batch order."""
    out: dict[tuple[str, str], list[Row]] = {}
    for p, tp, offset, epoch, _ in located:
        numeric, categorical = observed_features(p)
        out.setdefault((p.model, p.model_version), []).append(
            Row(tp, offset, epoch, numeric, categorical)
        )
    return out


async def write(prepared: Prepared, store: WindowStore, drift: DriftMonitor) -> Applied:
    """Apply a prepared batch in one Redis transaction.

    The drift profiles that are due go first in the transaction, so a
    watermark moved by these counters finds them stored.  If the transaction
    fails, what Redis holds is unknown: the drift monitor reads it again.
    """
    if prepared.staged.groups:
        await drift.stage(prepared.staged)
    saving: Saving = []

    def profiles(pipe: Any) -> None:
        saving[:] = drift.queue_due(pipe)

    async with drift.writing:
        try:
            applied = await store.apply(prepared.records, before=profiles)
        except BaseException:
            drift.invalidate()
            raise
        drift.saved(saving)
    if applied.late:
        log.warning(
            "%d events came after their window closed, too late to amend it "
            "(GOVLOOP_ALLOWED_LATENESS_SECONDS): counted only as late",
            applied.late,
        )
    return applied
