"""Concept drift: ADWIN on the joined error and negative-feedback streams.

The stream worker joins predictions to their feedback and hands each batch's
join outcomes, in stream order, to :meth:`ConceptMonitor.observe`: per
(model, version, stream), a 1 is a wrong label (``"error"``) or a thumbs
down (``"negative"``), a 0 the opposite.  One :class:`~govloop.stats.adwin.ADWIN`
per key watches the rate; :func:`advance` (pure) turns its detections into
episodes, and the monitor keeps the state in Redis and the status in SQL.

Episodes, one alert each (hysteresis):

* ``ok`` -> ``drift``: ADWIN cuts its window and the newer part's rate is
  higher than the dropped older part's by more than ``min_rise`` (relative).
  Alert ``state="drift"``, statistic = the rate after the cut, threshold =
  the rate before.  A cut in the improving direction while ``ok`` only moves
  the baseline (no alert).
* ``drift`` -> ``ok``: while drifting, the regime ADWIN holds (its window
  since the alarm or its last cut) is checked once it has
  ``max(kept window, MIN_CONFIRM)`` outcomes, then each time it doubles; the
  episode ends when its rate is at most the rate before the episode plus half
  the rise (``before + (drifted - before) / 2``, the drifted rate measured
  over the regime after the alarm).  Alert ``state="recovered"``, dated at
  the downward cut that began the regime (or when seen, if the regime began
  with the alarm or an upward cut), statistic = the regime's rate, threshold
  = that recovery level.  Further rises, or falls not that far, keep the
  episode open without an alert.  (Why checks and not just cuts: the window
  ADWIN keeps at a cut still holds part of the old regime, and after a cut
  it starts afresh, so a stable new regime, or the stable old one after a
  false alarm, never cuts again.)

Detections and alerts do not depend on how the stream is cut into batches.

Alert ids hash (redis prefix, model, version, stream, state, time of the
detection), so re-publishing an alert is a duplicate by ``event_id``.

ADWIN's ``delta`` is ``settings.drift_alpha`` (0.01 by default).  It is not a
false-alarm rate: ADWIN's bound is conservative, but its window grows without
limit on a stable stream and then resolves tiny differences.  Measured on 10
seeded no-change Bernoulli(0.1) streams of 2 million outcomes (20 million):
14 cuts, 8 of them upwards, 6 of those by under 3% of the rate (0.0995 ->
0.1003).  So an episode opens only when the rate rose by more than
``min_rise`` (relative, default 10%) of the rate before: then 2 false
``drift`` alerts in the 20 million, about one per 10 million outcomes per
stream, each recovered within 900 outcomes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import numpy as np
from redis.exceptions import WatchError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from govloop.config import Settings
from govloop.errors import GovloopError
from govloop.schemas import DriftAlert
from govloop.stats.adwin import ADWIN
from govloop.stores.sql import DriftStatusRow, save_drift_alert

__all__ = ["FEATURES", "Change", "ConceptMonitor", "Outcome", "advance", "alert_id", "concept_key"]

#: The feature name and alert severity of each outcome stream.
FEATURES: dict[str, tuple[str, Literal["warning", "critical"]]] = {
    "error": ("error_rate", "critical"),
    "negative": ("negative_feedback_rate", "warning"),
}

#: Optimistic-transaction attempts before :meth:`ConceptMonitor.observe` gives up.
MAX_ATTEMPTS = 200


class Outcome(NamedTuple):
    """One join outcome: 1.0 = wrong label / thumbs down, 0.0 = right / thumbs up."""

    model: str
    model_version: str
    stream: str  # "error" or "negative"
    value: float
    ts: float  # event time, epoch seconds


class Change(NamedTuple):
    """An episode boundary found by :func:`advance`."""

    state: Literal["drift", "recovered"]
    ts: float  # event time of the outcome at which ADWIN cut
    rate: float  # the rate after the cut
    threshold: float  # drift: the rate before; recovered: the recovery level


def concept_key(prefix: str, model: str, version: str, stream: str) -> str:
    """The Redis key of one (model, version, stream) detector and its episode."""
    return f"{prefix}concept:{model}\x1f{version}\x1f{stream}"


#: Fewest outcomes after a downward cut that confirm a recovery.
MIN_CONFIRM = 50


def _new_state(delta: float) -> dict[str, Any]:
    return {"adwin": ADWIN(delta=delta).to_dict(), "state": "ok", "since": None,
            "before": None, "rate": None, "measured": False, "pending": None, "n": 0,
            "last_ts": None}


def advance(state: dict[str, Any] | None, values: Sequence[float], ts: Sequence[float],
            delta: float, min_rise: float = 0.0) -> tuple[dict[str, Any], list[Change]]:
    """Feed one key's outcomes (in stream order) to its state; return the new state and changes.

    Pure, and independent of how the stream is cut into batches: ``state`` (as
    stored, or None for a new key) is not modified.  The state holds
    ``adwin`` (:meth:`ADWIN.to_dict`), ``state`` (``"ok"`` or ``"drift"``),
    ``since`` (event time the episode began), ``before`` (the rate before
    the episode; in ``ok``, the baseline after the last cut), ``rate`` (the
    drifted rate), ``measured`` (whether ``rate`` has been re-measured over
    the drifted regime), ``pending`` (a check awaiting its outcomes: the
    event time of the downward cut, or None for the check after an alarm;
    the outcomes needed and seen), ``n`` (outcomes seen) and
    ``last_ts`` (newest event time seen).  ``delta`` is ADWIN's for a new
    key; a cut upwards opens an episode only if the rate rose by more than
    ``min_rise`` times the rate before (0: any rise).

    A planted rise of the error rate, 10% -> 40% at index 1000, and back at 2000:

    >>> rng = np.random.default_rng(7)
    >>> p = np.repeat([0.1, 0.4, 0.1], 1000)
    >>> x = (rng.random(3000) < p).astype(float).tolist()
    >>> state, changes = advance(None, x, list(range(3000)), delta=0.002)
    >>> [(c.state, c.ts, round(c.rate, 2), round(c.threshold, 2)) for c in changes]
    [('drift', 1055.0, 0.17, 0.09), ('recovered', 2111.0, 0.08, 0.24)]
    >>> state["state"], state["n"]
    ('ok', 3000)
    """
    new = dict(state) if state is not None else _new_state(delta)
    x = np.asarray(values, dtype=np.float64)
    if x.size != len(ts):
        raise ValueError(f"{x.size} values but {len(ts)} timestamps")
    detector = ADWIN.from_dict(new["adwin"])
    changes: list[Change] = []
    pos = 0
    while pos < x.size:
        pending = new["pending"]
        end = x.size if pending is None else min(x.size, pos + pending["need"] - pending["seen"])
        segment = x[pos:end]
        snapshot = detector.to_dict()
        hits = detector.update_many(segment)
        if hits.size:  # rare: replay up to the first cut to read both sides of it
            hit = int(hits[0])
            detector = ADWIN.from_dict(snapshot)
            detector.update_many(segment[:hit + 1])
            before = detector.dropped[1]
            kept, after = detector.width, detector.estimation
            change = _cut(new, before, after, kept, float(ts[pos + hit]), min_rise)
            pos += hit + 1
        else:
            change = None
            pos = end
            if pending is not None:
                new["pending"] = pending = {**pending, "seen": pending["seen"] + segment.size}
                if pending["seen"] == pending["need"]:
                    change = _confirm(new, detector.estimation, detector.width,
                                      float(ts[end - 1]))
        if change is not None:
            changes.append(change)
    new["adwin"] = detector.to_dict()
    new["n"] = int(new["n"]) + int(x.size)
    if x.size:
        newest = float(max(ts))
        new["last_ts"] = newest if new["last_ts"] is None else max(new["last_ts"], newest)
    return new, changes


def _cut(state: dict[str, Any], before: float, after: float, kept: int, at: float,
         min_rise: float) -> Change | None:
    """Apply an ADWIN cut (the rate went from ``before`` to ``after`` at ``at``).

    ``after`` is the mean of the window ADWIN keeps, which still holds some of
    the old regime; ``before`` (the dropped part) is cleaner.  So the drifted
    rate is re-measured over the regime after the alarm (at the first cut or
    check after it), and a recovery is decided by a check of the regime after
    a cut, once it has ``max(kept, MIN_CONFIRM)`` outcomes (:func:`_confirm`).
    """
    if state["state"] == "ok":
        if after > before * (1.0 + min_rise) and after > before:
            check = {"ts": None, "need": max(kept, MIN_CONFIRM), "seen": 0}
            state.update(state="drift", since=at, before=before, rate=after, measured=False,
                         pending=check)
            return Change("drift", at, after, before)
        state["before"] = after  # improved: the new baseline, silently
        return None
    if not state["measured"]:
        state.update(rate=before, measured=True)
    # the new regime is checked once it has max(kept, MIN_CONFIRM) outcomes: a recovery
    # after a downward cut is dated at the cut, one after an upward cut when it is seen
    state["pending"] = {"ts": None if after > before else at, "need": max(kept, MIN_CONFIRM),
                        "seen": 0}
    return None


def _confirm(state: dict[str, Any], rate: float, width: int, now: float) -> Change | None:
    """A check is due: ``rate`` is the mean of ADWIN's window (``width`` outcomes since its
    last cut or the alarm, one regime as far as ADWIN can tell).  Recovered if half-way back.

    After a downward cut the recovery is dated at the cut; after the alarm
    itself (``pending["ts"]`` None) the check catches an alarm that the
    regime after it does not bear out (a false alarm, a short burst), dated
    now.  Otherwise the episode stays open and the check is repeated each
    time the window doubles (so a long episode is checked O(log n) times);
    the first failed check after the alarm is the clean measure of the
    drifted rate.
    """
    cut = state["pending"]["ts"]
    level = state["before"] + max(state["rate"] - state["before"], 0.0) / 2.0
    if rate > level:
        if not state["measured"]:
            state.update(rate=rate, measured=True)
        state["pending"] = {"ts": cut, "need": width, "seen": 0}
        return None  # still drifting, or a partial improvement: the episode stays open
    at = now if cut is None else cut
    state["pending"] = None
    state.update(state="ok", since=at, before=rate, rate=None, measured=False)
    return Change("recovered", at, rate, level)


def alert_id(prefix: str, model: str, version: str, stream: str, state: str, at: float) -> str:
    """Deterministic event id of an episode's alert: a re-publish is a duplicate."""
    text = f"{prefix}\x1f{model}\x1f{version}\x1f{stream}\x1f{state}\x1f{at:.6f}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ConceptMonitor:
    """Concept-drift detectors of every (model, version, stream), shared through Redis.

    Safe to run in several worker processes at once: each :meth:`observe`
    updates its keys in one optimistic transaction (WATCH/MULTI/EXEC) and, if
    another process wrote one of them meanwhile, re-applies the outcomes to
    the fresh state, so no update is lost or applied twice.
    """

    def __init__(self, settings: Settings, redis: Any, engine: Engine | None = None,
                 status_seconds: float = 5.0, min_rise: float = 0.1) -> None:
        self.settings = settings
        self.redis = redis
        self.engine = engine
        self.delta = settings.drift_alpha
        #: Smallest rise, relative to the rate before, that opens an episode (0: any).
        self.min_rise = min_rise
        #: Least time between two status rows of one key (alerts always write one).
        self.status_seconds = status_seconds
        self._status_written: dict[str, float] = {}
        #: Transactions retried because another process wrote a key first.
        self.retries = 0

    async def observe(self, outcomes: Sequence[Outcome]) -> list[DriftAlert]:
        """Feed a batch of join outcomes (in stream order); return the alerts it raised.

        The caller publishes the alerts; they are already stored in SQL
        (idempotently), with the status rows.
        """
        groups: dict[str, list[Outcome]] = {}
        for o in outcomes:
            if o.stream not in FEATURES:
                raise ValueError(f"unknown outcome stream {o.stream!r}; expected one of "
                                 f"{sorted(FEATURES)}")
            key = concept_key(self.settings.redis_prefix, o.model, o.model_version, o.stream)
            groups.setdefault(key, []).append(o)
        if not groups:
            return []
        states, changes = await self._transact(groups)
        alerts = [self._alert(groups[key][0], change)
                  for key, found in changes.items() for change in found]
        if self.engine is not None:
            now = time.monotonic()
            due = {key: state for key, state in states.items()
                   if changes[key] or now - self._status_written.get(key, -np.inf)
                   >= self.status_seconds}
            if due or alerts:
                rows = [self._status_row(groups[key][0], state) for key, state in due.items()]
                await asyncio.to_thread(self._record, alerts, rows)
                self._status_written.update(dict.fromkeys(due, now))
        return alerts

    async def state(self, model: str, version: str, stream: str) -> dict[str, Any] | None:
        """The stored state of one key (see :func:`advance`), or None."""
        raw = await self.redis.get(concept_key(self.settings.redis_prefix, model, version,
                                               stream))
        return None if raw is None else dict(json.loads(raw))

    async def _transact(self, groups: dict[str, list[Outcome]]
                        ) -> tuple[dict[str, dict[str, Any]], dict[str, list[Change]]]:
        keys = list(groups)
        async with self.redis.pipeline(transaction=True) as pipe:
            for attempt in range(MAX_ATTEMPTS):
                try:
                    await pipe.watch(*keys)
                    raws = await pipe.mget(keys)
                    states: dict[str, dict[str, Any]] = {}
                    changes: dict[str, list[Change]] = {}
                    for key, raw in zip(keys, raws, strict=True):
                        batch = groups[key]
                        states[key], changes[key] = advance(
                            None if raw is None else json.loads(raw),
                            [o.value for o in batch], [o.ts for o in batch], self.delta,
                            self.min_rise)
                    pipe.multi()
                    for key, state in states.items():
                        pipe.set(key, json.dumps(state, separators=(",", ":")))
                    await pipe.execute()
                    return states, changes
                except WatchError:
                    self.retries += 1
                    if attempt >= 2:  # heavy contention: spread the retries out
                        await asyncio.sleep(random.uniform(0.0, 0.001 * min(attempt, 50)))
        raise GovloopError(f"concept-drift state of {len(keys)} keys still contended after "
                           f"{MAX_ATTEMPTS} attempts")

    def _alert(self, first: Outcome, change: Change) -> DriftAlert:
        feature, severity = FEATURES[first.stream]
        return DriftAlert(
            event_id=alert_id(self.settings.redis_prefix, first.model, first.model_version,
                              first.stream, change.state, change.ts),
            ts=datetime.fromtimestamp(change.ts, UTC),
            model=first.model, model_version=first.model_version, feature=feature,
            test="adwin", statistic=change.rate, threshold=change.threshold, p_value=None,
            severity=severity, state=change.state, top_features=[],
        )

    def _status_row(self, first: Outcome, state: dict[str, Any]) -> DriftStatusRow:
        """The ``govloop drift status`` row of one key.

        statistic = the rate of ADWIN's current window; threshold = the rate
        before the episode while drifting, else the current rate (nothing to
        compare with); n_current = the window's width.
        """
        detector = ADWIN.from_dict(state["adwin"])
        rate = detector.estimation
        drifting = state["state"] == "drift"
        since = state["since"]
        return DriftStatusRow(
            model=first.model, model_version=first.model_version,
            feature=FEATURES[first.stream][0], test="adwin", statistic=rate,
            threshold=float(state["before"]) if drifting else rate, p_value=None,
            drifted=drifting, state="drift" if drifting else "ok",
            since=None if since is None else datetime.fromtimestamp(since, UTC),
            window_end=datetime.fromtimestamp(state["last_ts"], UTC),
            reference_version=f"adwin window of {state['n']} outcomes",
            n_current=detector.width,
        )

    def _record(self, alerts: list[DriftAlert], rows: list[DriftStatusRow]) -> None:
        """Store alerts (once per id) and status rows, never a row older than the stored one."""
        assert self.engine is not None
        for attempt in range(3):  # another worker may insert the same new row first
            try:
                with Session(self.engine) as session:
                    for alert in alerts:
                        save_drift_alert(session, alert)
                    for row in rows:
                        old = session.get(DriftStatusRow,
                                          (row.model, row.model_version, row.feature))
                        if old is not None and _utc(old.window_end) > row.window_end:
                            continue
                        session.merge(row)
                    session.commit()
                return
            except IntegrityError:
                if attempt == 2:
                    raise


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
