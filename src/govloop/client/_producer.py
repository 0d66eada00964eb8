"""Opening and closing a kafka-python ``KafkaProducer`` without leaking its sockets or threads.

kafka-python 3.0 leaves its selector open when a producer cannot bootstrap,
and raises from ``close()`` with its I/O thread still running (reconnecting
for ever) when the final flush times out.  The sender drops and recreates
producers on every outage, so both would add up; these two functions keep
that knowledge in one place.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

__all__ = ["close_producer", "open_producer"]

log = logging.getLogger("govloop.client")


def open_producer(kafka: Any, bootstrap: str, options: Mapping[str, Any]) -> Any:
    """A ``KafkaProducer`` for ``bootstrap``; raises what kafka-python raises, leaking nothing."""
    made: list[Any] = []
    try:
        from kafka.net.compat import KafkaNetClient

        def client(**configs: Any) -> Any:
            made.append(KafkaNetClient(**configs))
            return made[-1]

        factory: dict[str, Any] = {"kafka_client": client}
    except ImportError:  # another kafka-python layout: let it build its own client
        factory = {}
    try:
        return kafka.KafkaProducer(bootstrap_servers=bootstrap, **options, **factory)
    except Exception:
        for c in made:  # kafka-python leaves its selector open when bootstrap fails
            c.close()
        raise


def close_producer(kafka: Any, producer: Any, timeout: float) -> None:
    """Close ``producer``, delivering for at most ``timeout`` s; never raises."""
    try:
        producer.close(timeout=timeout)
    except kafka.errors.KafkaTimeoutError:
        # kafka-python 3.0 raises from close() when its flush times out and leaves the
        # I/O thread running (reconnecting forever): force it shut, then close again.
        io_thread = getattr(producer, "_sender", None)
        if io_thread is not None:
            io_thread.force_close()
            io_thread.join(1.0)
        with contextlib.suppress(Exception):
            producer.close(timeout=0)
    except Exception as exc:
        log.warning("govloop SDK: closing the producer: %s", exc)
