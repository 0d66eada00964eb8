"""The SDK's background sender: a bounded buffer drained by one thread that owns the producer.

Callers only :meth:`Sender.offer` already-serialized records: a length check
and a ``deque.append``, no lock, no I/O.  The thread creates the kafka-python
``KafkaProducer`` lazily (after a plain TCP probe, so a broker that is down
costs neither threads nor sockets), retries with exponential backoff while the
broker is unreachable, follows it when it moves (see :mod:`._broker`) and does
all accounting itself.

Accounting (see :class:`govloop.client.SdkStats`):

* ``buffered``: records queued here or handed to the producer and not yet
  acknowledged.  Their sum is bounded by ``capacity``: an offer beyond it is
  refused and counted in ``dropped``.
* a record whose delivery fails with a *retriable* error (broker down, timeout)
  is put back at the front of the queue and retried, up to ``max_attempts``
  deliveries in all; each failure counts in ``errors``, each retry in
  ``retries``.  So does a record the producer would not take for want of
  broker metadata (it stays first in line).  A record that fails
  ``max_attempts`` times, or with a non-retriable error, counts in ``dropped``.
* when the broker stops answering (an *outage*, counted in ``outages``), the
  producer is closed and the records it had not delivered go back to the queue
  (counted in ``retries``, no attempt used up); the thread returns to probing
  with backoff, each failed probe counting in ``errors``.  After
  ``FOLLOW_AFTER`` failed probes in a row it asks where the broker is now.
  A producer created again after an outage counts in ``reconnects``.
* at :meth:`Sender.close` what could not be delivered within the timeout
  counts in ``dropped``.  Nothing leaves the books silently.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from govloop.client._broker import Broker
from govloop.client._producer import close_producer, open_producer

__all__ = ["Record", "Sender"]

log = logging.getLogger("govloop.client")

#: (topic, key, value, deliveries attempted so far)
Record = tuple[str, bytes | None, bytes, int]

_MIN_BACKOFF = 0.05
_MAX_BACKOFF = 5.0
_PUMP_BATCH = 2000
_LOG_EVERY = 10.0
_STALL = 3.0  # no ack for this long after a delivery tried: check that the broker answers


class Sender:
    """A bounded buffer of records and the daemon thread that delivers them."""

    def __init__(
        self, broker: Broker, capacity: int, options: Mapping[str, Any], max_attempts: int
    ) -> None:
        """``options``: ``KafkaProducer`` keyword arguments; starts the thread at once."""
        import kafka  # imported here, in the caller's thread, so import problems surface early

        self._kafka = kafka
        self.broker = broker
        self._capacity = capacity
        self._options = dict(options)
        self._max_attempts = max_attempts
        self._queue: deque[Record] = deque()
        self._inflight: deque[tuple[Any, Record]] = deque()
        self._producer: Any = None
        # counters, written by the sender thread only (see the module docstring)
        self.sent = 0
        self.errors = 0
        self.retries = 0
        self._dropped_late = 0  # written by the sender thread only
        self._dropped_full = 0  # written by callers, under _drop_lock
        self._drop_lock = threading.Lock()
        self._wake = threading.Event()  # records arrived or acks came back
        self._interrupt = threading.Event()  # flush or close: cut a backoff short
        self._idle = threading.Condition()
        self._closing = False
        self._deadline = 0.0
        self._checked_at = 0.0  # last ack, connect or successful liveness probe
        self._refused = False  # the producer refused the last send (no broker metadata)
        self._hook = _make_exit_hook(self)
        self._thread = threading.Thread(target=self._run, name="govloop-sdk-sender", daemon=True)
        self._thread.start()

    # -- caller side ---------------------------------------------------------------------

    def has_room(self) -> bool:
        """Whether an offer would be accepted now (racy by design: a hint, not a promise)."""
        return len(self._queue) + len(self._inflight) < self._capacity and not self._closing

    def offer(self, record: Record) -> bool:
        """Queue ``record`` unless the buffer is full or closed; never blocks."""
        if not self.has_room():
            self.refuse()
            return False
        self._queue.append(record)
        if not self._wake.is_set():
            self._wake.set()
        return True

    def refuse(self) -> None:
        """Count one record that was not accepted."""
        with self._drop_lock:
            self._dropped_full += 1

    @property
    def dropped(self) -> int:
        return self._dropped_full + self._dropped_late

    @property
    def buffered(self) -> int:
        return len(self._queue) + len(self._inflight)

    @property
    def connected(self) -> bool:
        return self._producer is not None

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is buffered (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        self._interrupt.set()
        self._wake.set()
        with self._idle:
            while self.buffered:
                remaining = min(deadline - time.monotonic(), 0.5)
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout: float) -> None:
        """Deliver what can be delivered within ``timeout`` s, drop the rest, stop the thread."""
        if not self._closing:
            self._deadline = time.monotonic() + timeout
            self._closing = True
        self._interrupt.set()
        self._wake.set()
        atexit.unregister(self._hook)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout + 2.0)

    # -- sender thread -------------------------------------------------------------------

    def _run(self) -> None:
        delay = _MIN_BACKOFF
        last_log, logged_drops = 0.0, 0
        try:
            while True:
                try:
                    if self._producer is None:
                        if self._connect():
                            delay = _MIN_BACKOFF
                            continue
                        if self._closing:
                            break
                        self._interrupt.wait(delay)
                        self._interrupt.clear()
                        delay = min(delay * 2, _MAX_BACKOFF)
                        continue
                    self._wake.clear()
                    moved = self._pump()
                    self._reap()
                    self._notify_if_idle()  # before any wait below: flush() is waiting on it
                    if self._closing and self._finish_closing():
                        break
                    if self._stalled():
                        continue
                    if not moved:  # acks wake us through the last future of each batch
                        self._wake.wait(0.005 if self._inflight else 0.5)
                except Exception:  # the thread must survive anything; the caller never sees it
                    log.exception("govloop SDK sender failed; reconnecting")
                    self.errors += 1
                    self._drop_producer()
                    time.sleep(delay)
                finally:
                    self._notify_if_idle()
                if self.dropped > logged_drops and time.monotonic() - last_log > _LOG_EVERY:
                    log.warning("govloop SDK: %d events dropped so far", self.dropped)
                    last_log, logged_drops = time.monotonic(), self.dropped
        finally:
            self._abandon()

    def _connect(self) -> bool:
        """Create the producer if the broker answers, following it if it moved; False if not.

        While closing the sender asks where the broker is at once: what it still
        holds would otherwise be dropped.
        """
        if self._closing and not self.buffered:
            return False
        if not self.broker.reachable():
            self._unreachable()
        elif self._open_producer():
            return True
        follow = self._closing or self.broker.lost
        return follow and self.broker.relocate() and self._open_producer()

    def _unreachable(self) -> None:
        """Count a failed connection attempt (an error, and perhaps the start of an outage)."""
        self.errors += 1
        self.broker.failed()

    def _open_producer(self) -> bool:
        """Create the kafka-python producer for the broker's current address."""
        bootstrap = self.broker.address
        try:
            self._producer = open_producer(self._kafka, bootstrap, self._options)
        except Exception as exc:
            log.warning("govloop SDK: cannot connect to Kafka at %s: %s", bootstrap, exc)
            self._unreachable()
            return False
        self.broker.connected()
        self._checked_at = time.monotonic()
        # registered after the producer's own atexit hook, so ours runs first (LIFO)
        atexit.unregister(self._hook)
        atexit.register(self._hook)
        log.info("govloop SDK: connected to Kafka at %s", bootstrap)
        return True

    def _stalled(self) -> bool:
        """Work handed over, no ack for a while and no broker answering: back to probing.

        kafka-python would keep the producer spinning (and leaking a socket per
        reconnect attempt) through an outage; a plain TCP probe with backoff is cheaper.
        Only a delivery that was tried (records in flight, or a send refused) can
        stall; records the producer had not delivered go back to the buffer.
        """
        tried = self._inflight or self._refused
        if not tried or time.monotonic() - self._checked_at < _STALL:
            return False
        if self.broker.reachable():
            self._checked_at = time.monotonic()
            return False
        self._unreachable()
        self._drop_producer()
        return True

    def _pump(self) -> int:
        """Hand queued records to the producer (peek, send, then pop: never a false zero)."""
        queue, inflight, send = self._queue, self._inflight, self._producer.send
        timeout_error = self._kafka.errors.KafkaTimeoutError
        moved, future = 0, None
        while queue and moved < _PUMP_BATCH:
            record = queue[0]
            try:
                future = send(record[0], value=record[2], key=record[1])
            except timeout_error:  # no metadata yet (broker down or topic being created)
                self.errors += 1  # a failed hand-over: the record stays first in line
                self.retries += 1
                self._refused = True
                break
            except (TypeError, ValueError, self._kafka.errors.MessageSizeTooLargeError) as exc:
                log.warning("govloop SDK: record for %s rejected: %s", record[0], exc)
                self.errors += 1
                self._dropped_late += 1
                queue.popleft()
                continue
            inflight.append((future, record))
            queue.popleft()
            self._refused = False
            moved += 1
        if future is not None:
            future.add_both(lambda *_: self._wake.set())
        return moved

    def _reap(self) -> None:
        """Account for every completed delivery at the front of the in-flight queue."""
        inflight = self._inflight
        while inflight and inflight[0][0].is_done:
            future, record = inflight[0]
            if future.succeeded():
                self.sent += 1
                self._checked_at = time.monotonic()
            else:
                self.errors += 1
                exc = future.exception
                if future.retriable() and record[3] + 1 < self._max_attempts:
                    self.retries += 1
                    self._queue.appendleft((record[0], record[1], record[2], record[3] + 1))
                else:
                    log.warning("govloop SDK: dropped a record for %s: %s", record[0], exc)
                    self._dropped_late += 1
            inflight.popleft()

    def _finish_closing(self) -> bool:
        """While closing: flush within the deadline; True when there is nothing left to do."""
        remaining = self._deadline - time.monotonic()
        if self._queue and remaining > 0:
            return False
        if self._inflight and remaining > 0:
            # in slices, so that a broker gone meanwhile is noticed (and followed) in time
            with contextlib.suppress(self._kafka.errors.KafkaTimeoutError):
                self._producer.flush(timeout=min(remaining, _STALL))
            self._reap()
        return not self.buffered or self._deadline <= time.monotonic()

    def _notify_if_idle(self) -> None:
        if not self.buffered:
            with self._idle:
                self._idle.notify_all()

    def _drop_producer(self, timeout: float = 0.0, retry: bool = True) -> None:
        """Close the producer; what it had not delivered is queued again (or, if not
        ``retry``, counted as dropped).

        The books are done before ``connected`` turns False, and records are
        queued again before they leave the in-flight queue, so that neither a
        stats reader nor :meth:`flush` sees them missing.
        """
        producer, self._refused = self._producer, False
        if producer is not None:
            close_producer(self._kafka, producer, timeout)
        undelivered = []
        for future, record in self._inflight:
            if future.is_done and future.succeeded():
                self.sent += 1
            else:
                undelivered.append(record)
        if retry:
            self.retries += len(undelivered)
            self._queue.extendleft(reversed(undelivered))
        else:
            self._dropped_late += len(undelivered)
        self._inflight.clear()
        self._producer = None

    def _abandon(self) -> None:
        """Thread exit: close the producer and count whatever is left as dropped."""
        before = self._dropped_late
        self._drop_producer(timeout=max(0.0, self._deadline - time.monotonic()), retry=False)
        self._dropped_late += len(self._queue)
        self._queue.clear()
        left = self._dropped_late - before
        if left:
            log.warning("govloop SDK: closed with %d undelivered events (dropped)", left)
        with self._idle:
            self._idle.notify_all()


def _make_exit_hook(sender: Sender) -> Callable[[], None]:
    """An atexit hook that closes ``sender`` (2 s to deliver) without keeping it alive."""
    ref = weakref.ref(sender)
    return lambda: None if (s := ref()) is None else s.close(timeout=2.0)
