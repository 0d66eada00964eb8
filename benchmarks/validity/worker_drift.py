"""The stream worker's concept-drift episodes (docs/drift.md): what they promise, measured.

The pure path the worker runs per (model version, stream)
(:func:`govloop.streams.concept.advance`: a reference period, a calibrated
binary detector, episodes with a return detector), on seeded Bernoulli
streams fed in batches of 1,000 as the worker does.  The detector's share of
the budget is the one a fleet of 10 detectors with a 30-day budget gives a
stream of 2.5 outcomes per second (``Budget(30).per_10k(10, 2.5)``).

* no-change streams: false ``drift`` episodes per outcome after the reference
  period, at most the detector's calibrated rate;
* a 10 % -> 15 % rise: the share of streams that raise a ``drift`` alert
  within 20,000 outcomes of the change, and of those the share whose episode
  is still open at the end (no false recovery, no adoption of the new level).
"""

from __future__ import annotations

import numpy as np
from _rows import Row, rate_at_least, rate_at_most

from govloop.streams.calibration import Budget
from govloop.streams.concept import advance

AREA = "concept drift (worker)"
REFERENCE = 5000  # GOVLOOP_CONCEPT_REFERENCE_OUTCOMES' default
AFTER = 20000
BATCH = 1000
PER_10K = Budget(30.0).per_10k(10, 2.5)


def _run(p: np.ndarray, seed: int) -> list[tuple[str, int]]:
    rng = np.random.default_rng(seed)
    x = (rng.random(p.size) < p).astype(float)
    ts = np.arange(x.size) * 0.4
    state = None
    found: list[tuple[str, int]] = []
    for i in range(0, x.size, BATCH):
        state, changes = advance(
            state,
            x[i : i + BATCH].tolist(),
            ts[i : i + BATCH].tolist(),
            REFERENCE,
            lambda _: PER_10K,
        )
        found += [(f.change.state, f.n) for f in changes]
    return found


def rows(quick: bool) -> list[Row]:
    streams = 30 if quick else 300
    null = np.full(REFERENCE + AFTER, 0.1)
    false = sum(sum(1 for s, _ in _run(null, 10_000 + i) if s == "drift") for i in range(streams))
    rise = np.repeat([0.1, 0.15], [REFERENCE, AFTER])
    caught = still_open = 0
    for i in range(streams):
        found = _run(rise, 20_000 + i)
        drifts = [n for s, n in found if s == "drift"]
        if drifts:
            caught += 1
            still_open += found[-1][0] == "drift" and len(drifts) == 1
    how = f"{streams} seeded streams, batches of {BATCH:,}, {PER_10K:.3g} per 10k"
    return [
        rate_at_most(
            AREA,
            f"false drift episodes per outcome, no change (10 %), {AFTER:,} outcomes "
            f"after a {REFERENCE:,}-outcome reference",
            PER_10K / 1e4,
            false,
            streams * AFTER,
            how,
        ),
        rate_at_least(
            AREA,
            f"10 % -> 15 % error rise raises a drift alert within {AFTER:,} outcomes",
            0.99,
            caught,
            streams,
            how,
        ),
        rate_at_least(
            AREA,
            "10 % -> 15 %: the episode stays open while the rate stays up (one alert, "
            "no recovery, the drifted level never adopted)",
            0.99,
            still_open,
            max(caught, 1),
            how,
        ),
    ]
