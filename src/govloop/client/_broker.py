"""Where the SDK's broker is: the address in use, a TCP probe of it, and following it.

A ``govloop up`` that restarts comes back on a new port and says so in
``GOVLOOP_HOME/runtime.json``.  An SDK pinned to the old address would buffer
until its buffer filled and then drop everything, so the sender asks a
*locate* function where the broker is now after repeated failed connection
attempts, and moves there.  :meth:`govloop.client.Govloop.connect` passes one
that re-reads ``runtime.json`` when the address came from it; an address the
user configured (``GOVLOOP_KAFKA``) is kept, and its host names are resolved
again on every reconnect (by the probe and by the new producer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from govloop.runtime.ports import answers

__all__ = ["Broker", "Locate", "parse_bootstrap"]

log = logging.getLogger("govloop.client")

#: Where the broker is now (``host:port[,...]``), or None if nobody knows.
Locate = Callable[[], str | None]


def parse_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    """``"h1:9092,[::1]:9093"`` -> ``[("h1", 9092), ("::1", 9093)]``; ValueError if malformed.

    >>> parse_bootstrap("h1:9092,[::1]:9093")
    [('h1', 9092), ('::1', 9093)]
    """
    pairs = [part.strip().rpartition(":") for part in bootstrap.split(",")]
    return [(host.strip("[]") or "localhost", int(port)) for host, _, port in pairs]


class Broker:
    """The bootstrap address the sender uses, and the means to find it again when it moves."""

    def __init__(self, address: str, locate: Locate | None = None) -> None:
        """``address``: ``host:port[,...]`` (ValueError if malformed); ``locate``: see module."""
        self._servers = parse_bootstrap(address)
        self.address = address
        self._locate = locate

    def reachable(self) -> bool:
        """Whether any bootstrap server accepts a TCP connection (0.5 s each at most)."""
        return any(answers(host, port, timeout=0.5) for host, port in self._servers)

    def relocate(self) -> bool:
        """Ask where the broker is now; True if it moved (and this object now points there)."""
        if self._locate is None:
            return False
        found = self._locate()
        if not found or found == self.address:
            return False
        try:
            servers = parse_bootstrap(found)
        except ValueError:
            log.warning("govloop SDK: ignoring a malformed broker address %r", found)
            return False
        log.warning("govloop SDK: Kafka moved from %s to %s; following it", self.address, found)
        self.address, self._servers = found, servers
        return True
