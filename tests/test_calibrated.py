"""Calibrated CUSUM banks: the stated false-alarm rate on fresh null streams, detection of
each kind of shift, River's contract (update_many == update), state round trips, bad input.

Pure and seeded.  The rate checks use fresh references and fresh streams drawn from the
distribution the reference came from (not the reference itself), so the reference's own
sampling error is part of what is checked.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import poisson

from govloop.stats import calibrate, calibrated
from govloop.stats.calibrated import MAX_CATEGORIES, OTHER, CalibratedDetector, Calibration

LETTERS = np.array(list("abc"))


def _null_count_bound(rate_per_10k: float, events: int) -> int:
    """Most false alarms a calibrated detector may raise in ``events``: the 99.9 % Poisson
    quantile at 1.25x the stated rate.  A detector at twice the rate fails it surely."""
    return int(poisson.ppf(0.999, 1.25 * rate_per_10k * events / 1e4))


def _false_alarms(
    kind: str, draw, references: int, events: int, rate: float = 1.0, size: int = 1000
) -> int:
    total = 0
    for i in range(references):
        rng = np.random.default_rng([41, i])
        detector = calibrated(draw(rng, size), kind, false_alarms_per_10k=rate, seed=i)
        total += detector.update_many(draw(rng, events)).size
    return total


@pytest.mark.parametrize(
    ("kind", "draw"),
    [
        ("numeric", lambda rng, n: rng.normal(3.0, 2.0, n)),
        ("numeric", lambda rng, n: rng.exponential(1.0, n)),  # skewed: the bootstrap's job
        ("binary", lambda rng, n: rng.random(n) < 0.1),
        ("categorical", lambda rng, n: LETTERS[rng.choice(3, n, p=[0.5, 0.3, 0.2])]),
    ],
    ids=["normal", "exponential", "binary", "categorical"],
)
def test_rate_holds_on_fresh_null_streams(kind: str, draw) -> None:
    references, events = 4, 250_000
    found = _false_alarms(kind, draw, references, events)
    bound = _null_count_bound(1.0, references * events)
    assert found <= bound, f"{found} false alarms in {references * events:,} events"
    assert found >= 10, "a detector that never alarms is not calibrated either"


def test_lower_rate_is_extrapolated_and_holds() -> None:
    # 0.1 per 10k is too rare to see in the calibration's simulation: extrapolated
    references, events = 2, 1_000_000
    found = _false_alarms("numeric", lambda rng, n: rng.normal(0, 1, n), references, events, 0.1)
    assert found <= _null_count_bound(0.1, references * events)


SHIFTS = {
    "mean up": ("numeric", lambda rng, n: rng.normal(0.5, 1.0, n), ("mean", "up")),
    "mean down": ("numeric", lambda rng, n: rng.normal(-0.5, 1.0, n), ("mean", "down")),
    "spread up": ("numeric", lambda rng, n: rng.normal(0.0, 1.5, n), ("spread", "up")),
    "spread down": ("numeric", lambda rng, n: rng.normal(0.0, 0.6, n), ("spread", "down")),
    "rate up": ("binary", lambda rng, n: rng.random(n) < 0.15, ("rate", "up")),
    "rate down": ("binary", lambda rng, n: rng.random(n) < 0.05, ("rate", "down")),
}
NULL = {
    "numeric": lambda rng, n: rng.normal(0.0, 1.0, n),
    "binary": lambda rng, n: rng.random(n) < 0.1,
}


@pytest.mark.parametrize("shift", list(SHIFTS))
def test_detects_each_kind_of_shift(shift: str) -> None:
    kind, after, (family, direction) = SHIFTS[shift]
    rng = np.random.default_rng(7)
    detector = calibrated(NULL[kind](rng, 2000), kind)
    delays, fired = [], []
    for _ in range(10):
        detector = detector.clone()
        alarms = detector.detect(after(rng, 3000))
        assert alarms, f"{shift} missed"
        delays.append(alarms[0].index + 1)
        fired.append((alarms[0].arm.family, alarms[0].arm.direction))
    assert float(np.median(delays)) < 1000
    # a wider spread also throws values far out, which a large mean arm can catch first
    expected = [(family, direction)] + (
        [("mean", "up"), ("mean", "down")] if shift == "spread up" else []
    )
    assert sum(f in expected for f in fired) >= 8, fired
    assert fired.count((family, direction)) >= 5, fired


@pytest.mark.parametrize("direction", ["up", "down"])
def test_detects_a_category_share_moving(direction: str) -> None:
    rng = np.random.default_rng(11)
    detector = calibrated(LETTERS[rng.choice(3, 2000, p=[0.5, 0.3, 0.2])], "categorical")
    after = [0.4, 0.25, 0.35] if direction == "up" else [0.55, 0.35, 0.1]
    alarms = detector.detect(LETTERS[rng.choice(3, 5000, p=after)])
    assert alarms and alarms[0].index < 1000
    assert alarms[0].arm.family == "share"
    assert (alarms[0].arm.category, alarms[0].arm.direction) == ("c", direction)


def _streams() -> dict[str, tuple[Calibration, list]]:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 1, 3000), rng.normal(0.8, 1, 3000)])
    b = np.concatenate([rng.random(3000) < 0.1, rng.random(3000) < 0.3]).astype(int)
    c = LETTERS[np.concatenate([rng.choice(3, 3000), rng.choice(3, 3000, p=[0.6, 0.2, 0.2])])]
    return {
        "numeric": (calibrate(x[:1000], "numeric", 20.0), x.tolist()),
        "binary": (calibrate(b[:1000], "binary", 20.0), b.tolist()),
        "categorical": (calibrate(c[:1000], "categorical", 20.0), [*c.tolist(), "new"]),
    }


@pytest.mark.parametrize("kind", ["numeric", "binary", "categorical"])
def test_update_many_equals_update(kind: str) -> None:
    calibration, values = _streams()[kind]
    one = calibration.detector()
    singles = []
    for i, v in enumerate(values):
        one.update(v)
        if one.drift_detected:
            singles.append(i)
    batch = calibration.detector()
    found = batch.update_many(values[:777]).tolist()
    found += [777 + i for i in batch.update_many(values[777:]).tolist()]
    assert len(singles) >= 3  # the comparison covers restarts
    assert found == singles
    assert one.state() == batch.state()
    assert one.last_alarm is not None and batch.last_alarm is not None
    assert one.last_alarm.arm == batch.last_alarm.arm
    assert one.last_alarm.statistic == batch.last_alarm.statistic


@pytest.mark.parametrize("kind", ["numeric", "binary", "categorical"])
def test_state_round_trip(kind: str) -> None:
    calibration, values = _streams()[kind]
    straight = calibration.detector()
    expected = straight.update_many(values).tolist()
    stored = json.dumps(calibration.to_dict())
    detector, found, start = calibration.detector(), [], 0
    for stop in (500, 2999, 3001, 4200, len(values)):  # a restore between every batch
        found += [start + i for i in detector.update_many(values[start:stop]).tolist()]
        state = json.loads(json.dumps(detector.state()))
        detector = Calibration.from_dict(json.loads(stored)).detector(state=state)
        start = stop
    assert found == expected
    assert detector.state() == straight.state()


def test_many_categories_fold_into_other() -> None:
    rng = np.random.default_rng(5)
    ranks = np.arange(1, 301)
    p = ranks**-1.1 / np.sum(ranks**-1.1)  # 300 Zipf categories
    labels = np.array([f"v{i}" for i in ranks])
    calibration = calibrate(labels[rng.choice(300, 5000, p=p)], "categorical")
    assert len(calibration.categories) == MAX_CATEGORIES + 1
    assert calibration.categories[-1] == OTHER
    assert calibration.categories[:3] == ("v1", "v2", "v3")
    detector = calibration.detector()
    found = detector.update_many(labels[rng.choice(300, 200_000, p=p)]).size
    assert found <= 2 * _null_count_bound(1.0, 200_000)  # one reference: its error is in here
    # the tail (folded) gets twice its share: found through OTHER
    q = p.copy()
    q[MAX_CATEGORIES:] *= 2
    q /= q.sum()
    alarms = calibration.detector().detect(labels[rng.choice(300, 5000, p=q)])
    assert alarms and alarms[0].index < 1500
    assert alarms[0].arm.category in (OTHER, "v1")  # v1 falls as the tail rises
    assert calibration.detector().detect(["never seen"] * 40)  # unseen values: a new category


@pytest.mark.parametrize("p", [0.005, 0.995])
def test_binary_near_zero_and_one(p: float) -> None:
    # the rate is promised averaged over the reference's sampling error, so over references
    # of 5,000 (one can hold half the true rate, and then a rise is no false alarm)
    references, events = 8, 100_000
    found = _false_alarms("binary", lambda rng, n: rng.random(n) < p, references, events, size=5000)
    assert found <= _null_count_bound(1.0, references * events), found
    rng = np.random.default_rng(9)
    calibration = calibrate(rng.random(5000) < p, "binary")
    assert all(math.isfinite(h) and h > 0 for h in calibration.thresholds)
    moved = 3 * p if p < 0.5 else 1 - 3 * (1 - p)
    alarms = calibration.detector().detect(rng.random(20_000) < moved)
    assert alarms and alarms[0].index < 5000
    assert alarms[0].arm.direction == ("up" if p < 0.5 else "down")


@pytest.mark.parametrize(
    ("reference", "kind", "rate", "message"),
    [
        ([], "numeric", 1.0, "at least 2 values"),
        ([], "categorical", 1.0, "at least 2 values"),
        ([1.0, 2.0], "ordinal", 1.0, "kind must be one of"),
        ([1.0, math.nan, 2.0], "numeric", 1.0, "NaN or infinite"),
        ([1.0, math.inf, 2.0], "numeric", 1.0, "NaN or infinite"),
        ([2.0, 2.0, 2.0], "numeric", 1.0, "no spread"),
        ([0, 1, 2], "binary", 1.0, "only 0 and 1"),
        ([1.0, 2.0], "numeric", 0.0, "false_alarms_per_10k"),
        ([1.0, 2.0], "numeric", math.nan, "false_alarms_per_10k"),
    ],
)
def test_bad_arguments(reference, kind: str, rate: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        calibrate(reference, kind, rate)


def test_bad_stream_values() -> None:
    detector = calibrated(np.random.default_rng(0).normal(size=500), "numeric")
    with pytest.raises(ValueError, match="finite"):
        detector.update(math.nan)
    with pytest.raises(ValueError, match="finite"):
        detector.update_many([0.0, math.inf])
    binary = calibrated([0, 1] * 200, "binary")
    with pytest.raises(ValueError, match="0 or 1"):
        binary.update(2)


def test_state_of_another_calibration_is_refused() -> None:
    numeric = calibrated(np.random.default_rng(0).normal(size=500), "numeric")
    binary = calibrate([0, 1] * 200, "binary")
    with pytest.raises(ValueError, match="arms"):
        binary.detector(state=numeric.state())


def test_calibration_is_deterministic_and_fast_enough() -> None:
    reference = np.random.default_rng(2).normal(size=1000)
    assert calibrate(reference, "numeric", seed=4) == calibrate(reference, "numeric", seed=4)
    detector = calibrated(reference, "numeric")
    assert isinstance(detector, CalibratedDetector)
    assert repr(detector.clone()) == repr(detector)
