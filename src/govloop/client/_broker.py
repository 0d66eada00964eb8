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

__all__ = ["FOLLOW_AFTER", "Broker", "Locate", "parse_bootstrap"]

log = logging.getLogger("govloop.client")

#: Failed connection attempts in a row after which the sender asks where the broker is now
#: (a broker restarting on the same port is the common case: give it a few tries first).
FOLLOW_AFTER = 3

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
    """The bootstrap address the sender uses, how reaching it went, and how to find it again.

    ``outages`` counts the times it stopped answering (a first connection that
    fails is one too); ``reconnects`` the connections made after an outage.
    """

    def __init__(self, address: str, locate: Locate | None = None) -> None:
        """``address``: ``host:port[,...]`` (ValueError if malformed); ``locate``: see module."""
        self._servers = parse_bootstrap(address)
        self.address = address
        self._locate = locate
        self.outages = 0
        self.reconnects = 0
        self._connections = 0  # connections made, ever
        self._failures = 0  # connection attempts failed since the last success
        self._down = False  # the last connection attempt failed

    def failed(self) -> None:
        """Note a failed connection attempt; the first of a series starts an outage."""
        self._failures += 1
        if not self._down:
            self._down = True
            self.outages += 1
            log.warning("govloop SDK: no Kafka answers at %s; buffering", self.address)

    def connected(self) -> None:
        """Note a connection made; after an outage it is a reconnect."""
        if self._connections:
            self.reconnects += 1
        self._connections += 1
        self._failures, self._down = 0, False

    @property
    def lost(self) -> bool:
        """Whether :data:`FOLLOW_AFTER` connection attempts in a row failed."""
        return self._failures >= FOLLOW_AFTER

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
