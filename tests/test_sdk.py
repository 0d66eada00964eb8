"""The SDK against a real embedded broker: delivery, validation, outages, assignment."""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from govloop.client import Govloop, SdkStats, pick_variant
from govloop.client._broker import FOLLOW_AFTER, Broker
from govloop.client.sdk import EARLIEST_TS, FLUSH_TIMEOUT, MAX_FUTURE_SECONDS
from govloop.config import Settings
from govloop.errors import ConfigError, EventError
from govloop.runtime import (
    EmbeddedBroker,
    LocalStack,
    ensure_topics,
    free_port,
    wait_for_broker,
)
from govloop.schemas import Assignment, Feedback, Label, Prediction, decode, utcnow

TS = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def consume(settings: Settings, short: str, n: int, timeout: float = 30.0) -> list[Any]:
    """At least ``n`` records of a topic from the beginning (fewer if ``timeout`` passes)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        settings.topic(short),
        bootstrap_servers=settings.kafka,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
    finally:
        consumer.close()
    return out


def quiet_kafka(caplog: pytest.LogCaptureFixture) -> None:
    """Keep kafka-python's connection errors out of the captured logs.

    kafka-python 3.0.12 does not close a socket whose connect() failed; the
    exception it logs holds that socket (through its traceback).  A captured
    log record would keep it alive past the test's own ``gc.collect()``, which
    reclaims such sockets (ResourceWarning, ignored there) while the test runs.
    """
    caplog.set_level(logging.CRITICAL, logger="kafka")


def dead_address() -> str:
    """host:port on which nothing listens."""
    return f"127.0.0.1:{free_port()}"


def delivered(sent: int) -> SdkStats:
    """The stats of an SDK that delivered ``sent`` events and never met a failure."""
    return SdkStats(
        sent=sent,
        buffered=0,
        dropped=0,
        errors=0,
        retries=0,
        outages=0,
        reconnects=0,
        connected=True,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail the test if it does not within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def offline() -> Iterator[Govloop]:
    """An SDK whose broker is down (for tests that never reach the wire)."""
    gl = Govloop(Settings(kafka=dead_address()))
    yield gl
    gl.close(timeout=0)


# -- delivery ---------------------------------------------------------------------------


@pytest.mark.integration
def test_each_input_event_arrives_on_its_topic_and_decodes_equal(settings: Settings) -> None:
    prediction = {
        "model": "churn",
        "model_version": "3",
        "request_id": "r1",
        "subject_id": "u1",
        "features": {"age": 42, "plan": "pro"},
        "probabilities": {"yes": 0.8, "no": 0.2},
        "latency_ms": 12.5,
        "event_id": "p1",
        "ts": TS,
    }
    feedback = {"request_id": "r1", "label": "yes", "rating": 4.5, "event_id": "f1", "ts": TS}
    assignment = {
        "experiment": "exp",
        "subject_id": "u1",
        "variant": "b",
        "event_id": "a1",
        "ts": TS,
    }
    label = {"sample_id": "s1", "label": 1, "labeler": "ann", "event_id": "l1", "ts": TS}
    generic = Label(sample_id="s2", label="cat", labeler="bob", ts=TS)
    with Govloop.connect(settings) as gl:
        assert gl.emit_prediction(**prediction) == "p1"
        assert gl.emit_feedback(**feedback) == "f1"
        assert gl.emit_assignment(**assignment) == "a1"
        assert gl.emit_label(**label) == "l1"
        assert gl.emit(generic) == generic.event_id
        assert gl.flush(timeout=30)
        assert gl.stats == delivered(5)

    expected = {
        "predictions": [(b"r1", Prediction(**prediction))],
        "feedback": [(b"r1", Feedback(**feedback))],
        "assignments": [(b"u1", Assignment(**assignment))],
        "labels": [(b"s1", Label(**label)), (b"s2", generic)],
    }
    for short, want in expected.items():
        records = consume(settings, short, len(want))
        got = sorted(((r.key, decode(short, r.value)) for r in records), key=lambda kv: kv[0])
        assert got == want, short


@pytest.mark.integration
def test_flush_returns_as_soon_as_everything_is_acknowledged(settings: Settings) -> None:
    with Govloop.connect(settings) as gl:
        took = []
        for round_ in range(5):
            for i in range(20):
                gl.emit_feedback(request_id=f"r{round_}-{i}", positive=True)
            started = time.monotonic()
            assert gl.flush(timeout=30)
            took.append(time.monotonic() - started)
        assert gl.stats.sent == 100
    assert min(took) < 0.3, took  # not a poll interval (0.5 s) late


@pytest.mark.integration
def test_connect_reads_the_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("GOVLOOP_KAFKA", settings.kafka or "")
    monkeypatch.setenv("GOVLOOP_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("GOVLOOP_HOME", str(tmp_path))
    with Govloop.connect() as gl:
        assert gl.settings.kafka == settings.kafka
        event_id = gl.emit_feedback(request_id="r9", positive=True)
        assert gl.flush(timeout=30)
    [record] = consume(settings, "feedback", 1)
    assert decode("feedback", record.value).event_id == event_id


def test_connect_without_a_broker_address_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("GOVLOOP_KAFKA", raising=False)
    with pytest.raises(ConfigError, match="GOVLOOP_KAFKA"):
        Govloop.connect(Settings(home=tmp_path))


def test_a_malformed_broker_address_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="host:port"):
        Govloop.connect(Settings(kafka="localhost"))


@pytest.mark.integration
def test_assign_is_sticky_and_emits_one_assignment_per_subject(settings: Settings) -> None:
    with Govloop.connect(settings) as gl:
        first = gl.assign("ranker", "u1", ["control", "treatment"])
        assert all(gl.assign("ranker", "u1", ["control", "treatment"]) == first for _ in range(5))
        second = gl.assign("ranker", "u2", ["control", "treatment"], weights=[0, 1])
        assert second == "treatment"
        assert gl.flush(timeout=30)
        assert gl.stats.sent == 2
    records = consume(settings, "assignments", 2)
    events = sorted((decode("assignments", r.value) for r in records), key=lambda e: e.subject_id)
    assert [(e.subject_id, e.variant) for e in events] == [("u1", first), ("u2", "treatment")]


# -- validation -------------------------------------------------------------------------

GOOD_PREDICTION = {"model": "m", "model_version": "1", "request_id": "r", "prediction": "yes"}


@pytest.mark.parametrize(
    ("method", "fields", "named"),
    [
        (
            "emit_prediction",
            {k: v for k, v in GOOD_PREDICTION.items() if k != "model_version"},
            "model_version: Field required",
        ),
        (
            "emit_prediction",
            {**GOOD_PREDICTION, "probabilities": {"a": 0.9, "b": 0.6}},
            "probabilities: probabilities sum to 1.5",
        ),
        ("emit_prediction", {**GOOD_PREDICTION, "latency_ms": -1}, "latency_ms"),
        ("emit_prediction", {**GOOD_PREDICTION, "colour": "red"}, "colour"),
        (
            "emit_prediction",
            {k: v for k, v in GOOD_PREDICTION.items() if k != "prediction"},
            "one of prediction, probabilities, score or output_text",
        ),
        ("emit_feedback", {"request_id": "r"}, "needs one of label, positive or rating"),
        ("emit_feedback", {"label": "yes"}, "request_id: Field required"),
        ("emit_assignment", {"experiment": "e", "subject_id": "u", "variant": ""}, "variant"),
        ("emit_label", {"sample_id": "s", "label": 1}, "labeler: Field required"),
        ("emit_prediction", {**GOOD_PREDICTION, "input_text": "x" * 1_100_000}, "bytes"),
    ],
)
def test_malformed_arguments_raise_value_error_naming_the_field(
    offline: Govloop, method: str, fields: dict[str, Any], named: str
) -> None:
    started = time.monotonic()
    with pytest.raises(ValueError, match=named):
        getattr(offline, method)(**fields)
    assert time.monotonic() - started < 1.0
    assert offline.stats.buffered == 0


@pytest.mark.parametrize(
    ("ts", "named"),
    [
        ("9999-12-31T23:59:59Z", "ts: 9999-12-31T23:59:59.*ahead of this machine's clock"),
        (datetime(2200, 1, 1, tzinfo=UTC), "ts: 2200-01-01T00:00:00.*more than 300 s ahead"),
        ("1970-01-01T00:00:00Z", "ts: 1970-01-01T00:00:00.*before 2000-01-01"),
        ("1999-12-31T23:59:59.999999Z", "ts: 1999-12-31T23:59:59.999999.*before 2000-01-01"),
    ],
)
def test_implausible_timestamps_are_refused_before_sending(
    offline: Govloop, ts: Any, named: str
) -> None:
    with pytest.raises(EventError, match=named):
        offline.emit_prediction(**GOOD_PREDICTION, ts=ts)
    with pytest.raises(EventError, match=named):
        offline.emit(Feedback(request_id="r", positive=True, ts=ts))
    assert offline.stats.buffered == 0 and offline.stats.dropped == 0


def test_the_future_limit_is_relative_to_the_clock_and_configurable(offline: Govloop) -> None:
    margin = timedelta(seconds=60)  # far more than this test takes to run
    soon = utcnow() + timedelta(seconds=MAX_FUTURE_SECONDS) - margin
    offline.emit_prediction(**GOOD_PREDICTION, ts=soon)
    offline.emit_prediction(**GOOD_PREDICTION, ts=EARLIEST_TS)
    with pytest.raises(EventError, match="ts: "):
        offline.emit_prediction(**GOOD_PREDICTION, ts=soon + 2 * margin)
    assert offline.stats.buffered == 2

    strict = Govloop(Settings(kafka=dead_address()), max_future_seconds=0)
    try:
        with pytest.raises(EventError, match="more than 0 s ahead"):
            strict.emit_feedback(request_id="r", positive=True, ts=utcnow() + margin)
        strict.emit_feedback(request_id="r", positive=True)  # now is not in the future
        assert strict.stats.buffered == 1
    finally:
        strict.close(timeout=0)


@pytest.mark.parametrize("seconds", [-1, float("nan"), None])
def test_max_future_seconds_must_be_finite_and_not_negative(seconds: Any) -> None:
    with pytest.raises(ValueError, match="max_future_seconds: expected"):
        Govloop(Settings(kafka=dead_address()), max_future_seconds=seconds)


def test_emit_wants_an_event(offline: Govloop) -> None:
    with pytest.raises(TypeError):
        offline.emit({"request_id": "r"})  # type: ignore[arg-type]


# -- outages ----------------------------------------------------------------------------


def test_a_down_broker_never_blocks_or_raises() -> None:
    started = time.monotonic()
    gl = Govloop.connect(Settings(kafka=dead_address(), sdk_buffer=1000))
    assert time.monotonic() - started < 2.0
    slowest, started = 0.0, time.monotonic()
    for i in range(10_000):
        t = time.perf_counter()
        gl.emit_prediction(model="m", model_version="1", request_id=f"r{i}", score=0.5)
        slowest = max(slowest, time.perf_counter() - t)
    assert time.monotonic() - started < 10.0
    assert slowest < 1.0
    stats = gl.stats
    assert stats.dropped + stats.buffered == 10_000
    assert stats.buffered == 1000 and stats.sent == 0 and not stats.connected
    assert not gl.flush(timeout=0.2)

    started = time.monotonic()
    gl.close()
    assert time.monotonic() - started < 3.0
    stats = gl.stats
    assert (stats.sent, stats.buffered, stats.dropped) == (0, 0, 10_000)
    # one outage (the broker was never there), each failed connection attempt an error
    assert (stats.outages, stats.reconnects, stats.retries) == (1, 0, 0)
    assert stats.errors >= 1 and not stats.connected
    gl.emit_feedback(request_id="late", positive=True)  # after close: counted, not raised
    assert gl.stats.dropped == 10_001


@pytest.mark.integration
def test_buffered_events_are_delivered_when_the_broker_comes_up(tmp_path: Any) -> None:
    port = free_port()
    settings = Settings(
        kafka=f"127.0.0.1:{port}",
        topic_prefix=f"t{uuid.uuid4().hex[:12]}.",
        partitions=2,
        home=tmp_path,
    )
    gl = Govloop.connect(settings)
    ids = {
        gl.emit_prediction(model="m", model_version="1", request_id=f"r{i}", score=i / 200)
        for i in range(200)
    }
    assert gl.stats.buffered == 200 and gl.stats.sent == 0
    assert not gl.flush(timeout=0.3)

    with EmbeddedBroker(port=port) as broker:
        wait_for_broker(broker.bootstrap)
        ensure_topics(settings)
        try:
            assert gl.flush(timeout=30)
            stats = gl.stats
            # the first connection is not a reconnect; the probes that failed before it are
            # errors (and sends made before the topics existed, retries)
            assert stats == dataclasses.replace(
                delivered(200), errors=stats.errors, retries=stats.retries, outages=1
            )
            assert stats.errors >= 1
        finally:
            gl.close()
        records = consume(settings, "predictions", 200)
    assert {decode("predictions", r.value).event_id for r in records} == ids


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore::ResourceWarning")  # see quiet_kafka
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_events_buffered_during_an_outage_are_delivered_after_it(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    quiet_kafka(caplog)
    port = free_port()
    settings = Settings(
        kafka=f"127.0.0.1:{port}",
        topic_prefix=f"t{uuid.uuid4().hex[:12]}.",
        partitions=2,
        home=tmp_path,
    )
    broker = EmbeddedBroker(port=port).start()
    try:
        wait_for_broker(broker.bootstrap)
        ensure_topics(settings)
        gl = Govloop.connect(settings)
        gl.emit_feedback(request_id="before", positive=True)
        assert gl.flush(timeout=30)
        broker.stop()  # the memory broker loses its topics and records

        ids = {gl.emit_feedback(request_id=f"r{i}", rating=i) for i in range(100)}
        wait_until(lambda: not gl.stats.connected)
        assert not gl.flush(timeout=0.5)  # the broker is down: flush gives up, nothing is lost
        stats = gl.stats
        assert (stats.sent, stats.buffered, stats.dropped) == (1, 100, 0)
        assert (stats.outages, stats.reconnects) == (1, 0)
        assert stats.errors >= 1

        broker.start()
        wait_for_broker(broker.bootstrap)
        ensure_topics(settings)
        assert gl.flush(timeout=30)
        gl.close()
        stats = gl.stats
        assert (stats.sent, stats.dropped, stats.outages, stats.reconnects) == (101, 0, 1, 1)
        records = consume(settings, "feedback", 100)
    finally:
        broker.stop()
    assert {decode("feedback", r.value).event_id for r in records} == ids
    gc.collect()


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore::ResourceWarning")  # see quiet_kafka
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_close_accounts_for_what_a_vanished_broker_did_not_take(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    quiet_kafka(caplog)
    port = free_port()
    settings = Settings(
        kafka=f"127.0.0.1:{port}",
        topic_prefix=f"t{uuid.uuid4().hex[:12]}.",
        partitions=2,
        home=tmp_path,
    )
    with EmbeddedBroker(port=port) as broker:
        wait_for_broker(broker.bootstrap)
        ensure_topics(settings)
        gl = Govloop.connect(settings)
        gl.emit_feedback(request_id="r0", positive=True)
        assert gl.flush(timeout=30)
    for i in range(50):
        gl.emit_feedback(request_id=f"r{i + 1}", positive=False)
    started = time.monotonic()
    gl.close(timeout=1.0)
    assert time.monotonic() - started < 6.0
    stats = gl.stats
    assert stats.buffered == 0
    assert stats.sent + stats.dropped == 51 and stats.sent >= 1
    gc.collect()


# -- flush never blocks for ever ---------------------------------------------------------


def test_flush_by_default_gives_up_in_finite_time_when_no_broker_answers(
    offline: Govloop,
) -> None:
    offline.emit_feedback(request_id="r", positive=True)
    result: list[bool] = []
    started = time.monotonic()
    waiter = threading.Thread(target=lambda: result.append(offline.flush()), daemon=True)
    waiter.start()
    waiter.join(FLUSH_TIMEOUT * 6)  # generous: only "returns at all" is checked
    assert not waiter.is_alive(), "flush() with the default timeout did not return"
    assert result == [False]
    assert time.monotonic() - started >= FLUSH_TIMEOUT  # it did wait, and gave up
    assert offline.stats.buffered == 1  # still buffered, not dropped


@pytest.mark.integration
def test_flush_by_default_returns_true_once_a_real_broker_took_everything(
    settings: Settings,
) -> None:
    with Govloop.connect(settings) as gl:
        for i in range(50):
            gl.emit_feedback(request_id=f"r{i}", positive=True)
        assert gl.flush()
        assert gl.stats == delivered(50)


@pytest.mark.parametrize("timeout", [None, -1, float("nan"), float("inf"), "5", True])
def test_flush_and_close_want_a_finite_number_of_seconds(offline: Govloop, timeout: Any) -> None:
    with pytest.raises(ValueError, match="timeout: expected"):
        offline.flush(timeout)
    with pytest.raises(ValueError, match="timeout: expected"):
        offline.close(timeout)
    assert not offline.closed


# -- following `govloop up` to a new broker ----------------------------------------------


def announce(broker: EmbeddedBroker, home: Any, prefix: str, redis_url: str) -> LocalStack:
    """A ``govloop up`` of ``broker``: topics created and ``home/runtime.json`` written."""
    stack = LocalStack(
        Settings(
            kafka=broker.bootstrap,
            redis_url=SecretStr(redis_url),
            home=home,
            topic_prefix=prefix,
            partitions=2,
        )
    )
    stack.start()
    return stack


def consume_exactly(bootstrap: str, topic: str, n: int, timeout: float = 30.0) -> list[Any]:
    """Every record of ``topic`` (a log no producer writes to any more), with kafka-python.

    Reads until ``n`` records came, then reads on until a poll brings nothing
    more: what a resent event would add is there too (Tansu's end offsets
    cannot say where the log ends; they count batches).
    """
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < n:
            assert time.monotonic() < deadline, f"{len(out)} records of {n} came"
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
        while more := consumer.poll(timeout_ms=1000):
            for records in more.values():
                out.extend(records)
    finally:
        consumer.close()
    return out


@pytest.fixture
def first_up(
    tmp_path: Any, redis_url: str, caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[EmbeddedBroker, Govloop, str]]:
    """A ``govloop up`` on port A, an SDK that found it through runtime.json, one event sent."""
    quiet_kafka(caplog)
    prefix = f"t{uuid.uuid4().hex[:12]}."
    broker = EmbeddedBroker().start()
    stack = announce(broker, tmp_path, prefix, redis_url)
    gl = Govloop.connect(Settings(kafka=None, home=tmp_path, topic_prefix=prefix))
    try:
        assert gl.bootstrap == broker.bootstrap
        gl.emit_feedback(request_id="before", positive=True)
        assert gl.flush(timeout=30)
        stack.stop()  # `govloop up` exits: runtime.json goes, then the broker
        broker.stop()
        yield broker, gl, prefix
    finally:
        gl.close(timeout=0)
        broker.stop()


def second_broker(first: EmbeddedBroker) -> EmbeddedBroker:
    """An embedded broker on another port than ``first``'s."""
    port = free_port()
    while port == first.port:
        port = free_port()
    return EmbeddedBroker(port=port).start()


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore::ResourceWarning")  # see quiet_kafka
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_sdk_follows_govloop_up_to_its_new_port_and_counts_the_outage(
    first_up: tuple[EmbeddedBroker, Govloop, str],
    tmp_path: Any,
    redis_url: str,
) -> None:
    old, gl, prefix = first_up
    ids = {gl.emit_feedback(request_id=f"r{i}", label="yes") for i in range(500)}
    wait_until(lambda: not gl.stats.connected)  # the outage is noticed
    stats = gl.stats
    assert (stats.sent, stats.buffered, stats.dropped, stats.outages) == (1, 500, 0, 1)
    assert stats.errors >= 1 and stats.reconnects == 0
    # an outage is noticed by a delivery tried: records in flight (put back in the buffer)
    # or a send the producer refused for want of metadata (the record kept first in line)
    assert stats.retries >= 1, stats

    new = second_broker(old)
    try:
        stack = announce(new, tmp_path, prefix, redis_url)
        assert gl.flush(timeout=60)
        assert gl.bootstrap == new.bootstrap
        stats = gl.stats
        assert (stats.sent, stats.buffered, stats.dropped) == (501, 0, 0)
        assert (stats.outages, stats.reconnects) == (1, 1)
        gl.close()
        records = consume_exactly(new.bootstrap, f"{prefix}feedback", 500)
        stack.stop()
    finally:
        new.stop()
    assert len(records) == 500
    assert {decode("feedback", r.value).event_id for r in records} == ids
    gc.collect()


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore::ResourceWarning")  # see quiet_kafka
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_close_delivers_to_the_new_broker_what_it_buffered_for_the_old_one(
    first_up: tuple[EmbeddedBroker, Govloop, str],
    tmp_path: Any,
    redis_url: str,
) -> None:
    old, gl, prefix = first_up
    new = second_broker(old)
    try:
        stack = announce(new, tmp_path, prefix, redis_url)
        # nothing was pending, so the SDK has not noticed the old broker is gone: close
        # hands these to a producer of the old broker, and must find the new one in time
        assert gl.stats.connected and gl.bootstrap == old.bootstrap
        ids = {gl.emit_feedback(request_id=f"r{i}", rating=i) for i in range(300)}
        gl.close(timeout=60)
        stats = gl.stats
        assert (stats.sent, stats.buffered, stats.dropped) == (301, 0, 0)
        assert stats.reconnects == 1 and gl.bootstrap == new.bootstrap
        records = consume_exactly(new.bootstrap, f"{prefix}feedback", 300)
        stack.stop()
    finally:
        new.stop()
    assert {decode("feedback", r.value).event_id for r in records} == ids
    assert len(records) == 300
    gc.collect()


@pytest.mark.integration
def test_a_configured_broker_address_is_kept_whatever_runtime_json_says(
    settings: Settings, redis_url: str, tmp_path: Any
) -> None:
    stack = LocalStack(settings)  # runtime.json in settings.home names the live broker
    stack.start()
    try:
        dead = dead_address()
        gl = Govloop.connect(settings.model_copy(update={"kafka": dead}))
        try:
            gl.emit_feedback(request_id="r", positive=True)
            wait_until(lambda: gl.stats.errors > FOLLOW_AFTER)  # past where it would follow
            assert gl.bootstrap == dead
            assert (gl.stats.sent, gl.stats.buffered) == (0, 1)
        finally:
            gl.close(timeout=0)
    finally:
        stack.stop()
    assert gl.stats.dropped == 1


@pytest.mark.parametrize(
    ("found", "moved"),
    [(None, False), ("", False), ("127.0.0.1:1", False), ("no-port", False), ("h:2", True)],
)
def test_the_broker_moves_only_to_a_new_well_formed_address(found: Any, moved: bool) -> None:
    broker = Broker("127.0.0.1:1", locate=lambda: found)
    assert broker.relocate() is moved
    assert broker.address == (found if moved else "127.0.0.1:1")
    assert not Broker("127.0.0.1:1").relocate()  # without locate it stays where it is


# -- assignment -------------------------------------------------------------------------


def test_pick_variant_is_sticky_and_follows_weights() -> None:
    variants, weights = ["a", "b", "c"], [0.2, 0.3, 0.5]
    picks = [pick_variant("exp", f"user-{i}", variants, weights) for i in range(20_000)]
    assert picks == [pick_variant("exp", f"user-{i}", variants, weights) for i in range(20_000)]
    shares = Counter(picks)
    for variant, weight in zip(variants, weights, strict=True):
        assert abs(shares[variant] / 20_000 - weight) < 0.02, shares
    # another experiment buckets the same subjects independently
    other = [pick_variant("exp-2", f"user-{i}", ["a", "b"]) for i in range(20_000)]
    same = sum((p == "a") == (o == "a") for p, o in zip(picks, other, strict=True)) / 20_000
    assert abs(same - (0.2 * 0.5 + 0.8 * 0.5)) < 0.02
    assert {pick_variant("exp", f"user-{i}", ["x", "y"], [1, 0]) for i in range(100)} == {"x"}


@pytest.mark.parametrize(
    ("variants", "weights"),
    [
        ([], None),
        (["a", "b"], [1.0]),
        (["a", "b"], [1.0, -1.0]),
        (["a"], [0.0]),
        (["a", "b"], [1.0, float("nan")]),
    ],
)
def test_pick_variant_rejects_bad_arguments(variants: list[str], weights: Any) -> None:
    with pytest.raises(ValueError):
        pick_variant("exp", "u", variants, weights)


def test_stats_is_a_frozen_snapshot(offline: Govloop) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        offline.stats.sent = 1  # type: ignore[misc]
