"""Concept drift: ADWIN on the joined error and negative-feedback streams.

The stream worker joins predictions to their feedback and hands each batch's
join outcomes, in stream order, to :meth:`ConceptMonitor.observe`: per
(model, version, stream), a 1 is a wrong label (``"error"``) or a thumbs
down (``"negative"``), a 0 the opposite.  One :class:`~govloop.stats.adwin.ADWIN`
per key watches the rate; :func:`govloop.stats.episodes.advance` (pure) turns
its detections into episodes, one alert each (hysteresis), and the monitor
keeps the state in Redis and the status in SQL.

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
from typing import Any, Literal

import numpy as np
from redis.exceptions import WatchError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from govloop.config import Settings
from govloop.errors import GovloopError
from govloop.schemas import DriftAlert
from govloop.schemas.base import as_utc
from govloop.stats.adwin import ADWIN
from govloop.stats.episodes import Change, advance
from govloop.stores.redis import keys
from govloop.stores.redis.windows import Outcome
from govloop.stores.sql import DriftStatusRow, save_drift_alert

__all__ = ["FEATURES", "Change", "ConceptMonitor", "Outcome", "advance", "alert_id", "concept_key"]

#: The feature name and alert severity of each outcome stream.
FEATURES: dict[str, tuple[str, Literal["warning", "critical"]]] = {
    "error": ("error_rate", "critical"),
    "negative": ("negative_feedback_rate", "warning"),
}

#: Optimistic-transaction attempts before :meth:`ConceptMonitor.observe` gives up.
MAX_ATTEMPTS = 200


def concept_key(prefix: str, model: str, version: str, stream: str) -> str:
    """The Redis key of one (model, version, stream) detector and its episode."""
    return keys.concept(prefix, model, version, stream)


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

    def __init__(
        self,
        settings: Settings,
        redis: Any,
        engine: Engine | None = None,
        status_seconds: float = 5.0,
        min_rise: float = 0.1,
    ) -> None:
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
        states, changes = await self._transact(groups)
        alerts = [
            self._alert(groups[key][0], change)
            for key, found in changes.items()
            for change in found
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

    async def _transact(
        self, groups: dict[str, list[Outcome]]
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
                            [o.value for o in batch],
                            [o.ts for o in batch],
                            self.delta,
                            self.min_rise,
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
            f"concept-drift state of {len(keys)} keys still contended after {MAX_ATTEMPTS} attempts"
        )

    def _alert(self, first: Outcome, change: Change) -> DriftAlert:
        feature, severity = FEATURES[first.stream]
        return DriftAlert(
            event_id=alert_id(
                self.settings.redis_prefix,
                first.model,
                first.model_version,
                first.stream,
                change.state,
                change.ts,
            ),
            ts=datetime.fromtimestamp(change.ts, UTC),
            model=first.model,
            model_version=first.model_version,
            feature=feature,
            test="adwin",
            statistic=change.rate,
            threshold=change.threshold,
            p_value=None,
            severity=severity,
            state=change.state,
            top_features=[],
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
            model=first.model,
            model_version=first.model_version,
            feature=FEATURES[first.stream][0],
            test="adwin",
            statistic=rate,
            threshold=float(state["before"]) if drifting else rate,
            p_value=None,
            drifted=drifting,
            state="drift" if drifting else "ok",
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
