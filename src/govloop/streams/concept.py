"""Concept drift: calibrated detectors on the joined error and negative-feedback streams.

The stream worker joins predictions to their feedback and hands each batch's
join outcomes, in stream order, to :meth:`ConceptMonitor.observe`: per
(model, version, stream), a 1 is a wrong label (``"error"``) or a thumbs
down (``"negative"``), a 0 the opposite.

Per key, the first ``concept_reference_outcomes`` outcomes are the
reference period: their rate is the reference rate, and their pace (outcomes
per second, event time) sets the detector's share of the fleet's false-alarm
budget (:class:`~govloop.streams.calibration.Budget`).  A binary calibrated
detector (:func:`govloop.stats.calibrated`) then watches every later
outcome against that reference; only a rise of the rate is an alarm (a
fall is an improvement).  :func:`govloop.stats.episodes.watch` turns the
alarms into episodes: one ``drift`` alert, one ``recovered`` alert when a
second detector, watching for the return from the drifted level, alarms.
The reference is never replaced by the drifted level.

Redis holds each key's state, updated in one optimistic transaction per
batch; the join outcomes are released once each, in event-time order, by the
window store, so the same input gives the same alerts.  Alert ids hash
(redis prefix, model, version, stream, state, event time, position in the
stream): re-publishing an alert is a duplicate by ``event_id``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
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
from govloop.schemas.base import as_utc
from govloop.stats.calibrated import Calibration
from govloop.stats.episodes import Change, new_watch, watch
from govloop.stores.redis import keys
from govloop.stores.redis.windows import Outcome
from govloop.stores.sql import DriftStatusRow, save_drift_alert
from govloop.streams import calibration
from govloop.streams.calibration import Budget

__all__ = [
    "FEATURES",
    "Change",
    "ConceptMonitor",
    "Found",
    "Outcome",
    "advance",
    "alert_id",
    "concept_key",
]

#: The feature name and alert severity of each outcome stream.
FEATURES: dict[str, tuple[str, Literal["warning", "critical"]]] = {
    "error": ("error_rate", "critical"),
    "negative": ("negative_feedback_rate", "warning"),
}

#: Optimistic-transaction attempts before :meth:`ConceptMonitor.observe` gives up.
MAX_ATTEMPTS = 200


def registry_key(prefix: str) -> str:
    """The Redis set naming every detector of the deployment (its size is the fleet's N)."""
    return keys.detectors(prefix)


def concept_key(prefix: str, model: str, version: str, stream: str) -> str:
    """The Redis key of one (model, version, stream) detector and its episode."""
    return keys.concept(prefix, model, version, stream)


def alert_id(
    prefix: str, model: str, version: str, stream: str, state: str, at: float, n: int
) -> str:
    """Deterministic event id of an episode's alert: a re-publish is a duplicate."""
    text = f"{prefix}\x1f{model}\x1f{version}\x1f{stream}\x1f{state}\x1f{at:.6f}\x1f{n}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Found(NamedTuple):
    """An episode boundary of one stream, with what the alert says about it."""

    change: Change
    n: int  # the outcome's position in the key's stream (0-based)
    statistic: float  # drift: the rate the arm that fired stands for; recovered: the
    #                   rate over the episode
    threshold: float  # the reference rate
    details: dict[str, Any]


def _new_state() -> dict[str, Any]:
    return {
        "ref": {"n": 0, "ones": 0.0, "first_ts": None, "last_ts": None},
        "reference_rate": None,
        "per_10k": None,
        "calibration": None,
        "watch": None,
        "run": {"n": 0, "ones": 0.0},
        "n": 0,
        "last_ts": None,
    }


def _events_per_second(ref: dict[str, Any]) -> float:
    span = (ref["last_ts"] or 0.0) - (ref["first_ts"] or 0.0)
    return float(ref["n"]) / span if span > 0 else float(ref["n"])


def advance(
    state: dict[str, Any] | None,
    values: Sequence[float],
    ts: Sequence[float],
    reference_outcomes: int,
    per_10k: Callable[[float], float],
) -> tuple[dict[str, Any], list[Found]]:
    """Feed one key's outcomes (in stream order) to its state; return the new state and changes.

    Pure given the detectors (deterministic), and independent of how the
    stream is cut into batches; ``state`` (as stored, or None) is not
    modified.  ``per_10k(outcomes_per_second)`` is the detector's share of the
    fleet's budget (:meth:`Budget.per_10k` with the fleet's size); when it
    falls below the rate the detector was calibrated to (the fleet or the
    traffic grew), the detector is recalibrated to it and starts afresh.
    """
    new = json.loads(json.dumps(state)) if state is not None else _new_state()
    x = np.asarray(values, dtype=np.float64)
    t = np.asarray(ts, dtype=np.float64)
    if x.size != t.size:
        raise ValueError(f"{x.size} values but {t.size} timestamps")
    pos = 0
    ref = new["ref"]
    if new["calibration"] is None and x.size:
        take = min(reference_outcomes - int(ref["n"]), x.size)
        if take > 0:
            ref["n"] = int(ref["n"]) + take
            ref["ones"] = float(ref["ones"]) + float(x[:take].sum())
            first = float(t[:take].min())
            ref["first_ts"] = first if ref["first_ts"] is None else min(ref["first_ts"], first)
            last = float(t[:take].max())
            ref["last_ts"] = last if ref["last_ts"] is None else max(ref["last_ts"], last)
            pos = take
        if int(ref["n"]) >= reference_outcomes:
            new["reference_rate"] = float(ref["ones"]) / float(ref["n"])
            _calibrate(new, per_10k(_events_per_second(ref)))
    found: list[Found] = []
    if new["calibration"] is not None and pos < x.size:
        wanted = per_10k(_events_per_second(ref))
        if wanted < float(new["per_10k"]):
            _calibrate(new, wanted)
        found = _watch(new, x[pos:], t[pos:], int(new["n"]) + pos)
    new["n"] = int(new["n"]) + int(x.size)
    if x.size:
        newest = float(t.max())
        new["last_ts"] = newest if new["last_ts"] is None else max(new["last_ts"], newest)
    return new, found


def _calibrate(state: dict[str, Any], per_10k: float) -> None:
    """A detector for the reference rate at ``per_10k`` (it starts afresh)."""
    ref = state["ref"]
    ones = round(float(ref["ones"]))
    reference = np.zeros(int(ref["n"]))
    reference[:ones] = 1.0  # the rate is what the reference is: the order does not matter
    state["calibration"] = calibration.calibrate("binary", reference, per_10k)
    episode = state["watch"]  # a new detector, and a drifting episode goes on
    state["watch"] = {**episode, "detector": None} if episode is not None else None
    state["per_10k"] = per_10k


def _watch(state: dict[str, Any], x: np.ndarray, t: np.ndarray, offset: int) -> list[Found]:
    """Run the detectors over ``x`` (rises only: a falling error rate is no drift)."""
    cal = Calibration.from_dict(state["calibration"])
    state["watch"], changes = watch(state["watch"], cal, x.tolist(), t.tolist(), ("up",))
    reference = float(state["reference_rate"])
    sums = np.concatenate([[0.0], np.cumsum(x)])  # sums[i]: the first i outcomes
    run = state["run"]  # outcomes since the last change (or the reference period)
    start = 0
    found = []
    for c in changes:
        n = int(run["n"]) + c.pos + 1 - start
        ones = float(run["ones"]) + float(sums[c.pos + 1] - sums[start])
        if c.state == "drift":  # the rate the arm that fired stands for
            p = min(max(reference, 1e-9), 1 - 1e-9)
            statistic = 1.0 / (1.0 + (1.0 - p) / p * np.exp(-c.alarm.arm.size))
        else:  # the rate over the episode
            statistic = ones / n
        details = {
            "detector": calibration.describe(c.alarm),
            "false_alarms_per_10k": state["per_10k"],
            "reference_outcomes": int(state["ref"]["n"]),
            "outcomes_since_last_change": n,
        }
        found.append(Found(c, offset + c.pos, float(statistic), reference, details))
        run, start = {"n": 0, "ones": 0.0}, c.pos + 1
    state["run"] = {
        "n": int(run["n"]) + x.size - start,
        "ones": float(run["ones"]) + float(sums[-1] - sums[start]),
    }
    return found


class ConceptMonitor:
    """Concept-drift detectors of every (model, version, stream), shared through Redis.

    Safe to run in several worker processes at once: each :meth:`observe`
    updates its keys in one optimistic transaction (WATCH/MULTI/EXEC) and, if
    another process wrote one of them meanwhile, re-applies the outcomes to
    the fresh state, so no update is lost or applied twice.
    """

    def __init__(
        self,
        settings: Settings,
        redis: Any,
        engine: Engine | None = None,
        status_seconds: float = 5.0,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.engine = engine
        self.budget = Budget(settings.drift_false_alarm_days)
        #: Least time between two status rows of one key (alerts always write one).
        self.status_seconds = status_seconds
        self._status_written: dict[str, float] = {}
        self._registered: set[str] = set()
        #: Transactions retried because another process wrote a key first.
        self.retries = 0

    async def observe(self, outcomes: Sequence[Outcome]) -> list[DriftAlert]:
        """Feed a batch of join outcomes (in stream order); return the alerts it raised.

        The caller publishes the alerts; they are already stored in SQL
        (idempotently), with the status rows.
        """
        if not outcomes:
            return []
        by_stream: dict[tuple[str, str, str], list[Outcome]] = {}
        for o in outcomes:  # the key's string is built once per stream, not per outcome
            batch = by_stream.get(o[:3])
            if batch is None:
                if o.stream not in FEATURES:
                    raise ValueError(
                        f"unknown outcome stream {o.stream!r}; expected one of {sorted(FEATURES)}"
                    )
                batch = by_stream[o[:3]] = []
            batch.append(o)
        prefix = self.settings.redis_prefix
        groups = {concept_key(prefix, *stream): batch for stream, batch in by_stream.items()}
        if len(groups) < len(by_stream):  # names with the separator in them: key by key
            groups = {}
            for o in outcomes:
                groups.setdefault(concept_key(prefix, *o[:3]), []).append(o)
        fleet = await self._fleet(list(groups))
        states, changes = await self._transact(groups, fleet)
        alerts = [
            self._alert(groups[key][0], found)
            for key, all_found in changes.items()
            for found in all_found
        ]
        if self.engine is not None:
            now = time.monotonic()
            due = {
                key: state
                for key, state in states.items()
                if changes[key]
                or now - self._status_written.get(key, -np.inf) >= self.status_seconds
            }
            if due or alerts:
                rows = [self._status_row(groups[key][0], state) for key, state in due.items()]
                await asyncio.to_thread(self._record, alerts, rows)
                self._status_written.update(dict.fromkeys(due, now))
        return alerts

    async def state(self, model: str, version: str, stream: str) -> dict[str, Any] | None:
        """The stored state of one key (see :func:`advance`), or None."""
        raw = await self.redis.get(concept_key(self.settings.redis_prefix, model, version, stream))
        return None if raw is None else dict(json.loads(raw))

    async def _fleet(self, names: list[str]) -> int:
        """Register these detectors in the deployment's set; return how many it holds."""
        registry = registry_key(self.settings.redis_prefix)
        new = [n for n in names if n not in self._registered]
        if new:
            await self.redis.sadd(registry, *new)
            self._registered.update(new)
        return int(await self.redis.scard(registry))

    async def _transact(
        self, groups: dict[str, list[Outcome]], fleet: int
    ) -> tuple[dict[str, dict[str, Any]], dict[str, list[Found]]]:
        keys_ = list(groups)
        s = self.settings

        def per_10k(rate: float) -> float:
            return self.budget.per_10k(fleet, rate)

        async with self.redis.pipeline(transaction=True) as pipe:
            for attempt in range(MAX_ATTEMPTS):
                try:
                    await pipe.watch(*keys_)
                    raws = await pipe.mget(keys_)
                    states: dict[str, dict[str, Any]] = {}
                    changes: dict[str, list[Found]] = {}
                    for key, raw in zip(keys_, raws, strict=True):
                        batch = groups[key]
                        states[key], changes[key] = await asyncio.to_thread(
                            advance,
                            None if raw is None else json.loads(raw),
                            [o.value for o in batch],
                            [o.ts for o in batch],
                            s.concept_reference_outcomes,
                            per_10k,
                        )
                    pipe.multi()
                    for key, state in states.items():
                        pipe.set(key, json.dumps(state, separators=(",", ":")))
                    await pipe.execute()
                    return states, changes
                except WatchError:
                    self.retries += 1
                    if attempt >= 2:  # heavy contention: spread the retries out
                        await asyncio.sleep(random.uniform(0.0, 0.001 * min(attempt, 50)))
        raise GovloopError(
            f"concept-drift state of {len(keys_)} keys still contended after "
            f"{MAX_ATTEMPTS} attempts"
        )

    def _alert(self, first: Outcome, found: Found) -> DriftAlert:
        feature, severity = FEATURES[first.stream]
        change = found.change
        return DriftAlert(
            event_id=alert_id(
                self.settings.redis_prefix,
                first.model,
                first.model_version,
                first.stream,
                change.state,
                change.ts,
                found.n,
            ),
            ts=datetime.fromtimestamp(change.ts, UTC),
            model=first.model,
            model_version=first.model_version,
            feature=feature,
            test=TEST,
            statistic=found.statistic,
            threshold=found.threshold,
            p_value=None,
            severity=severity if change.state == "drift" else "info",
            state=change.state,
            reference_version=_reference_label(found.details.get("reference_outcomes")),
            top_features=[],
            details=found.details,
        )

    def _status_row(self, first: Outcome, state: dict[str, Any]) -> DriftStatusRow:
        """The ``govloop drift status`` row of one key.

        statistic = the rate of the outcomes since the episode began or
        ended (or since the reference period); threshold = the reference
        rate; n_current = those outcomes.  While the reference period runs, both
        are its rate so far.
        """
        episode = state["watch"] or new_watch()
        ref, run = state["ref"], state["run"]
        learning = state["reference_rate"] is None
        reference = (
            float(ref["ones"]) / max(int(ref["n"]), 1)
            if learning
            else float(state["reference_rate"])
        )
        rate = reference if learning or not run["n"] else float(run["ones"]) / int(run["n"])
        drifting = episode["state"] == "drift"
        since = episode["since"]
        last_ts = state["last_ts"] if state["last_ts"] is not None else 0.0
        return DriftStatusRow(
            model=first.model,
            model_version=first.model_version,
            feature=FEATURES[first.stream][0],
            test=TEST,
            statistic=rate,
            threshold=reference,
            p_value=None,
            drifted=drifting,
            state="drift" if drifting else "ok",
            since=None if since is None else datetime.fromtimestamp(since, UTC),
            window_end=datetime.fromtimestamp(last_ts, UTC),
            reference_version=(
                f"learning: {ref['n']} of {self.settings.concept_reference_outcomes} outcomes"
                if learning
                else _reference_label(ref["n"])
            ),
            n_current=int(ref["n"]) if learning else int(run["n"]),
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
                        old = session.get(
                            DriftStatusRow, (row.model, row.model_version, row.feature)
                        )
                        if old is not None and as_utc(old.window_end) > row.window_end:
                            continue
                        session.merge(row)
                    session.commit()
                return
            except IntegrityError:
                if attempt == 2:
                    raise


#: The ``test`` of concept-drift alerts and status rows.
TEST = "calibrated"


def _reference_label(n: Any) -> str:
    return f"first {n} outcomes"
