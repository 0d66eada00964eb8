"""Keep ``govloop up``'s worker processes running: restart each one that exits, with back-off.

A worker exits when it cannot go on (Redis or the database gone, SIGKILL, a
bug); its consumer group hands its partitions to the others and, once it is
back, to it again, and the offsets recorded in Redis make the restart count
every event once.  So the right reaction is to start it again: after 1 s,
then 2 s, 4 s ... up to a cap, so a worker that cannot start does not spin,
and from 1 s again once a run has lasted long enough to count as stable.

The one exit that is not retried is code 2: the worker's own "error: ..."
about its configuration, which no restart can fix.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from govloop.errors import RuntimeUnavailable

__all__ = ["CONFIG_ERROR", "Backoff", "Supervisor", "WorkerGaveUp", "stop_processes"]

#: A worker's exit code for an error in its configuration (see ``govloop.cli.output.fail``).
CONFIG_ERROR = 2


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """SIGTERM every process, SIGKILL those still running after ``timeout`` seconds."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class WorkerGaveUp(RuntimeUnavailable):
    """A worker exited in a way a restart cannot fix."""


@dataclass
class Backoff:
    """Restart delays that double from ``first`` up to ``cap``, reset after a stable run.

    >>> b = Backoff(first=1.0, cap=8.0, stable=60.0)
    >>> [b.next_delay(ran_for=0.5) for _ in range(5)]
    [1.0, 2.0, 4.0, 8.0, 8.0]
    >>> b.next_delay(ran_for=120.0)  # it had been running fine: start over
    1.0
    """

    first: float = 1.0
    cap: float = 30.0
    stable: float = 60.0
    _failures: int = 0

    def next_delay(self, ran_for: float) -> float:
        """The wait before the next start of a process that ran ``ran_for`` seconds."""
        if ran_for >= self.stable:
            self._failures = 0
        delay = min(self.cap, self.first * 2**self._failures)
        self._failures += 1
        return delay


@dataclass
class _Worker:
    """One supervised slot: its current process and its restart bookkeeping."""

    number: int
    process: subprocess.Popen[bytes]
    started: float
    backoff: Backoff
    restarts: int = 0
    restart_at: float | None = None


class Supervisor:
    """Run ``count`` processes made by ``spawn(number)`` (1-based), restarting any that exits.

    ``say`` gets one line per event worth telling an operator; ``on_change``
    is called with the current pids after every (re)start.  Call :meth:`poll`
    regularly; it never blocks.
    """

    def __init__(
        self,
        spawn: Callable[[int], subprocess.Popen[bytes]],
        count: int,
        say: Callable[[str], None],
        on_change: Callable[[list[int]], None] | None = None,
        backoff: Callable[[], Backoff] = Backoff,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spawn, self.count, self.say = spawn, count, say
        self.on_change = on_change
        self.backoff, self.clock = backoff, clock
        self.workers: list[_Worker] = []

    def start(self) -> None:
        now = self.clock()
        self.workers = [
            _Worker(n, self.spawn(n), now, self.backoff()) for n in range(1, self.count + 1)
        ]
        self._changed()

    def pids(self) -> list[int]:
        """The pids of the workers' current processes (exited ones included until restarted)."""
        return [w.process.pid for w in self.workers]

    def poll(self) -> None:
        """Notice exited workers and schedule their restart; restart those that are due.

        Raises :class:`WorkerGaveUp` for a worker that exited with a configuration error.
        """
        now = self.clock()
        for w in self.workers:
            code = w.process.poll()
            if code is None:
                continue
            if w.restart_at is None:
                if code == CONFIG_ERROR:
                    raise WorkerGaveUp(
                        f"worker {w.number} exited with code {code} (its configuration: "
                        "see its error above); stopping"
                    )
                delay = w.backoff.next_delay(ran_for=now - w.started)
                w.restart_at = now + delay
                self.say(
                    f"worker {w.number} exited with code {code}; "
                    f"restarting in {delay:g} s (restart {w.restarts + 1})"
                )
            elif now >= w.restart_at:
                w.process = self.spawn(w.number)
                w.started, w.restart_at = now, None
                w.restarts += 1
                self._changed()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every worker (see :func:`stop_processes`)."""
        stop_processes([w.process for w in self.workers], timeout)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.pids())
