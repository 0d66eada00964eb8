"""The bounded run loop every worker shares: call one step after another until told to stop.

A worker is a *step*: a function that does one unit of work (read a batch,
decide, write) and returns how many items it handled.  :func:`run_loop`
calls it again and again and, before every step, asks in this order whether
to stop:

1. a stop request from outside: SIGTERM or SIGINT (handlers are installed
   only when the loop runs in the main thread, and the previous handlers are
   put back on the way out), or the ``stop`` event set by another thread;
2. ``max_items``: the items handled so far reached it (the last step's batch
   may go past it; the loop never cuts a step short);
3. ``timeout``: that many seconds have passed since the loop started.

A step that handled nothing means the source is idle: the loop sleeps
``idle_sleep`` seconds, twice as long after each further idle step, at most
``max_idle_sleep`` (see :func:`idle_sleeps`); a step that handled something
resets the back-off.  A stop request wakes an idle sleep (the ``stop`` event
at once, a signal within ``SIGNAL_POLL`` seconds) and the sleep never runs
past the timeout.  A step in progress is always finished: a signal only sets
a flag.

An exception raised by a step propagates to the caller, who decides whether
the worker retries or exits; the signal handlers are restored first.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from types import FrameType, TracebackType
from typing import Any

__all__ = [
    "SIGNAL_POLL",
    "STOP_SIGNALS",
    "RunResult",
    "Step",
    "StopReason",
    "idle_sleeps",
    "run_loop",
]

#: One unit of work; returns how many items it handled (0: the source was idle).
Step = Callable[[], int]

#: The signals that ask a worker to stop after its current step.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Longest an idle sleep goes on after a signal arrived, in seconds.
SIGNAL_POLL = 0.05


class StopReason(StrEnum):
    """Why :func:`run_loop` returned."""

    MAX_ITEMS = "max_items"
    TIMEOUT = "timeout"
    SIGNAL = "signal"
    STOP_EVENT = "stop_event"


@dataclass(frozen=True)
class RunResult:
    """What a run did: items handled, steps called, seconds elapsed, and why it stopped.

    ``signal`` names the signal (``"SIGTERM"``) when ``reason`` is ``StopReason.SIGNAL``.
    """

    items: int
    steps: int
    elapsed: float
    reason: StopReason
    signal: str | None = None


def idle_sleeps(first: float, maximum: float) -> Iterator[float]:
    """The back-off after consecutive idle steps: ``first`` seconds, doubling up to ``maximum``.

    >>> from itertools import islice
    >>> list(islice(idle_sleeps(0.1, 1.0), 6))
    [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    """
    sleep = first
    while True:
        yield sleep
        sleep = min(sleep * 2, maximum)


def run_loop(
    step: Step,
    *,
    max_items: int | None = None,
    timeout: float | None = None,
    stop: threading.Event | None = None,
    idle_sleep: float = 0.05,
    max_idle_sleep: float = 1.0,
) -> RunResult:
    """Call ``step`` until ``max_items``, ``timeout``, a signal or ``stop`` ends the run.

    ``None`` for ``max_items`` or ``timeout`` means no such bound.

    >>> batches = [3, 0, 2, 5]
    >>> result = run_loop(lambda: batches.pop(0), max_items=5, idle_sleep=0.001)
    >>> str(result.reason), result.items, result.steps, batches
    ('max_items', 5, 3, [5])
    >>> str(run_loop(lambda: 0, timeout=0.01, idle_sleep=0.001).reason)
    'timeout'
    """
    _check_bounds(max_items, timeout, idle_sleep, max_idle_sleep)
    start = time.monotonic()
    items = steps = 0
    sleeps = idle_sleeps(idle_sleep, max_idle_sleep)
    with _StopRequests(stop) as requests:
        while True:
            elapsed = time.monotonic() - start
            reason = requests.reason() or _bound_reached(items, max_items, elapsed, timeout)
            if reason is not None:
                return RunResult(items, steps, elapsed, reason, requests.signal)
            handled = step()
            if handled < 0:
                raise ValueError(f"a step returns how many items it handled, not {handled}")
            steps += 1
            items += handled
            if handled:
                sleeps = idle_sleeps(idle_sleep, max_idle_sleep)
                continue
            sleep = next(sleeps)
            if timeout is not None:
                sleep = min(sleep, timeout - (time.monotonic() - start))
            requests.sleep(sleep)


def _check_bounds(
    max_items: int | None, timeout: float | None, idle_sleep: float, max_idle_sleep: float
) -> None:
    if max_items is not None and max_items < 0:
        raise ValueError(f"max_items must be >= 0, not {max_items}")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0, not {timeout}")
    if not 0 < idle_sleep <= max_idle_sleep:
        raise ValueError(
            f"need 0 < idle_sleep <= max_idle_sleep, not {idle_sleep} and {max_idle_sleep}"
        )


def _bound_reached(
    items: int, max_items: int | None, elapsed: float, timeout: float | None
) -> StopReason | None:
    """Which of the run's own bounds, if any, is reached.

    >>> _bound_reached(10, 10, 0.5, None)
    <StopReason.MAX_ITEMS: 'max_items'>
    >>> _bound_reached(9, 10, 2.0, 2.0)
    <StopReason.TIMEOUT: 'timeout'>
    >>> _bound_reached(9, 10, 1.9, 2.0) is None
    True
    """
    if max_items is not None and items >= max_items:
        return StopReason.MAX_ITEMS
    if timeout is not None and elapsed >= timeout:
        return StopReason.TIMEOUT
    return None


class _StopRequests:
    """The requests to stop that come from outside the loop: signals and the ``stop`` event.

    The signal handler only records the signal's name: it runs in the main
    thread between two bytecodes, possibly while that thread holds a lock, so
    it must not take one (setting a ``threading.Event`` would).  Idle sleeps
    therefore wait on the event in slices of ``SIGNAL_POLL`` seconds and look
    at the flag between two slices.
    """

    def __init__(self, stop: threading.Event | None) -> None:
        self.stop = stop if stop is not None else threading.Event()
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, previous in self._previous.items():
            # None: the previous handler was not installed from Python; the default is the guess
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signal.Signals(signum).name

    def reason(self) -> StopReason | None:
        """The stop requested so far, if any (a signal wins over the event)."""
        if self.signal is not None:
            return StopReason.SIGNAL
        if self.stop.is_set():
            return StopReason.STOP_EVENT
        return None

    def sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``; return early once a stop is requested."""
        deadline = time.monotonic() + seconds
        while self.reason() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.stop.wait(min(left, SIGNAL_POLL))
