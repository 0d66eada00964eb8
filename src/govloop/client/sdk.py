"""The SDK production services import: emit predictions, feedback and A/B assignments.

>>> from govloop.client import Govloop
>>> gl = Govloop.connect()  # doctest: +SKIP
>>> gl.emit_prediction(model="churn", model_version="3", request_id="r1",
...                    probabilities={"yes": 0.8, "no": 0.2})  # doctest: +SKIP
'6f1c0b6e...'
>>> gl.assign("new-ranker", "user-42", ["control", "treatment"])  # doctest: +SKIP
'treatment'

Malformed arguments raise :class:`~govloop.errors.EventError` (a ``ValueError``)
at once, naming the field; so does an implausible timestamp (before
:data:`EARLIEST_TS`, or more than ``max_future_seconds`` ahead of this
machine's clock), which would otherwise poison the window it lands in.
Everything after that never raises into, and never blocks, the caller:
validated events are serialized in the caller's thread and put in a bounded
in-memory buffer that a background thread delivers to Kafka, retrying while the
broker is down and following a ``govloop up`` that restarted elsewhere.  When
the buffer is full new events are dropped and counted.  :meth:`Govloop.flush`
waits at most its timeout and :meth:`Govloop.close` at most 2 s more (while
the sender finishes a call in progress); both timeouts are finite.

Delivery failures are never lost silently: a retriable one (broker gone,
timeout) puts the event back in the buffer, for up to :data:`MAX_ATTEMPTS`
deliveries in all; after that, or after a non-retriable one, the event is
counted in ``stats.dropped``.  :attr:`Govloop.stats` counts errors, retries,
outages and reconnects too.  Delivery is at least once: consumers drop repeats
by ``event_id``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any

from govloop.client._arguments import EARLIEST_TS, MAX_FUTURE_SECONDS, build, check_time, seconds
from govloop.client._broker import Broker, Locate
from govloop.client._sender import Sender
from govloop.client._stats import SdkStats
from govloop.client._variants import pick_variant
from govloop.config import Settings
from govloop.errors import ConfigError, EventError
from govloop.runtime import discover
from govloop.schemas import TOPICS, Assignment, Event, Feedback, Label, Prediction, Topic

__all__ = [
    "CLOSE_TIMEOUT",
    "EARLIEST_TS",
    "FLUSH_TIMEOUT",
    "MAX_ATTEMPTS",
    "MAX_FUTURE_SECONDS",
    "PRODUCER_DEFAULTS",
    "Govloop",
    "SdkStats",
    "pick_variant",
]

#: Largest serialized event the SDK accepts (the producer's default max_request_size).
MAX_EVENT_BYTES = 1_000_000
#: Deliveries attempted per event (retriable failures) before it is counted as dropped.
MAX_ATTEMPTS = 3
#: Seconds :meth:`Govloop.flush` waits by default: never forever, the request path must go on.
FLUSH_TIMEOUT = 10.0
#: Seconds :meth:`Govloop.close` waits by default for buffered events to be delivered.
CLOSE_TIMEOUT = 5.0
#: kafka-python ``KafkaProducer`` settings the SDK uses unless overridden.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 5,
    "batch_size": 65536,
    "max_block_ms": 2000,
    "bootstrap_timeout_ms": 5000,
    "request_timeout_ms": 10000,
    "delivery_timeout_ms": 30000,
    "client_id": "govloop-sdk",
}
_ASSIGNED_CACHE = 65536


class Govloop:
    """A connection to govloop's input topics; thread-safe; one per process is plenty.

    Build it with :meth:`connect`.  Events are keyed with their topic's key
    field (``request_id``, ``subject_id``, ``sample_id``) and sent to
    ``settings.topic(<short name>)``.
    """

    def __init__(
        self,
        settings: Settings,
        producer_options: Mapping[str, Any] | None = None,
        *,
        locate: Locate | None = None,
        max_future_seconds: float = MAX_FUTURE_SECONDS,
    ) -> None:
        """Start the background sender for ``settings.kafka``; returns at once.

        ``producer_options`` override :data:`PRODUCER_DEFAULTS` (kafka-python
        ``KafkaProducer`` keyword arguments).  ``locate`` says where the broker
        is now; the sender asks it after repeated failed connection attempts
        and moves to the address it gives (:meth:`connect` passes one when the
        address came from a running ``govloop up``).  ``max_future_seconds``:
        how far ahead of this machine's clock an event's ``ts`` may be.
        """
        if settings.kafka is None:
            raise ConfigError(
                "no Kafka to send to: set GOVLOOP_KAFKA=host:port or start one with `govloop up`"
            )
        self._max_future = timedelta(seconds=seconds("max_future_seconds", max_future_seconds))
        self.settings = settings
        self._routes: dict[type[Event], tuple[str, Topic]] = {
            t.model: (settings.topic(t.name), t) for t in TOPICS.values()
        }
        self._assigned: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._assigned_lock = threading.Lock()
        options = {**PRODUCER_DEFAULTS, **(producer_options or {})}
        try:
            broker = Broker(settings.kafka, locate)
        except ValueError as exc:
            raise ConfigError(
                f"GOVLOOP_KAFKA={settings.kafka!r}: expected host:port[,host:port...]"
            ) from exc
        self._sender = Sender(broker, settings.sdk_buffer, options, MAX_ATTEMPTS)
        self._closed = False

    @classmethod
    def connect(
        cls, settings: Settings | None = None, *, max_future_seconds: float = MAX_FUTURE_SECONDS
    ) -> Govloop:
        """Settings from the environment (if not given), completed by a running ``govloop up``.

        Raises :class:`~govloop.errors.ConfigError` if no broker address is known.
        Never waits for the broker: a broker that is down is retried in the background.
        When the address comes from ``govloop up`` (``GOVLOOP_KAFKA`` unset), the
        SDK follows it: after repeated failures it reads ``GOVLOOP_HOME/runtime.json``
        again and moves to the broker named there.
        """
        requested = settings if settings is not None else Settings()
        locate = None if requested.kafka is not None else lambda: discover(requested).kafka
        return cls(discover(requested), locate=locate, max_future_seconds=max_future_seconds)

    # -- emitting ------------------------------------------------------------------------

    def emit_prediction(self, **fields: Any) -> str:
        """Emit a :class:`~govloop.schemas.Prediction`; returns its ``event_id``."""
        return self._submit(build(Prediction, fields))

    def emit_feedback(self, **fields: Any) -> str:
        """Emit a :class:`~govloop.schemas.Feedback`; returns its ``event_id``."""
        return self._submit(build(Feedback, fields))

    def emit_assignment(self, **fields: Any) -> str:
        """Emit an :class:`~govloop.schemas.Assignment`; returns its ``event_id``."""
        return self._submit(build(Assignment, fields))

    def emit_label(self, **fields: Any) -> str:
        """Emit a :class:`~govloop.schemas.Label`; returns its ``event_id``."""
        return self._submit(build(Label, fields))

    def emit(self, event: Event) -> str:
        """Emit an already-built event of any registry topic; returns its ``event_id``."""
        if not isinstance(event, Event):
            raise TypeError(f"expected a govloop Event, got {type(event).__name__}")
        return self._submit(event)

    def assign(
        self,
        experiment: str,
        subject_id: str,
        variants: Sequence[str],
        weights: Sequence[float] | None = None,
    ) -> str:
        """The subject's variant (see :func:`pick_variant`); emits an Assignment the first time.

        The Assignment's ``event_id`` is derived from (experiment, subject,
        variant), so repeats from other processes are duplicates that consumers
        drop by ``event_id``; this process remembers the last 65,536 it emitted
        and does not send those again.
        """
        variant = pick_variant(experiment, subject_id, variants, weights)
        seen = (experiment, subject_id, variant)
        with self._assigned_lock:
            if seen in self._assigned:
                self._assigned.move_to_end(seen)
                return variant
        event_id = hashlib.sha256("\0".join(seen).encode()).hexdigest()[:32]
        event = build(
            Assignment,
            {
                "experiment": experiment,
                "subject_id": subject_id,
                "variant": variant,
                "event_id": event_id,
            },
        )
        if self._enqueue(event):
            with self._assigned_lock:
                self._assigned[seen] = None
                if len(self._assigned) > _ASSIGNED_CACHE:
                    self._assigned.popitem(last=False)
        return variant

    def _submit(self, event: Event) -> str:
        self._enqueue(event)
        return event.event_id

    def _enqueue(self, event: Event) -> bool:
        try:
            topic, entry = self._routes[type(event)]
        except KeyError:
            raise EventError(f"no topic carries {type(event).__name__}") from None
        check_time(event, self._max_future)
        if not self._sender.has_room():
            self._sender.refuse()
            return False
        value = event.to_json()
        if len(value) > MAX_EVENT_BYTES:
            raise EventError(f"event: {len(value)} bytes serialized, more than {MAX_EVENT_BYTES}")
        return self._sender.offer((topic, entry.key(event), value, 0))

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def stats(self) -> SdkStats:
        """The SDK's counts (see :class:`SdkStats`; a consistent-enough snapshot)."""
        s = self._sender
        return SdkStats(
            sent=s.sent,
            buffered=s.buffered,
            dropped=s.dropped,
            errors=s.errors,
            retries=s.retries,
            outages=s.broker.outages,
            reconnects=s.broker.reconnects,
            connected=s.connected,
        )

    @property
    def bootstrap(self) -> str:
        """The broker address events go to now (``settings.kafka``, unless the broker moved)."""
        return self._sender.broker.address

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> bool:
        """Wait until every buffered event is acknowledged (True) or ``timeout`` s pass (False).

        ``timeout`` is finite (a ValueError otherwise): with the broker down,
        ``flush`` returns False in time and the events stay buffered.
        """
        return self._sender.flush(seconds("timeout", timeout))

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Deliver what can be delivered within ``timeout`` s, then stop; the rest is dropped.

        Takes at most ``timeout`` + 2 s (the sender may be inside a producer call);
        returns at once (after one connection attempt, and one look at where a
        moved broker went) when no broker answers.  Events emitted after
        ``close`` are dropped and counted.
        """
        wait = seconds("timeout", timeout)
        self._closed = True
        self._sender.close(wait)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Govloop:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Govloop(kafka={self.bootstrap!r}, {self.stats})"
