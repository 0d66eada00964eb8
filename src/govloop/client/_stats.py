"""What the SDK counts: :class:`SdkStats`, a frozen snapshot read through ``Govloop.stats``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SdkStats"]


@dataclass(frozen=True, slots=True)
class SdkStats:
    """A snapshot of the SDK's accounting.

    Events: ``sent`` + ``buffered`` + ``dropped`` is every event accepted by an
    ``emit`` (or refused for want of room).  Failures: ``errors``, ``retries``,
    ``outages`` and ``reconnects`` say how delivery went.
    """

    #: Events acknowledged by the broker.
    sent: int
    #: Events accepted and not yet acknowledged (in the buffer or in flight).
    buffered: int
    #: Events given up: refused because the buffer was full or the client closed,
    #: failed ``MAX_ATTEMPTS`` deliveries or a non-retriable one, or still
    #: undelivered when ``Govloop.close`` ran out of time.
    dropped: int
    #: Failures met: deliveries the producer reported failed, sends it refused
    #: for want of broker metadata, and connection attempts no broker answered
    #: (one per probe while the broker is down).
    errors: int
    #: Deliveries to be tried again: an event put back in the buffer after a
    #: retriable failure or because an outage closed the producer before it
    #: delivered the event, or a send the producer refused for want of metadata.
    retries: int
    #: Times the broker stopped answering (a failed first connection is one too).
    outages: int
    #: Times a producer was created again after an outage (at the new address,
    #: if the broker moved).
    reconnects: int
    #: A producer to the broker exists now.
    connected: bool
