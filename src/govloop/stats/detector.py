"""The shape every sequential change detector in govloop shares: River's.

A detector watches one stream of numbers (an error indicator, a loss, a
latency) and says whether the stream changed *at* the observation it has just
seen.  The contract is River's, so a user who knows ``river.drift`` knows ours:

- ``update(x) -> None`` feeds one observation;
- ``drift_detected`` (read-only) says whether a change was signalled at that
  observation;
- all mutable state is built in ``_reset()``, which runs from ``__init__`` and
  again on the first observation after a detection: the detector starts
  afresh on the new regime;
- constructor arguments are stored under their own names, so ``clone()`` and
  ``repr`` work by inspecting the signature.

What River does not have is ``update_many(values)``: it feeds a whole batch
with numpy and returns the indices (into ``values``) where drift was
signalled.  It gives exactly the detections of calling ``update`` on each
value in turn (same floating-point operations, tested bit for bit) and the
state carries over between calls, so batches and single values can be mixed
freely.  It is the path the stream worker uses: 20-110 ns per event on 10**6
values, where a Python loop over River's ``update`` costs 170-550 ns.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["DriftDetector"]

FloatArray = NDArray[np.float64]


class DriftDetector(ABC):
    """Base class of the sequential change detectors.

    Subclasses store their constructor arguments under the same names, build
    every piece of mutable state in ``_reset()`` (calling ``super()._reset()``)
    and implement ``update`` and ``_scan``; ``update_many``, ``clone`` and
    ``repr`` come from here.

    Batches and single values mix freely (a mean shift of 3 at index 500):

    >>> import numpy as np
    >>> from govloop.stats.page_hinkley import PageHinkley
    >>> rng = np.random.default_rng(3)
    >>> stream = np.concatenate([rng.normal(0.0, 1.0, 500), rng.normal(3.0, 1.0, 500)])
    >>> detector = PageHinkley()
    >>> detector.update_many(stream[:300]).tolist()
    []
    >>> for i in range(300, 1000):
    ...     detector.update(stream[i])
    ...     if detector.drift_detected:
    ...         print(i)
    508
    >>> detector.clone()
    PageHinkley(min_instances=30, delta=0.005, threshold=50.0, alpha=0.9999, mode='both')
    """

    #: First and largest batch ``update_many`` hands to ``_scan``.  Batches
    #: start small after a detection (the work past an alarm is thrown away)
    #: and double while the stream stays quiet, up to a size whose arrays stay
    #: in cache (measured: 16384 values beat 65536 by 1.5-2x on a quiet stream).
    _min_batch = 512
    _max_batch = 1 << 14

    _drift_detected: bool

    def _reset(self) -> None:
        """Build all mutable state afresh (called by ``__init__`` and after a detection)."""
        self._drift_detected = False

    @property
    def drift_detected(self) -> bool:
        """Whether a change was signalled at the last observation fed."""
        return self._drift_detected

    @abstractmethod
    def update(self, x: float) -> None:
        """Feed one observation; read the outcome from ``drift_detected``."""

    @abstractmethod
    def _scan(self, values: FloatArray) -> int:
        """Feed ``values`` (non-empty) up to and including the first alarm.

        Returns the index of the alarm in ``values`` and leaves the detector in
        the state ``update`` would leave it in after that value (with
        ``drift_detected`` true); returns -1 after consuming every value
        without an alarm (``drift_detected`` false).
        """

    def update_many(self, values: ArrayLike) -> NDArray[np.intp]:
        """Feed a batch; return the indices into ``values`` where drift was signalled.

        Exactly the detections of ``update`` called on each value in turn;
        afterwards the detector is in the same state too, including
        ``drift_detected`` for the last value.
        """
        x = np.asarray(values, dtype=np.float64).ravel()
        alarms: list[int] = []
        start, size = 0, self._min_batch
        while start < x.size:
            if self._drift_detected:
                self._reset()
            stop = min(x.size, start + size)
            hit = self._scan(x[start:stop])
            if hit < 0:
                start, size = stop, min(2 * size, self._max_batch)
            else:
                alarms.append(start + hit)
                start, size = start + hit + 1, self._min_batch
        return np.asarray(alarms, dtype=np.intp)

    def _params(self) -> dict[str, Any]:
        """Constructor arguments, read back from the attributes of the same names."""
        return {name: getattr(self, name) for name in _parameter_names(type(self))}

    def clone(self) -> Self:
        """A fresh detector with the same parameters and no state."""
        return type(self)(**self._params())

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self._params().items())
        return f"{type(self).__name__}({args})"


@functools.cache
def _parameter_names(cls: type) -> tuple[str, ...]:
    """A detector class's constructor parameters (inspected once per class)."""
    return tuple(inspect.signature(cls).parameters)
