"""Concept-drift observes, chained in release order off the write's path.

The join outcomes each Redis transaction releases go to the concept-drift
detectors in the order they were released, but the next batch's write need
not wait for them: :class:`ObserveChain` runs each observe as a task after
the one before it.  An error stops the chain: no later observe runs, and
whoever waits (:meth:`ObserveChain.wait`) gets the error, every time, until
the worker stops.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

__all__ = ["ObserveChain"]


class ObserveChain:
    """Run ``observe(outcomes)`` for each batch of outcomes, one after another, in order.

    >>> async def main():
    ...     seen = []
    ...     async def observe(outcomes):
    ...         await asyncio.sleep(0)
    ...         seen.extend(outcomes)
    ...     chain = ObserveChain(observe)
    ...     chain.later([1, 2]); chain.later([]); chain.later([3])
    ...     await chain.wait()
    ...     return seen
    >>> asyncio.run(main())
    [1, 2, 3]
    """

    def __init__(self, observe: Callable[[Sequence[Any]], Awaitable[None]]) -> None:
        self.observe = observe
        #: The queued observes, oldest first.
        self.tasks: deque[asyncio.Task[bool]] = deque()

    def later(self, outcomes: Sequence[Any]) -> None:
        """Queue an observe of ``outcomes`` after every observe queued before."""
        if outcomes:
            previous = self.tasks[-1] if self.tasks else None
            self.tasks.append(asyncio.create_task(self._after(previous, outcomes)))

    def idle_or_crowded(self, behind: int) -> bool:
        """Whether every queued observe is done (so an error shows now), or more than
        ``behind`` are queued."""
        return bool(self.tasks) and (self.tasks[-1].done() or len(self.tasks) > behind)

    async def _after(self, previous: asyncio.Task[bool] | None, outcomes: Sequence[Any]) -> bool:
        """Observe once ``previous`` is done; False (and nothing observed) if the chain
        stopped before: ``previous`` or one before it failed or was cancelled."""
        if previous is not None:
            await asyncio.wait((previous,))
            if previous.cancelled() or previous.exception() is not None or not previous.result():
                return False  # the failed one raises its error to whoever waits
        await self.observe(outcomes)
        return True

    async def wait(self, keep: int = 0) -> None:
        """Wait for the oldest observes until at most ``keep`` are left; raise the error of
        one that failed."""
        tasks = self.tasks
        while tasks:
            task = tasks[0]
            if len(tasks) <= keep and not tasks[-1].done():
                return
            # asyncio.wait: a waiter that is cancelled does not cancel the observes; a
            # failed one stays first in the queue, so every later wait raises its error too
            if not task.done():
                await asyncio.wait((task,))
            task.result()
            if tasks and tasks[0] is task:
                tasks.popleft()
