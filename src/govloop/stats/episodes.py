"""Error-rate episodes: ADWIN with hysteresis, one alert when a rate rises and one when it is back.

Pure: plain data in and out, so the stream worker keeps the state anywhere
(Redis, see :mod:`govloop.streams.concept`) and the same outcomes always give
the same episodes, however they are cut into batches.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

from govloop.stats.adwin import ADWIN

__all__ = ["MIN_CONFIRM", "Change", "advance"]


class Change(NamedTuple):
    """An episode boundary found by :func:`advance`."""

    state: Literal["drift", "recovered"]
    ts: float  # event time of the outcome at which ADWIN cut
    rate: float  # the rate after the cut
    threshold: float  # drift: the rate before; recovered: the recovery level


#: Fewest outcomes after a downward cut that confirm a recovery.
MIN_CONFIRM = 50


def _new_state(delta: float) -> dict[str, Any]:
    return {
        "adwin": ADWIN(delta=delta).to_dict(),
        "state": "ok",
        "since": None,
        "before": None,
        "rate": None,
        "measured": False,
        "pending": None,
        "n": 0,
        "last_ts": None,
    }


def advance(
    state: dict[str, Any] | None,
    values: Sequence[float],
    ts: Sequence[float],
    delta: float,
    min_rise: float = 0.0,
) -> tuple[dict[str, Any], list[Change]]:
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
            detector.update_many(segment[: hit + 1])
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
                    change = _confirm(new, detector.estimation, detector.width, float(ts[end - 1]))
        if change is not None:
            changes.append(change)
    new["adwin"] = detector.to_dict()
    new["n"] = int(new["n"]) + int(x.size)
    if x.size:
        newest = float(max(ts))
        new["last_ts"] = newest if new["last_ts"] is None else max(new["last_ts"], newest)
    return new, changes


def _cut(
    state: dict[str, Any], before: float, after: float, kept: int, at: float, min_rise: float
) -> Change | None:
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
            state.update(
                state="drift", since=at, before=before, rate=after, measured=False, pending=check
            )
            return Change("drift", at, after, before)
        state["before"] = after  # improved: the new baseline, silently
        return None
    if not state["measured"]:
        state.update(rate=before, measured=True)
    # the new regime is checked once it has max(kept, MIN_CONFIRM) outcomes: a recovery
    # after a downward cut is dated at the cut, one after an upward cut when it is seen
    state["pending"] = {
        "ts": None if after > before else at,
        "need": max(kept, MIN_CONFIRM),
        "seen": 0,
    }
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
