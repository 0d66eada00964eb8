"""Data drift as it happens: a calibrated detector per watched feature of a model version.

Each numeric and categorical feature of a model version's reference profile
gets a detector (:func:`govloop.stats.calibrated`), calibrated on the
reference at its share of the fleet's false-alarm budget
(:class:`~govloop.streams.calibration.Budget`; the version's traffic is
measured from the events seen).  The worker feeds every batch's features to
them after its write (:meth:`FeatureDetectors.observe`), so an alarm comes
within the detector's delay, not at a window's end.  Episodes follow
:func:`govloop.stats.episodes.watch`: one ``drift`` alert, one ``recovered``
when the detector watching for the return alarms; the reference stays
the reference until ``govloop drift reference set`` stores a new one (then
every detector is recalibrated, and a drifting feature gets its
``recovered`` alert, saying why).

The windowed test explains the alert: ``test``, ``statistic``,
``threshold`` and ``p_value`` are the current window's (so far) against the
reference, when the window holds ``drift_min_count`` values of the feature;
``details`` holds what the detector found (the arm that fired, its statistic
and threshold, its false-alarm rate); ``top_features`` are the version's
features in a drift episode, by windowed p-value.

State: one Redis string per model version (``detect:``) holds every
feature's detector state and episode and the highest offset applied per
input partition, written in one optimistic transaction per batch, so a
batch redelivered after a crash is skipped and raises no alert twice.  The
calibrations sit beside it (``calib:``), written once per reference and
rate.  Within a batch values are taken in batch order; across partitions,
in the order batches are applied (a replay that interleaves partitions
differently may move an alarm by a few values, never add one that the
values do not bear).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
from redis.exceptions import WatchError
from sqlalchemy import Engine
from sqlmodel import Session

from govloop.config import Settings
from govloop.errors import GovloopError
from govloop.schemas import DriftAlert
from govloop.stats.calibrated import Alarm, Arm, Calibration
from govloop.stats.episodes import Change, new_watch, watch
from govloop.stats.profile import Profile, compare
from govloop.stores.redis import keys
from govloop.stores.sql import DriftStatusRow, latest_reference, save_drift_alert
from govloop.stores.sql.retry import in_session
from govloop.streams import calibration
from govloop.streams.calibration import Budget, Kind

__all__ = ["TEST", "FeatureDetectors", "Row", "reference_sample"]

log = logging.getLogger("govloop.streams.detectors")

#: The ``test`` of an alert the window cannot explain yet (too few values in it).
TEST = "calibrated"
#: Seconds a reference read from SQL is reused before it is read again.
REFERENCE_TTL = 30.0
#: Events of a version seen before its detectors start (their pace sets the budget share).
MIN_EVENTS = 100
#: Values a reference sample hands the calibration at most.
SAMPLE = 4096
MAX_ATTEMPTS = 200


class Row(NamedTuple):
    """One prediction's features, where it was read and when it happened."""

    tp: str  # topic:partition
    offset: int
    ts: float
    numeric: dict[str, float]
    categorical: dict[str, str]


def reference_sample(profile: Profile, feature: str) -> tuple[Kind, list[Any]] | None:
    """The reference values a feature's detector is calibrated on, or None (nothing to watch).

    Numeric: the sketch's quantiles at ``(i + 0.5) / m`` for ``m = min(n, 4096)``
    values (the sample itself when the sketch is exact).  Categorical: the
    counted labels, scaled to at most 4096 values in all.

    >>> p = Profile()
    >>> p.update_many([({"x": float(i)}, {"c": "ab"[i % 2]}) for i in range(10)])
    >>> reference_sample(p, "x")[1][:3], reference_sample(p, "c")
    ([0.0, 1.0, 2.0], ('categorical', ['a', 'a', 'a', 'a', 'a', 'b', 'b', 'b', 'b', 'b']))
    """
    if feature in profile.numeric:
        sketch = profile.numeric[feature]
        m = min(sketch.n, SAMPLE)
        if m < 2 or not sketch.std > 0:
            return None
        qs = (np.arange(m) + 0.5) / m
        return "numeric", [float(v) for v in sketch.quantiles(qs)]
    if feature in profile.categorical:
        counts = profile.categorical[feature].counts()
        total = sum(counts.values())
        if total < 2 or len(counts) < 2:
            return None
        scale = min(1.0, SAMPLE / total)
        values: list[Any] = []
        for label in sorted(counts):
            values.extend([label] * max(1, round(counts[label] * scale)))
        return "categorical", values
    return None


class FeatureDetectors:
    """The streaming data-drift detectors of every model version, shared through Redis."""

    def __init__(
        self,
        settings: Settings,
        redis: Any,
        engine: Engine,
        window_profile: Any = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.engine = engine
        #: ``await window_profile(model, version, ts)``: the window so far (the explanation).
        self.window_profile = window_profile
        self.budget = Budget(settings.drift_false_alarm_days)
        self._references: dict[str, tuple[float, Profile | None, str]] = {}
        self._registered: set[str] = set()
        #: Transactions retried because another process wrote a key first.
        self.retries = 0

    async def observe(self, rows: dict[tuple[str, str], list[Row]]) -> list[DriftAlert]:
        """Feed each model version's rows (in batch order); return the alerts raised.

        The alerts are stored in SQL (once per id) with status rows; the caller publishes.
        """
        alerts: list[DriftAlert] = []
        for (model, version), batch in rows.items():
            if batch:
                alerts += await self._observe(model, version, batch)
        return alerts

    async def prepare(self, model: str, version: str) -> None:
        """Calibrate a version's detectors on its (new) reference now, not at its next batch."""
        self._references.pop(f"{model}\x1f{version}", None)
        reference, label = await self._reference(model, version)
        if reference is None:
            return
        model_key = f"{model}\x1f{version}"
        state_key = keys.detect(self.settings.redis_prefix, model_key)
        raw = await self.redis.get(state_key)
        tps = sorted(json.loads(raw)["offsets"]) if raw else []
        if tps:
            await self._calibrations(model_key, reference, label, state_key, tps)

    async def episodes(self, model: str, version: str) -> dict[str, dict[str, Any]]:
        """Each watched feature's episode (``state``, ``since``) of a model version."""
        raw = await self.redis.get(keys.detect(self.settings.redis_prefix, f"{model}\x1f{version}"))
        if raw is None:
            return {}
        return {f: d["watch"] for f, d in json.loads(raw)["features"].items()}

    async def _observe(self, model: str, version: str, batch: list[Row]) -> list[DriftAlert]:
        model_key = f"{model}\x1f{version}"
        prefix = self.settings.redis_prefix
        state_key = keys.detect(prefix, model_key)
        reference, label = await self._reference(model, version)
        calibrations: dict[str, dict[str, Any]] = {}
        if reference is not None:
            tps = sorted({r.tp for r in batch})
            calibrations = await self._calibrations(model_key, reference, label, state_key, tps)
        async with self.redis.pipeline(transaction=True) as pipe:
            for attempt in range(MAX_ATTEMPTS):
                try:
                    await pipe.watch(state_key)
                    raw = await pipe.get(state_key)
                    state = _new_state() if raw is None else json.loads(raw)
                    state, found = await asyncio.to_thread(
                        _advance,
                        state,
                        batch,
                        calibrations,
                    )
                    pipe.multi()
                    pipe.set(state_key, json.dumps(state, separators=(",", ":")))
                    await pipe.execute()
                    break
                except WatchError:
                    self.retries += 1
                    if attempt >= 2:
                        await asyncio.sleep(random.uniform(0.0, 0.001 * min(attempt, 50)))
            else:
                raise GovloopError(
                    f"detector state of {model} {version} still contended after "
                    f"{MAX_ATTEMPTS} attempts"
                )
        if not found:
            return []
        alerts = await self._alerts(model, version, reference, label, state, found)
        rows = [self._status_row(model, version, state, a) for a in alerts]
        await asyncio.to_thread(in_session, self.engine, lambda s: _record(s, alerts, rows))
        return alerts

    async def _reference(self, model: str, version: str) -> tuple[Profile | None, str]:
        key = f"{model}\x1f{version}"
        cached = self._references.get(key)
        if cached is not None:  # a missing reference is looked for again sooner
            ttl = REFERENCE_TTL if cached[1] is not None else 1.0
            if time.monotonic() - cached[0] < ttl:
                return cached[1], cached[2]

        def load(session: Session) -> tuple[Profile | None, str]:
            row = latest_reference(session, model, version)
            if row is None:
                return None, ""
            return Profile.from_dict(json.loads(row.body)), f"v{row.version} ({row.source})"

        reference, label = await asyncio.to_thread(in_session, self.engine, load)
        self._references[key] = (time.monotonic(), reference, label)
        return reference, label

    async def _calibrations(
        self,
        model_key: str,
        reference: Profile,
        label: str,
        state_key: str,
        tps: list[str],
    ) -> dict[str, dict[str, Any]]:
        """Each feature's calibration for this reference at its share of the budget.

        A detector per feature and input partition (``tps``: this batch's):
        the fleet's N counts each, and each sees its partition's share of the
        version's traffic.
        """
        prefix = self.settings.redis_prefix
        features = sorted(set(reference.numeric) | set(reference.categorical))
        names = [f"{model_key}\x1f{f}\x1f{tp}" for f in features for tp in tps]
        fresh = [n for n in names if n not in self._registered]
        if fresh:
            await self.redis.sadd(keys.detectors(prefix), *fresh)
            self._registered.update(fresh)
        fleet = int(await self.redis.scard(keys.detectors(prefix)))
        raw = await self.redis.get(state_key)
        stored_state = json.loads(raw) if raw else _new_state()
        seen = stored_state["seen"]
        span = (seen["last_ts"] or 0.0) - (seen["first_ts"] or 0.0)
        if seen["n"] < MIN_EVENTS or span <= 0:
            return {}  # the version's pace is not known yet
        partitions = max(len(stored_state["offsets"]), 1)
        per_10k = self.budget.per_10k(fleet, seen["n"] / span / partitions)
        stored = await self.redis.hgetall(keys.calibrations(prefix, model_key))
        have = {_text(k): json.loads(v) for k, v in stored.items()}
        out: dict[str, dict[str, Any]] = {}
        todo: list[tuple[str, Kind, list[Any]]] = []
        for feature in features:
            old = have.get(feature)
            if old is not None and old["reference"] == label and old["per_10k"] <= per_10k:
                out[feature] = old
                continue
            sample = reference_sample(reference, feature)
            if sample is not None:
                todo.append((feature, *sample))
        if todo:  # one simulation at a time: the other threads' work (SQL) goes on
            began = time.monotonic()
            done = [
                await asyncio.to_thread(calibration.calibrate, k, v, per_10k) for _, k, v in todo
            ]
            log.info(
                "calibrated %d detectors of %s at %.3g false alarms per 10k in %.1f s",
                len(todo),
                model_key.replace("\x1f", " "),
                per_10k,
                time.monotonic() - began,
            )
            for (feature, _, _), cal in zip(todo, done, strict=True):
                out[feature] = {"reference": label, "per_10k": per_10k, "calibration": cal}
            await self.redis.hset(
                keys.calibrations(prefix, model_key),
                mapping={f: json.dumps(out[f]) for f, _, _ in todo},
            )
        return out

    async def _alerts(
        self,
        model: str,
        version: str,
        reference: Profile | None,
        label: str,
        state: dict[str, Any],
        found: list[Found],
    ) -> list[DriftAlert]:
        drifting = [f for f, d in state["features"].items() if d["watch"]["state"] == "drift"]
        alerts = []
        for item in found:
            windowed = None
            if item.change.state == "drift" and reference is not None and self.window_profile:
                current = await self.window_profile(model, version, item.change.ts)
                if current is not None:
                    windowed = {
                        d.feature: d
                        for d in compare(
                            reference, current, min_count=self.settings.drift_min_count
                        )
                    }
            alerts.append(self._alert(model, version, label, item, windowed, drifting))
        return alerts

    def _alert(
        self,
        model: str,
        version: str,
        label: str,
        item: Found,
        windowed: dict[str, Any] | None,
        drifting: list[str],
    ) -> DriftAlert:
        c = item.change
        d = None if windowed is None else windowed.get(item.feature)
        details = dict(item.details)
        if d is not None:
            test, statistic, threshold, p_value = (
                d.result.test,
                d.result.statistic,
                d.result.threshold,
                d.result.p_value,
            )
            details["window_values"] = d.n_current
        else:
            test, statistic, threshold, p_value = TEST, item.statistic, item.threshold, None
        ranked = sorted(
            drifting,
            key=lambda f: (
                windowed.get(f).result.p_value or 0.0  # type: ignore[union-attr]
                if windowed is not None and windowed.get(f) is not None
                else 1.0
            ),
        )
        text = (
            f"{self.settings.redis_prefix}\x1f{model}\x1f{version}\x1f{item.feature}\x1f"
            f"{c.state}\x1f{c.ts:.6f}\x1f{item.part}\x1f{item.n}"
        )
        return DriftAlert(
            event_id=hashlib.sha256(text.encode()).hexdigest()[:32],
            ts=datetime.fromtimestamp(c.ts, UTC),
            model=model,
            model_version=version,
            feature=item.feature,
            test=test,
            statistic=statistic,
            threshold=threshold,
            p_value=p_value,
            severity=("critical" if _strong(d) else "warning") if c.state == "drift" else "info",
            state=c.state,
            reference_version=label or None,
            top_features=ranked[:5] if c.state == "drift" else [],
            details=details,
        )

    def _status_row(
        self, model: str, version: str, state: dict[str, Any], alert: DriftAlert
    ) -> DriftStatusRow:
        episode = state["features"][alert.feature]["watch"]
        since = episode["since"] if episode["state"] == "drift" else None
        return DriftStatusRow(
            model=model,
            model_version=version,
            feature=alert.feature,
            test=alert.test,
            statistic=alert.statistic,
            threshold=alert.threshold,
            p_value=alert.p_value,
            drifted=episode["state"] == "drift",
            state="drift" if episode["state"] == "drift" else "ok",
            since=None if since is None else datetime.fromtimestamp(since, UTC),
            window_end=alert.ts,
            reference_version=alert.reference_version or "",
            n_current=int((alert.details or {}).get("window_values", 0)),
        )


def _strong(d: Any) -> bool:
    """Critical when the window's own test is far past its threshold."""
    if d is None:
        return False
    r = d.result
    return bool(
        (r.p_value is not None and r.p_value < 1e-4)
        or (r.p_value is None and r.statistic >= 2 * r.threshold)
    )


class Found(NamedTuple):
    """An episode boundary of one feature."""

    feature: str
    part: str  # the input partition whose detector decided it
    change: Change
    n: int  # the value's position in the feature's stream of that partition
    statistic: float  # the detector's statistic at the alarm (drift), or 0 (recovered)
    threshold: float
    details: dict[str, Any]


def _new_state() -> dict[str, Any]:
    return {
        "offsets": {},
        "ptime": {},
        "seen": {"n": 0, "first_ts": None, "last_ts": None},
        "features": {},
    }


def _advance(
    state: dict[str, Any],
    batch: Sequence[Row],
    calibrations: dict[str, dict[str, Any]],
) -> tuple[dict[str, Any], list[Found]]:
    """Apply the rows not applied before to every calibrated feature (pure: a new state)."""
    state = json.loads(json.dumps(state))
    offsets = state["offsets"]
    fresh = []
    for r in batch:
        if r.offset > offsets.get(r.tp, -1):
            fresh.append(r)
            offsets[r.tp] = r.offset
    if not fresh:
        return state, []
    seen = state["seen"]
    stamps = [r.ts for r in fresh]
    seen["n"] += len(fresh)
    lo, hi = min(stamps), max(stamps)
    seen["first_ts"] = lo if seen["first_ts"] is None else min(seen["first_ts"], lo)
    seen["last_ts"] = hi if seen["last_ts"] is None else max(seen["last_ts"], hi)
    ptime = state.setdefault("ptime", {})  # newest event time per input partition
    for r in fresh:
        if r.ts > ptime.get(r.tp, -math.inf):
            ptime[r.tp] = r.ts
    found: list[Found] = []
    features = state["features"]
    details: dict[str, Any]
    parts: dict[str, list[Row]] = {}
    for r in fresh:
        parts.setdefault(r.tp, []).append(r)
    for feature, entry in sorted(calibrations.items()):
        numeric = entry["calibration"]["kind"] == "numeric"
        mine = features.get(feature)
        if mine is not None and (
            mine["reference"] != entry["reference"] or mine["per_10k"] != entry["per_10k"]
        ):
            if mine["reference"] != entry["reference"]:
                if mine["watch"]["state"] == "drift":  # an operator set a new reference
                    at = float(fresh[0].ts)
                    change = Change("recovered", 0, at, _NEW_REFERENCE)
                    details = {"reason": f"new reference {entry['reference']}"}
                    found.append(Found(feature, "", change, int(seen["n"]), 0.0, 0.0, details))
                mine = None
            else:  # recalibrated to a lower rate: new detectors, the episode goes on
                mine["per_10k"] = entry["per_10k"]
                for part in mine["parts"].values():
                    part["watch"]["detector"] = None
        if mine is None:
            mine = {
                "reference": entry["reference"],
                "per_10k": entry["per_10k"],
                "watch": {"state": "ok", "since": None},
                "parts": {},
            }
        features[feature] = mine
        cal = Calibration.from_dict(entry["calibration"])
        for tp, part_rows in parts.items():
            values: list[Any] = []
            ts: list[float] = []
            for r in part_rows:
                v: Any = r.numeric.get(feature) if numeric else r.categorical.get(feature)
                if v is None or (numeric and not math.isfinite(v)):
                    continue
                values.append(v)
                ts.append(r.ts)
            if not values:
                continue
            part = mine["parts"].setdefault(tp, {"watch": new_watch(), "n": 0})
            part["watch"], changes = watch(part["watch"], cal, values, ts)
            for c in changes:
                # the feature drifts when one partition's detector alarms, and recovers
                # when the last drifting partition's return detector does, once every
                # partition has passed that point in event time (below)
                episode = mine["watch"]
                others = any(
                    q["watch"]["state"] == "drift" for t, q in mine["parts"].items() if t != tp
                )
                details = {
                    "detector": calibration.describe(c.alarm),
                    "false_alarms_per_10k": entry["per_10k"],
                    "partition": tp,
                }
                n = int(part["n"]) + c.pos
                if c.state == "drift":
                    mine["pending"] = None  # a pending recovery is no recovery
                    if episode["state"] == "ok":
                        mine["watch"] = {"state": "drift", "since": c.ts}
                        found.append(
                            Found(feature, tp, c, n, c.alarm.statistic, c.alarm.threshold, details)
                        )
                elif episode["state"] == "drift" and not others:
                    mine["pending"] = {
                        "tp": tp,
                        "ts": c.ts,
                        "n": n,
                        "statistic": c.alarm.statistic,
                        "threshold": c.alarm.threshold,
                        "details": details,
                        "alarm": [c.alarm.arm.family, c.alarm.arm.direction, c.alarm.arm.size],
                    }
            part["n"] = int(part["n"]) + len(values)
        pending = mine.get("pending")
        if (
            pending is not None
            and mine["watch"]["state"] == "drift"
            and not any(q["watch"]["state"] == "drift" for q in mine["parts"].values())
            and all(t >= pending["ts"] for t in state["ptime"].values())
        ):
            family, direction, size = pending["alarm"]
            alarm = Alarm(
                0, Arm(family, direction, size), pending["statistic"], pending["threshold"]
            )
            change = Change("recovered", 0, pending["ts"], alarm)
            found.append(
                Found(
                    feature,
                    pending["tp"],
                    change,
                    pending["n"],
                    pending["statistic"],
                    pending["threshold"],
                    pending["details"],
                )
            )
            mine["watch"] = {"state": "ok", "since": pending["ts"]}
            mine["pending"] = None
    return state, found


#: The "alarm" of an episode ended by a new reference.
_NEW_REFERENCE = Alarm(0, Arm("reference", "none", 0.0), 0.0, 0.0)


def _record(session: Session, alerts: list[DriftAlert], rows: list[DriftStatusRow]) -> None:
    for alert in alerts:
        save_drift_alert(session, alert)
    for row in rows:
        session.merge(row)
    session.commit()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
