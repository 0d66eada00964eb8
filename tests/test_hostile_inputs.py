"""Hostile input at the decode stage: the worker dead-letters it and keeps counting.

Hypothesis draws hostile records (a value of nested brackets, a value over the
size bound, invalid UTF-8, UTF-16, empty values and tombstones, numbers too
long to parse, timestamps in year 9999 or 1970, look-alike types, random
bytes) and shuffles them among valid predictions and feedback for a fresh
model and window.  Everything is sent by librdkafka (confluent-kafka), one
batch per codec: gzip, snappy, lz4 and zstd.  Per example, every hostile
record must come out on ``deadletter`` once with a reason naming its
problem, the valid events must be counted exactly in the window's snapshot
(a prediction sent three times without ``event_id`` counts once), and the
one worker started for the module must still be running.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Producer
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from govloop.config import Settings
from govloop.errors import EventError
from govloop.runtime import EmbeddedBroker
from govloop.schemas import DeadLetter, Event, Feedback, MetricSnapshot, Prediction, topic_of
from govloop.streams.decode import Decoder
from tests.kafka_helpers import Running, TopicTail, module_deployment, running_worker

CODECS = ("gzip", "snappy", "lz4", "zstd")
MAX_BYTES = 256 * 1024  # above the 200 KB of nested brackets the issue sent


@pytest.fixture(scope="module")
def module_settings(
    broker: EmbeddedBroker, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """One deployment and worker for every example, with the default bounds of time."""
    return module_deployment(
        broker.bootstrap,
        redis_url,
        tmp_path_factory.mktemp("hostile"),
        max_event_bytes=MAX_BYTES,  # the default bounds of time: a day back, 300 s ahead
    )


@pytest.fixture(scope="module")
def worker(module_settings: Settings) -> Iterator[Running]:
    with running_worker(module_settings) as running:
        yield running


# --- hostile records, each with what its dead letter's reason must say ------------------------


@dataclass(frozen=True)
class Hostile:
    kind: str
    raw: bytes | None
    says: str


PRED: dict[str, Any] = {
    "model": "hostile",
    "model_version": "1",
    "request_id": "h",
    "prediction": 1,
}


def pred(**fields: Any) -> bytes:
    return json.dumps(PRED | fields).encode()


def fixed() -> list[Hostile]:
    """One of each kind the issue found or the decoder must bound."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [
        Hostile("nested", b"[" * 200_000, "nested deeper than 64"),
        Hostile("nested-in-object", b'{"features": ' + b"{" * 5000 + b"}" * 5000 + b"}",
                "nested deeper than 64"),
        Hostile("too-large", pred(input_text="x" * MAX_BYTES), "max_event_bytes"),
        Hostile("not-utf-8", b'{"model": "\xff\xfe"}', "not UTF-8"),
        Hostile("utf-16", pred(ts=now).decode().encode("utf-16"), "not UTF-8"),
        Hostile("empty", b"", "not JSON"),
        Hostile("tombstone", None, "empty message"),
        Hostile("long-number", b'{"latency_ms": 1' + b"0" * 5000 + b"}", "not JSON"),
        Hostile("year-9999", pred(ts="9999-12-31T23:59:59Z"), "max_future_seconds"),
        Hostile("year-1970", pred(ts="1970-01-01T00:00:00Z"), "max_event_age_seconds"),
        Hostile("ts-epoch", pred(ts=1924992000), "RFC 3339"),
        Hostile("tokens-string", pred(ts=now, input_tokens="5"), "input_tokens"),
        Hostile("positive-one", json.dumps({"request_id": "h", "positive": 1}).encode(),
                "positive"),
    ]  # fmt: skip


def random_bytes() -> st.SearchStrategy[Hostile]:
    def classify(raw: bytes) -> Hostile:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return Hostile("binary", raw, "not UTF-8")
        try:
            json.loads(text)
        except ValueError:
            return Hostile("binary", raw, "not JSON")
        return Hostile("binary", raw, "")  # some JSON: a reason of some kind

    return st.binary(max_size=200).map(classify)


def deep(depth: int) -> Hostile:
    opened = "".join(("[", '{"a":')[i % 2] for i in range(depth))
    closed = "".join(("]", "}")[i % 2] for i in reversed(range(depth)))
    return Hostile("deep-mixed", f"{opened}1{closed}".encode(), "nested deeper than 64")


HOSTILE = st.lists(random_bytes() | st.integers(65, 3000).map(deep), max_size=6)


# --- valid traffic, and sending through librdkafka -------------------------------------------


def valid_traffic(model: str, start: datetime, n: int) -> tuple[list[Event], int, int]:
    """n predictions, every other one with a right label; (events, count, correct)."""
    events: list[Event] = []
    for i in range(n):
        ts = start + timedelta(seconds=1 + i * 50 / n)
        rid = f"{model}-{i}"
        events.append(
            Prediction(model=model, model_version="1", request_id=rid, prediction="a", ts=ts)
        )
        if i % 2 == 0:
            events.append(Feedback(request_id=rid, label="a", ts=ts))
    return events, n, (n + 1) // 2


def without_id(model: str, start: datetime) -> bytes:
    """A valid prediction without ``event_id``: its id comes from its content."""
    ts = (start + timedelta(seconds=55)).isoformat().replace("+00:00", "Z")
    return json.dumps(PRED | {"model": model, "request_id": f"{model}-resent", "ts": ts}).encode()


def send(
    settings: Settings, codec: str, items: list[Event | Hostile | bytes]
) -> list[tuple[str, int, int]]:
    """Produce ``items`` in one batch compressed with ``codec``; return where each went."""
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka,
            "compression.type": codec,
            "linger.ms": 50,
            "partitioner": "murmur2_random",
            "message.max.bytes": 4 * 1024 * 1024,
        }
    )
    located: dict[int, tuple[str, int, int]] = {}

    def delivered(i: int) -> Any:
        def report(err: Any, msg: Any) -> None:
            assert err is None, err
            located[i] = (msg.topic(), msg.partition(), msg.offset())

        return report

    for i, item in enumerate(items):
        if isinstance(item, Hostile):
            topic = settings.topic("feedback" if item.kind == "positive-one" else "predictions")
            key = b"tombstone" if item.raw is None else None
            producer.produce(topic, value=item.raw, key=key, on_delivery=delivered(i))
        elif isinstance(item, bytes):
            topic = settings.topic("predictions")
            producer.produce(topic, value=item, key=b"resent", on_delivery=delivered(i))
        else:
            t = topic_of(type(item))
            producer.produce(
                settings.topic(t.name), value=item.to_json(), key=t.key(item),
                on_delivery=delivered(i),
            )  # fmt: skip
        producer.poll(0)
    assert producer.flush(30) == 0
    return [located[i] for i in range(len(items))]


# --- the decoder on its own (no services) -------------------------------------------------------

NOW = 1_900_000_000.0  # 2030-03-17T17:46:40Z


def feedback_at(offset_seconds: float) -> bytes:
    ts = datetime.fromtimestamp(NOW + offset_seconds, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"request_id": "r", "label": 1, "ts": ts}).encode()


def verdict(decoder: Decoder, raw: bytes | None, topic: str = "feedback") -> str:
    try:
        decoder(f"govloop.{topic}", raw)
    except EventError as exc:
        return exc.reason
    return "ok"


def test_time_bounds_default_to_the_join_horizon_and_300_seconds_ahead() -> None:
    d = Decoder(Settings(), clock=lambda: NOW)
    assert verdict(d, feedback_at(-86_399)) == "ok"
    assert "more than 86400 s in the past (max_event_age_seconds" in verdict(
        d, feedback_at(-86_401)
    )
    assert verdict(d, feedback_at(299)) == "ok"
    assert "more than 300 s in the future (max_future_seconds" in verdict(d, feedback_at(301))


def test_time_bounds_follow_the_settings_and_0_lifts_them() -> None:
    tight = Decoder(Settings(max_event_age_seconds=60, max_future_seconds=5), clock=lambda: NOW)
    assert "60 s in the past" in verdict(tight, feedback_at(-61))
    assert "5 s in the future" in verdict(tight, feedback_at(6))
    assert Settings(join_horizon_seconds=10).max_event_age_seconds is None
    assert "10 s in the past" in verdict(
        Decoder(Settings(join_horizon_seconds=10), clock=lambda: NOW), feedback_at(-11)
    )
    env = Settings.model_validate({"max_future_seconds": "0", "max_event_age_seconds": "0"})
    free = Decoder(env, clock=lambda: NOW)
    assert verdict(free, feedback_at(1e10)) == "ok"
    assert verdict(free, feedback_at(-NOW)) == "ok"  # 1970


def test_values_over_the_size_bound_are_refused_unparsed() -> None:
    d = Decoder(Settings(max_event_bytes=100), clock=lambda: NOW)
    raw = feedback_at(0)
    padded = raw[:-1] + b" " * (100 - len(raw)) + b"}"
    assert len(padded) == 100 and verdict(d, padded) == "ok"
    over = padded[:-1] + b" }"
    assert verdict(d, over) == "value of 101 bytes is larger than 100 (max_event_bytes)"


@hsettings(max_examples=300, deadline=None)
@given(
    raw=st.binary(max_size=300)
    | st.builds(
        lambda n, b: b * n, st.integers(0, 100_000), st.sampled_from([b"[", b"{", b'{"a":['])
    )
    | st.none(),
    topic=st.sampled_from(["predictions", "feedback", "metrics", "gates"]),
)
def test_any_bytes_give_an_event_or_a_reason(raw: bytes | None, topic: str) -> None:
    assert verdict(Decoder(Settings(), clock=lambda: NOW), raw, topic)


# --- through the real broker and worker ---------------------------------------------------------

EXAMPLE = itertools.count()


@pytest.mark.integration
@hsettings(
    max_examples=3,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(n=st.integers(1, 20), extra=HOSTILE, seed=st.randoms(use_true_random=False))
def test_hostile_records_are_dead_lettered_and_valid_events_counted(
    module_settings: Settings, worker: Running, n: int, extra: list[Hostile], seed: Any
) -> None:
    s = module_settings
    k = next(EXAMPLE)
    model = f"hostile{k}"
    # an hour back, a window per example: well inside the default bounds
    start = datetime.fromtimestamp((time.time() // 3600 - 1) * 3600, UTC) + timedelta(minutes=k)
    valid, count, correct = valid_traffic(model, start, n)
    hostile = fixed() + extra
    items: list[Event | Hostile | bytes] = [*valid, *hostile, *[without_id(model, start)] * 3]
    seed.shuffle(items)

    sent: dict[tuple[str, int, int], Hostile] = {}
    valid_at: set[tuple[str, int, int]] = set()
    for c, codec in enumerate(CODECS):
        part = items[c :: len(CODECS)]
        for item, where in zip(part, send(s, codec, part), strict=True):
            if isinstance(item, Hostile):
                sent[where] = item
            else:
                valid_at.add(where)

    def letters(events: list[Any]) -> dict[tuple[str, int, int], list[DeadLetter]]:
        out: dict[tuple[str, int, int], list[DeadLetter]] = {}
        for d in events:
            assert isinstance(d, DeadLetter)
            out.setdefault((d.source_topic, d.partition or 0, d.offset or 0), []).append(d)
        return out

    def mine(events: list[Any]) -> list[MetricSnapshot]:
        return [
            m
            for m in events
            if isinstance(m, MetricSnapshot) and m.model == model and m.window == "tumbling"
        ]

    with TopicTail(s, "deadletter") as dead, TopicTail(s, "metrics") as metrics:
        assert dead.wait_for(lambda ev: sent.keys() <= letters(ev).keys(), 60), (
            sorted((w, sent[w].kind) for w in sent.keys() - letters(dead.events).keys()),
            worker.tail(),
        )
        assert metrics.wait_for(mine, 60), worker.tail()
        dead.drain(0.5)

    by_source = letters(dead.events)
    assert not valid_at & by_source.keys(), "a valid event was dead-lettered"
    for where, h in sent.items():
        got = by_source[where]
        assert len(got) == 1, (where, h.kind, got)
        assert got[0].reason.strip(), h.kind
        assert h.says in got[0].reason, (h.kind, h.says, got[0].reason)

    snaps = mine(metrics.events)
    assert len(snaps) == 1, snaps
    assert (snaps[0].window_start, snaps[0].count, snaps[0].correct_count) == (
        start,
        count + 1,  # the prediction sent three times
        correct,
    )
    assert worker.worker.proc is not None
    assert worker.worker.proc.poll() is None, worker.tail()
