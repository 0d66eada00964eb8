"""ADWIN: an adaptive window that drops its past when the mean changes.

Bifet & Gavaldà (2007), the ADWIN2 variant with exponential-histogram buckets,
with River's parameters, defaults and cut test (``river.drift.ADWIN``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from govloop.stats.detector import DriftDetector, FloatArray

__all__ = ["ADWIN"]

IntArray = NDArray[np.int64]


def _layout(ends: IntArray, max_buckets: int) -> IntArray:
    """Bucket boundaries of the histogram after ``ends[t]`` insertions, oldest first.

    A new value enters row 0 as a bucket of size 1; when the row of buckets
    of size 2**r holds ``M + 1`` of them (M = ``max_buckets``), its two oldest
    merge into one bucket of row r + 1.  So ``a`` buckets arriving in a row
    send ``max(0, (a - M + 1) // 2)`` on, and by induction row r receives
    ``a_r = max(0, (n - (M - 1) * (2**r - 1)) >> r)`` of ``n`` insertions and
    keeps ``a_r - 2 a_{r+1}``.  Its buckets cover positions ``a_{r+1} 2**(r+1)``
    to ``a_r 2**r`` (counted from the oldest value): the layout is a function
    of the count alone.

    Returns positions (the number of values older than the boundary) of
    shape ``(len(ends), rows * M)``, one slot per possible bucket end; a slot
    with no bucket repeats its row's last boundary, so each row of positions
    is sorted and holds only boundaries, 0 and ``ends[t]``.
    """
    top = int(ends.max())
    rows = 1
    while (top - (max_buckets - 1) * ((1 << rows) - 1)) >> rows > 0:
        rows += 1
    shift = np.arange(rows, -1, -1, dtype=np.int64)  # the oldest row first, then a_0 = n
    arrivals = (ends[:, None] - (max_buckets - 1) * ((1 << shift) - 1)) >> shift
    row_end = np.maximum(arrivals, 0) << shift  # a_r 2**r; column 0 is 0
    k = np.arange(1, max_buckets + 1, dtype=np.int64)
    pos = row_end[:, :-1, None] + (k << shift[1:, None])
    np.minimum(pos, row_end[:, 1:, None], out=pos)
    return pos.reshape(len(ends), -1)


def _continue(stored: FloatArray, values: FloatArray) -> FloatArray:
    """``stored`` then the running sums of ``values``, continued from its last entry."""
    return np.concatenate((stored[:-1], np.cumsum(np.concatenate((stored[-1:], values)))))


class ADWIN(DriftDetector):
    r"""ADaptive WINdowing change detector (Bifet & Gavaldà 2007).

    ADWIN keeps the longest recent window whose mean looks stationary.  Every
    ``clock`` observations it tries each bucket boundary as a cut into an
    older part W0 (n0 values) and a newer part W1 (n1 values), and signals
    drift when their means differ by more than

    .. math::

        \epsilon = \sqrt{2 m \sigma^2 \delta'} + \tfrac{2}{3} m \delta',\quad
        m = \tfrac{1}{n_0 - L + 1} + \tfrac{1}{n_1 - L + 1},\quad
        \delta' = \ln\tfrac{2 \ln W}{\delta}

    with sigma^2 the variance of the whole window of width W and L
    ``min_window_length`` (River's variance-based bound).  On a detection the
    oldest buckets are dropped until no cut fires (``width`` and
    ``estimation`` then describe the shortened window), and the next
    observation resets the detector, as River does.  ``variance`` is the window's
    variance (River's ``variance`` is the sum of squared deviations).

    The window is an exponential histogram: at most ``max_buckets`` buckets of
    each size 1, 2, 4, ..., so memory is O(max_buckets * log W).  A bucket is
    kept as two running sums at its boundary (of ``x - x0`` and of its square,
    ``x0`` the first value after a reset), so any cut's means are one
    subtraction away.

    Observations are inserted ``clock`` at a time: ``update`` buffers them and
    inserts and checks when the ``clock``-th arrives.  Since the cut check only
    runs at those ticks anyway, the detections are River's (same ticks, same
    buckets, same bound; floating-point rounding may differ), and
    ``update_many`` checks many ticks at once with numpy.  ``width``,
    ``estimation`` and ``variance`` include the buffered observations.

    Parameters
    ----------
    delta
        Confidence of the cut test: smaller means fewer false alarms and later
        detections.  The bound is conservative, so ``delta`` is not the
        false-alarm rate.  Measured on no-change streams (20 seeded streams
        of 1,000,000 values; ``tests/test_detectors.py`` re-checks a sample):
        0.002 gave 3 false alarms in 20 million Bernoulli(0.1) values and 5 in
        20 million N(0, 1) values, about one per 5 million (0.002 per
        10,000); 0.01 gave 10 and 55; 0.05 gave 81 and 392 (0.04 and 0.2 per
        10,000).
    clock
        Observations between cut checks.
    max_buckets
        Buckets of each size kept before the two oldest merge (M).
    min_window_length
        Smallest W0 and W1 a cut may leave.
    grace_period
        No check before the window holds more than this many observations.

    Examples
    --------
    An error stream whose error rate goes from 10% to 40% at index 1000:

    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> errors = np.concatenate([rng.random(1000) < 0.1, rng.random(1000) < 0.4])
    >>> detector = ADWIN()
    >>> detector.update_many(errors).tolist()
    [1055]

    One value at a time gives the same answer.  At the detection the window
    has been cut back to its last 416 values (River's ADWIN reports the same
    width and mean); the 640 older values it dropped (``dropped``) had a mean
    of 0.09, so the error rate went up:

    >>> detector = ADWIN()
    >>> for i, x in enumerate(errors):
    ...     detector.update(x)
    ...     if detector.drift_detected:
    ...         n, mean = detector.dropped
    ...         print(i, detector.width, round(detector.estimation, 2), n, round(mean, 2))
    1055 416 0.17 640 0.09

    The state is plain data (:meth:`to_dict`), so a detector can be stored
    between batches and restored elsewhere; the restored one carries on as if
    it had never stopped:

    >>> import json
    >>> detector = ADWIN()
    >>> detector.update_many(errors[:700]).tolist()
    []
    >>> restored = ADWIN.from_dict(json.loads(json.dumps(detector.to_dict())))
    >>> restored.update_many(errors[700:1056]).tolist()  # 355 + 700 = 1055
    [355]
    >>> restored.width, round(restored.estimation, 2)
    (416, 0.17)
    """

    #: Values per numpy pass: 128 ticks x ~85 buckets keeps the arrays in cache
    #: (measured: 4096 is ~1.7x faster per event than 65536).
    _max_batch = 4096

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), not {delta}")
        if clock < 1 or max_buckets < 1 or min_window_length < 1:
            raise ValueError("clock, max_buckets and min_window_length must be >= 1")
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._pending: list[float] = []  # fewer than `clock` values not yet inserted
        self._shift = 0.0
        self._pos: IntArray = np.zeros(1, dtype=np.int64)  # bucket boundaries, oldest first
        self._psum: FloatArray = np.zeros(1)  # sum of (x - shift) before each boundary
        self._psq: FloatArray = np.zeros(1)  # sum of (x - shift) ** 2 before each boundary
        self._dropped: tuple[int, float] = (0, 0.0)  # width and mean cut off at a detection

    # -- state as plain data ----------------------------------------------------

    #: Tag of the :meth:`to_dict` layout; :meth:`from_dict` refuses any other.
    _FORMAT = "govloop.adwin/1"

    def to_dict(self) -> dict[str, Any]:
        """The parameters and the whole state as JSON-ready plain data.

        Floats are kept as Python floats, which JSON writes and reads back
        bit for bit (``repr`` round-trips), so :meth:`from_dict` restores a
        detector that makes exactly the detections and estimates this one
        would.  Its size is O(``max_buckets`` * log W), like the detector.
        """
        return {
            "format": self._FORMAT,
            "params": self._params(),
            "drift_detected": self._drift_detected,
            "pending": list(self._pending),
            "shift": self._shift,
            "pos": self._pos.tolist(),
            "psum": self._psum.tolist(),
            "psq": self._psq.tolist(),
            "dropped": list(self._dropped),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ADWIN:
        """A detector in the state :meth:`to_dict` returned (after a JSON round trip too)."""
        if d.get("format") != cls._FORMAT:
            raise ValueError(f"not an ADWIN state: format {d.get('format')!r}")
        detector = cls(**d["params"])
        pos = np.asarray(d["pos"], dtype=np.int64)
        psum = np.asarray(d["psum"], dtype=np.float64)
        psq = np.asarray(d["psq"], dtype=np.float64)
        pending = [float(x) for x in d["pending"]]
        if not (pos.ndim == 1 and pos.size >= 1 and psum.shape == pos.shape == psq.shape):
            raise ValueError("ADWIN state: pos, psum and psq must be equal-length lists")
        if np.any(np.diff(pos) <= 0) or pos[0] < 0 or len(pending) >= detector.clock:
            raise ValueError("ADWIN state: inconsistent bucket boundaries or buffer")
        detector._drift_detected = bool(d["drift_detected"])
        detector._pending = pending
        detector._shift = float(d["shift"])
        detector._pos, detector._psum, detector._psq = pos, psum, psq
        n, mean = d["dropped"]
        detector._dropped = (int(n), float(mean))
        return detector

    # -- what the window holds ------------------------------------------------

    def _moments(self) -> tuple[int, float, float]:
        """Count, mean and variance of the window, buffered observations included."""
        shift = self._shift if self._pos[-1] else (self._pending or [0.0])[0]
        extra = np.asarray(self._pending) - shift
        n = int(self._pos[-1] - self._pos[0]) + extra.size
        if not n:
            return 0, 0.0, 0.0
        s = float(self._psum[-1] - self._psum[0] + extra.sum())
        q = float(self._psq[-1] - self._psq[0] + (extra * extra).sum())
        return n, shift + s / n, max(q - s * s / n, 0.0) / n

    @property
    def width(self) -> int:
        """Observations in the window."""
        return int(self._pos[-1] - self._pos[0]) + len(self._pending)

    @property
    def estimation(self) -> float:
        """Mean of the window (0.0 when empty)."""
        return self._moments()[1]

    @property
    def variance(self) -> float:
        """Variance of the window (population variance, not River's sum of squares)."""
        return self._moments()[2]

    @property
    def dropped(self) -> tuple[int, float]:
        """At a detection: how many of the oldest observations the cut dropped, and their mean.

        ``width`` and ``estimation`` then describe the newer part that was
        kept; together they say which way the mean moved.  ``(0, 0.0)``
        when no drift is detected at the last observation.
        """
        return self._dropped if self._drift_detected else (0, 0.0)

    @property
    def n_buckets(self) -> int:
        """Buckets in the exponential histogram (buffered observations excluded)."""
        return int(self._pos.size - 1)

    # -- the cut test -----------------------------------------------------------

    def _first_firing(
        self, ends: IntArray, cuts: IntArray, u0: FloatArray, total: FloatArray, squares: FloatArray
    ) -> int:
        """First tick (row of ``cuts``) at which a cut fires, or -1.

        Window ``t`` holds ``ends[t]`` values; ``u0`` (the sums before each cut),
        ``total`` and ``squares`` are sums of ``x - shift`` from its start.
        """
        width = ends.astype(np.float64)
        var = np.maximum(squares - total * total / width, 0.0) / width
        # Screen: since gap * n0 * n1 = |u0 W - U n0| and m >= W / (n0 n1), a cut
        # fires only if (u0 W - U n0)^2 > 2 var delta' W n0 n1: no division, no sqrt.
        # The slack covers rounding, so the exact test sees every cut that fires.
        bound = np.log(2.0 * np.log(width) / self.delta) * (2.0 * (1.0 - 1e-6)) * var * width
        n0 = cuts.astype(np.float64)
        lhs = u0 * width[:, None]
        lhs -= total[:, None] * n0
        lhs *= lhs
        rhs = width[:, None] - n0
        rhs *= n0
        rhs *= bound[:, None]
        tick, slot = np.nonzero(lhs > rhs)
        if not tick.size:
            return -1
        # River's exact test, on the few cuts left; math.log gives the same bits
        # whatever the batch size (numpy's vectorised log may not)
        n0, u0 = n0[tick, slot], u0[tick, slot]
        width, total, var = width[tick], total[tick], var[tick]
        n1, low = width - n0, self.min_window_length
        dprime = np.array([math.log(2.0 * math.log(w) / self.delta) for w in width.tolist()])
        with np.errstate(divide="ignore", invalid="ignore"):  # cuts too short: masked
            gap = np.abs(u0 / n0 - (total - u0) / n1)
            m = 1.0 / (n0 - low + 1) + 1.0 / (n1 - low + 1)
            eps = np.sqrt(2.0 * m * var * dprime) + 2.0 / 3.0 * dprime * m
            hits = (n0 >= low) & (n1 >= low) & (gap > eps)
        return int(tick[np.argmax(hits)]) if hits.any() else -1

    # -- feeding ------------------------------------------------------------------

    def _insert(self, values: FloatArray) -> int:
        """Insert ``clock * T`` values, checking at each of the T ticks.

        Returns the first tick whose check fires (the window is then cut back
        and ``drift_detected`` set), or -1 after inserting everything.
        """
        start, stored = int(self._pos[-1]), self._pos.size - 1
        if start == 0:
            self._shift = float(values[0])
        dev = values - self._shift
        # sums at the stored boundaries, then at every new position
        psum, psq = _continue(self._psum, dev), _continue(self._psq, dev * dev)
        ends = start + self.clock * np.arange(1, values.size // self.clock + 1, dtype=np.int64)
        pos = _layout(ends, self.max_buckets)
        # where each boundary's sums are: one older than this batch is a boundary of the
        # stored window; searchsorted answers stored + 1 for any newer position
        index = np.searchsorted(self._pos, pos)
        index += np.maximum(pos - (start + 1), 0)

        fired = -1
        first = int(np.searchsorted(ends, max(self.grace_period, 1), side="right"))
        at_end = ends[first:] - start + stored
        if first < ends.size:
            checked = slice(first, None)
            fired = self._first_firing(
                ends[checked], pos[checked], psum[index[checked]], psum[at_end], psq[at_end]
            )
            fired += first if fired >= 0 else 0
        tick = fired if fired >= 0 else ends.size - 1
        row = pos[tick]  # sorted; slots without a bucket repeat 0 or a boundary
        keep = np.empty(row.size, dtype=bool)
        keep[0] = row[0] > 0
        np.not_equal(row[1:], row[:-1], out=keep[1:])
        self._pos = np.concatenate(([0], row[keep]))
        kept = np.concatenate(([0], index[tick][keep]))
        self._psum, self._psq = psum[kept], psq[kept]
        self._drift_detected = fired >= 0
        if fired >= 0:
            width, total = int(self._pos[-1] - self._pos[0]), float(self._psum[-1] - self._psum[0])
            self._cut_back()
            n = width - int(self._pos[-1] - self._pos[0])
            total -= float(self._psum[-1] - self._psum[0])
            self._dropped = (n, self._shift + total / n)
        return fired

    def _cut_back(self) -> None:
        """After a detection, drop the oldest buckets while a cut still fires."""
        while self._pos.size > 2:
            pos, psum, psq = self._pos[1:], self._psum[1:], self._psq[1:]
            self._pos, self._psum, self._psq = pos, psum, psq
            inner, before = pos[None, 1:-1] - pos[0], psum[None, 1:-1] - psum[0]
            total, squares = psum[-1:] - psum[0], psq[-1:] - psq[0]
            if self._first_firing(pos[-1:] - pos[0], inner, before, total, squares) < 0:
                return

    def update(self, x: float) -> None:
        """Feed one observation; read the outcome from ``drift_detected``."""
        if self._drift_detected:
            self._reset()
        self._pending.append(float(x))
        if len(self._pending) == self.clock:
            values, self._pending = np.asarray(self._pending), []
            self._insert(values)

    def _scan(self, values: FloatArray) -> int:
        held = len(self._pending)
        if held:
            values = np.concatenate((self._pending, values))
        ready = values.size - values.size % self.clock
        if not ready:
            self._pending = values.tolist()
            return -1
        tick = self._insert(values[:ready])
        self._pending = values[ready:].tolist() if tick < 0 else []
        return -1 if tick < 0 else (tick + 1) * self.clock - 1 - held
