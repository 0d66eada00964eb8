"""Result events out, each one sent again until the broker acknowledges it.

:meth:`Results.send` hands an event to the producer and keeps it;
:meth:`Results.delivered` waits until every kept event is acknowledged,
sending a failed one again (with back-off) until it is.  The worker calls
it before it acknowledges a window's claim and before it commits input
offsets, so a snapshot, gate change or dead letter is never dropped: if the
worker dies first, the claim or the offsets are redone, and the event with
them (under the same event id, so a consumer sees a duplicate, not a
different result).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

from govloop.stores.sql.retry import backoff

__all__ = ["Results"]

log = logging.getLogger("govloop.streams")


class _Sent(NamedTuple):
    name: str
    key: bytes | None
    value: bytes
    ack: Any  # awaitable: the broker's acknowledgement (faust's FutureMessage)


class Results:
    """The worker's result topics (short name -> faust topic), with delivery tracking."""

    def __init__(self, topics: Mapping[str, Any]) -> None:
        self.topics = topics
        self._unconfirmed: list[_Sent] = []

    async def send(self, name: str, key: bytes | None, value: bytes) -> None:
        """Hand one event to the producer (buffered: :meth:`delivered` waits for it)."""
        ack = await self.topics[name].send(key=key, value=value)
        self._unconfirmed.append(_Sent(name, key, value, ack))

    async def delivered(self) -> None:
        """Wait until every event sent so far is acknowledged, re-sending failed ones."""
        attempt = 0
        while self._unconfirmed:
            waiting, self._unconfirmed = self._unconfirmed, []
            acks = await asyncio.gather(*(s.ack for s in waiting), return_exceptions=True)
            failed = [s for s, ack in zip(waiting, acks, strict=True) if isinstance(ack, Exception)]
            if not failed:
                continue
            attempt += 1
            delay = backoff(attempt)
            log.warning(
                "%d result events not acknowledged (%r); sending them again in %.1f s",
                len(failed),
                next(a for a in acks if isinstance(a, Exception)),
                delay,
            )
            await asyncio.sleep(delay)
            for s in failed:
                await self.send(s.name, s.key, s.value)
