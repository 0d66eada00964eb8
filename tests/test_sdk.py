"""The SDK against a real embedded broker: delivery, validation, outages, assignment."""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from govloop.client import Govloop, SdkStats, pick_variant
from govloop.config import Settings
from govloop.errors import ConfigError
from govloop.runtime import EmbeddedBroker, ensure_topics, free_port, wait_for_broker
from govloop.schemas import Assignment, Feedback, Label, Prediction, decode

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
        assert gl.stats == SdkStats(sent=5, buffered=0, dropped=0, errors=0, connected=True)

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
    assert gl.stats == SdkStats(sent=0, buffered=0, dropped=10_000, errors=0, connected=False)
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
            assert gl.stats == SdkStats(sent=200, buffered=0, dropped=0, errors=0, connected=True)
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
        deadline = time.monotonic() + 20
        while gl.stats.connected and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gl.stats == SdkStats(sent=1, buffered=100, dropped=0, errors=0, connected=False)

        broker.start()
        wait_for_broker(broker.bootstrap)
        ensure_topics(settings)
        assert gl.flush(timeout=30)
        gl.close()
        assert gl.stats.sent == 101 and gl.stats.dropped == 0
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
