"""Drift episodes over calibrated detectors, and the fleet's false-alarm budget.

Pure: plain data in and out, so the stream worker keeps the state anywhere
(Redis, see :mod:`govloop.streams.concept` and :mod:`govloop.streams.detectors`)
and the same values always give the same episodes, however they are cut into
batches.

A detector (:func:`govloop.stats.calibrated`) is calibrated on a reference
and stays calibrated on it: it is never re-fitted to what it sees, so an
episode never adopts a drifted level as the new normal.  Only an operator
(``govloop drift reference set``) changes the reference.

Episodes, one alert each (hysteresis), by :func:`watch`:

* ``ok`` -> ``drift`` at the first alarm of the reference's detector.  Alert
  ``state="drift"`` dated at the value that raised it, with the
  :class:`~govloop.stats.calibrated.Alarm` (the arm that fired).
* While ``drift``, the reference's detector runs on (restarting after each
  alarm); its alarms are silent.  A second detector watches for the return
  (:func:`recovery_calibration`): one arm, the opposite of the one that
  fired, against the drifted regime that arm stands for at half its size.
  Its log-likelihood ratio grows when the values look like the reference
  rather than the drifted regime, and falls while they stay drifted.
* ``drift`` -> ``ok`` when the return detector alarms.  Alert
  ``state="recovered"``, dated at that value.

The return detector's threshold is the reference detector's for the arm of
that family, direction and half size (its own if there is none), so a false
recovery on a stream that stays drifted by at least a quarter of the fired
arm's size is about as rare as a false alarm.

The fleet's budget (:func:`false_alarms_per_10k`) is one expected time
between false alerts for the whole deployment, shared equally by its
detectors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from govloop.stats.calibrated import Alarm, Arm, Calibration

__all__ = [
    "Change",
    "false_alarms_per_10k",
    "new_watch",
    "on_grid",
    "recovery_calibration",
    "watch",
]


class Change(NamedTuple):
    """An episode boundary found by :func:`watch`."""

    state: Literal["drift", "recovered"]
    pos: int  # position in the batch of the value that decided it
    ts: float  # its event time
    alarm: Alarm  # what fired: the reference's detector (drift) or the return detector


def new_watch() -> dict[str, Any]:
    """The state of a detector that has seen nothing: ``ok``, no values."""
    return {
        "detector": None,
        "back": None,
        "state": "ok",
        "since": None,
        "n": 0,
        "last_ts": None,
    }


def recovery_calibration(calibration: Calibration, alarm: Alarm) -> Calibration:
    """The return detector of an episode: the fired arm reversed, from half-way to the drift.

    >>> import numpy as np
    >>> from govloop.stats.calibrated import calibrate
    >>> cal = calibrate(np.random.default_rng(0).normal(0, 1, 1000), "numeric")
    >>> fired = Alarm(0, Arm("mean", "up", 0.8), 20.0, 10.0)
    >>> back = recovery_calibration(cal, fired)
    >>> back.arms[0].describe(), round(back.center - cal.center, 3) == round(0.4 * cal.scale, 3)
    ('mean down by 0.4 sd', True)
    """
    arm = alarm.arm
    half = arm.size / 2
    sign = 1.0 if arm.direction == "up" else -1.0
    back = Arm(arm.family, "down" if arm.direction == "up" else "up", half, arm.category)
    thresholds = dict(zip(calibration.arms, calibration.thresholds, strict=True))
    h = thresholds.get(Arm(arm.family, arm.direction, half, arm.category), alarm.threshold)
    center, scale, shares = calibration.center, calibration.scale, calibration.shares
    if arm.family == "mean":
        center = center + sign * half * scale
    elif arm.family == "spread":
        scale = scale * math.exp(sign * half)
    else:  # share of a category, or the rate of a binary stream: its log-odds move
        k = 1 if arm.family == "rate" else calibration.categories.index(arm.category or "")
        p = list(shares)
        moved = 1.0 / (1.0 + (1.0 - p[k]) / p[k] * math.exp(-sign * half))
        rest = (1.0 - moved) / (1.0 - p[k])
        shares = tuple(moved if i == k else q * rest for i, q in enumerate(p))
    return Calibration(
        kind=calibration.kind,
        false_alarms_per_10k=calibration.false_alarms_per_10k,
        seed=calibration.seed,
        n_reference=calibration.n_reference,
        center=center,
        scale=scale,
        categories=calibration.categories,
        shares=shares,
        arms=(back,),
        thresholds=(h,),
    )


def watch(
    state: dict[str, Any] | None,
    calibration: Calibration,
    values: Sequence[Any],
    ts: Sequence[float],
    directions: Sequence[str] = ("up", "down"),
) -> tuple[dict[str, Any], list[Change]]:
    """Feed one detector's values (in stream order); return its new state and the changes.

    ``state`` (as stored, or None; not modified) holds ``detector`` (the
    reference detector's ``state()``), ``back`` (while drifting, the return
    detector's calibration and state), ``state`` (``"ok"`` or ``"drift"``),
    ``since`` (event time it began), ``n`` (values seen) and ``last_ts``.
    Alarms of arms in other ``directions`` are ignored (an error rate that
    falls is no drift).  Independent of how the stream is cut into batches.

    A mean shift of 1 sd at value 2000, back at 4000:

    >>> import numpy as np
    >>> from govloop.stats.calibrated import calibrate
    >>> rng = np.random.default_rng(2)
    >>> cal = calibrate(rng.normal(0, 1, 1000), "numeric")
    >>> x = rng.normal(np.repeat([0.0, 1.0, 0.0], 2000), 1.0)
    >>> state, changes = watch(None, cal, x.tolist(), list(range(6000)))
    >>> [(c.state, c.pos) for c in changes], state["state"]
    ([('drift', 2028), ('recovered', 4228)], 'ok')
    """
    new = dict(state) if state is not None else new_watch()
    if len(values) != len(ts):
        raise ValueError(f"{len(values)} values but {len(ts)} timestamps")
    detector = calibration.detector(new["detector"])
    fired = [a for a in detector.detect(values) if a.arm.direction in directions]
    new["detector"] = detector.state()
    changes: list[Change] = []
    pos, i = 0, 0
    while pos < len(values):
        if new["state"] == "ok":
            while i < len(fired) and fired[i].index < pos:
                i += 1  # alarms inside the episode that just ended: silent
            if i == len(fired):
                break
            alarm = fired[i]
            at = float(ts[alarm.index])
            back = recovery_calibration(calibration, alarm)
            new.update(state="drift", since=at, back={"calibration": back.to_dict(), "state": None})
            changes.append(Change("drift", alarm.index, at, alarm))
            pos = alarm.index + 1
        else:
            kept = new["back"]
            back_detector = Calibration.from_dict(kept["calibration"]).detector(kept["state"])
            hits = back_detector.detect(values[pos:])
            if not hits:
                new["back"] = {**kept, "state": back_detector.state()}
                break
            r = pos + hits[0].index
            at = float(ts[r])
            new.update(state="ok", since=at, back=None)
            hit = hits[0]
            changes.append(
                Change("recovered", r, at, Alarm(r, hit.arm, hit.statistic, hit.threshold))
            )
            pos = r + 1
    new["n"] = int(new["n"]) + len(values)
    if len(ts):
        newest = float(max(ts))
        new["last_ts"] = newest if new["last_ts"] is None else max(new["last_ts"], newest)
    return new, changes


def false_alarms_per_10k(days: float, detectors: int, events_per_second: float) -> float:
    """One detector's false-alarm rate (per 10,000 of its values) that meets the fleet's budget.

    The budget is one false alert every ``days`` days for the whole
    deployment.  Shared equally by ``detectors`` detectors, each may raise
    one every ``days * detectors`` days; one that sees ``events_per_second``
    values per second (event time) sees ``days * detectors * 86400 *
    events_per_second`` values in that time, so its rate per value is the
    inverse.  Assumes the detectors' false alarms are roughly independent
    and their rates steady (a detector's false alarms per unit of time grow
    with its traffic).

    >>> round(false_alarms_per_10k(30.0, 10, 2.5), 6)
    0.000154
    """
    if days <= 0 or detectors < 1 or events_per_second <= 0:
        raise ValueError("days and events_per_second must be positive, detectors at least 1")
    return 1e4 / (days * 86400.0 * detectors * events_per_second)


def on_grid(rate: float) -> float:
    """``rate`` rounded down to a power of two, so calibrations are shared and rarely redone.

    >>> on_grid(0.000154), on_grid(1.0), on_grid(0.7)
    (0.0001220703125, 1.0, 0.5)
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    return float(2.0 ** math.floor(math.log2(rate)))
