"""The worker's side of the calibrated detectors: budget, calibration cache, state as JSON.

The detectors are :func:`govloop.stats.calibrated`'s: calibrated by
simulation against a reference to a false-alarm rate per 10,000 values,
River's contract (``update_many`` returns the positions of alarms), and a
JSON-serialisable calibration and state.  This module is the one place the
stream worker calls them:

* :class:`Budget` turns the deployment's one budget (``drift_false_alarm_days``:
  expected days between false alerts over the whole fleet) into each
  detector's rate per 10,000 values (:func:`govloop.stats.episodes.false_alarms_per_10k`),
  on a grid of powers of two so that calibrations are shared and a detector
  is recalibrated only when the fleet or its traffic has grown enough to
  halve its rate;
* :func:`calibrate` calibrates (once per reference and rate in a process:
  it simulates) and returns the calibration as JSON data, stored in Redis
  beside the detector's state (``CalibratedDetector.state()``);
  :func:`detector` rebuilds the detector from both.

Calibration is deterministic (a fixed seed), so two workers that calibrate
the same reference at the same rate build the same detector.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from govloop.stats.calibrated import Alarm, CalibratedDetector, Calibration
from govloop.stats.calibrated import calibrate as simulate
from govloop.stats.episodes import false_alarms_per_10k, on_grid

__all__ = ["MAX_PER_10K", "MIN_PER_10K", "Budget", "Kind", "calibrate", "describe", "detector"]

Kind = Literal["numeric", "categorical", "binary"]

#: The lowest rate a detector is calibrated to (per 10,000 values); a fleet whose budget
#: asks for less gets this, and more false alerts than its budget (`govloop drift status`
#: shows the rate in force).
MIN_PER_10K = 1e-5
#: The highest: one false alarm per 10,000 values.
MAX_PER_10K = 1.0

#: Calibrations kept in a process (each a few kB).
CACHE_SIZE = 512


@dataclass(frozen=True)
class Budget:
    """The fleet's false-alarm budget: one false alert every ``days`` days, all detectors."""

    days: float

    def per_10k(self, detectors: int, events_per_second: float) -> float:
        """The rate per 10,000 values of a detector seeing ``events_per_second``, on the grid.

        >>> Budget(30.0).per_10k(10, 2.5)
        0.0001220703125
        >>> Budget(30.0).per_10k(1, 0.001)
        1.0
        """
        raw = false_alarms_per_10k(self.days, max(detectors, 1), max(events_per_second, 1e-9))
        return on_grid(min(max(raw, MIN_PER_10K), MAX_PER_10K))


_cache: OrderedDict[str, dict[str, Any]] = OrderedDict()


def calibrate(kind: Kind, reference: Sequence[Any] | np.ndarray, per_10k: float) -> dict[str, Any]:
    """A calibration on ``reference`` at ``per_10k``, as JSON data (simulated once per process).

    Deterministic (seed 0): any worker calibrating the same reference at the
    same rate gets the same thresholds.
    """
    values = reference.tolist() if isinstance(reference, np.ndarray) else list(reference)
    digest = hashlib.sha256(
        json.dumps([kind, per_10k, values], separators=(",", ":")).encode()
    ).hexdigest()
    saved = _cache.get(digest)
    if saved is None:
        saved = _cache[digest] = simulate(values, kind, per_10k, seed=0).to_dict()
        if len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    _cache.move_to_end(digest)
    return saved


def detector(calibration: dict[str, Any], state: dict[str, Any] | None) -> CalibratedDetector:
    """The detector of a stored calibration, fresh (``state`` None) or where it was."""
    return Calibration.from_dict(calibration).detector(state)


def describe(alarm: Alarm) -> dict[str, Any]:
    """What fired, as JSON data for an alert's details."""
    arm = alarm.arm
    return {
        "arm": arm.describe(),
        "family": arm.family,
        "direction": arm.direction,
        "size": arm.size,
        "category": arm.category,
        "statistic": alarm.statistic,
        "threshold": alarm.threshold,
    }
