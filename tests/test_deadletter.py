"""Garbage in, dead letters out: one worker survives every kind of invalid input.

Hypothesis draws batches of invalid messages (binary junk, JSON that is not an
object, objects with a missing field, a wrong type, a bad schema tag, an
unknown field, probabilities that do not sum to 1, tombstones) and shuffles
them in among valid traffic for a fresh model and window.  Per example, every
invalid message must come out on ``deadletter`` exactly once, with a reason
naming the problem, its original payload and where it came from; the valid
events must be counted exactly in the window's snapshot; and the one worker
process started for the module must still be running at the end.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from govloop.config import Settings
from govloop.runtime import EmbeddedBroker
from govloop.schemas import DeadLetter, Feedback, MetricSnapshot, Prediction
from tests.kafka_helpers import (
    Running,
    TopicTail,
    module_deployment,
    produce_located,
    running_worker,
)

pytestmark = pytest.mark.integration

T0 = datetime(2030, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def module_settings(
    broker: EmbeddedBroker, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """An isolated deployment shared by every example of this module (one worker for all)."""
    return module_deployment(
        broker.bootstrap,
        redis_url,
        tmp_path_factory.mktemp("deadletter"),
        max_future_seconds=0,  # no bound: the events are dated 2030 (test_hostile_inputs: bounds)
    )


@pytest.fixture(scope="module")
def worker(module_settings: Settings) -> Iterator[Running]:
    with running_worker(module_settings) as running:
        yield running


# --- invalid messages, each with what its dead letter's reason must say -----------------------


@dataclass(frozen=True)
class Garbage:
    kind: str
    raw: bytes | None
    says: tuple[str, ...]  # substrings the reason must contain


PRED_BASE: dict[str, Any] = {
    "model": "junk",
    "model_version": "1",
    "request_id": "junk-r",
    "prediction": "a",
    "ts": "2030-06-01T00:00:00Z",
}
FB_BASE: dict[str, Any] = {"request_id": "junk-r", "label": "a", "ts": "2030-06-01T00:00:00Z"}

BASES = {"predictions": PRED_BASE, "feedback": FB_BASE}
TAGS = {"predictions": "govloop.prediction/1", "feedback": "govloop.feedback/1"}
FIELDS = {"predictions": set(Prediction.model_fields), "feedback": set(Feedback.model_fields)}

#: A field that must be there, or the message the model-level rule gives when it is removed.
REQUIRED = {
    "predictions": {
        "model": "model",
        "model_version": "model_version",
        "request_id": "request_id",
        "prediction": "needs one of",
    },
    "feedback": {"request_id": "request_id", "label": "needs one of"},
}

WRONG_TYPES: dict[str, list[tuple[str, Any]]] = {
    "predictions": [
        ("model", 7),
        ("model", None),
        ("model", ""),
        ("model_version", ["1"]),
        ("request_id", {"a": 1}),
        ("latency_ms", "slow"),
        ("latency_ms", -5),
        ("latency_ms", "12.5"),
        ("input_tokens", "5"),
        ("input_tokens", True),
        ("probabilities", {"a": True, "b": False}),
        ("score", "0.5"),
        ("experiment", None),
        ("ts", "2030-06-01T00:00:00"),
        ("ts", "2030-06-01 00:00:00Z"),
        ("ts", 1906502400),
        ("ts", "2030-06-01"),
        ("input_tokens", 1.5),
        ("output_tokens", "many"),
        ("features", [1, 2]),
        ("features", {"x": [1]}),
        ("segment", 3),
        ("embedding", "abc"),
        ("embedding", []),
        ("scores", {"judge": "good"}),
        ("ts", "yesterday"),
        ("event_id", ""),
        ("prediction", {"a": 1}),
        ("probabilities", {"a": "x"}),
        ("probabilities", {}),
        ("score", "high"),
        ("input_text", 3),
    ],
    "feedback": [
        ("request_id", 5),
        ("request_id", ""),
        ("label", [1]),
        ("label", {"a": 1}),
        ("positive", "maybe"),
        ("positive", "true"),
        ("positive", 1),
        ("rating", "5"),
        ("rating", False),
        ("rating", "high"),
        ("comment", 5),
        ("source", 12),
        ("ts", 1e300),
        ("event_id", None),
    ],
}


def loads_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return NotImplemented


def binary_junk() -> st.SearchStrategy[Garbage]:
    def classify(raw: bytes) -> Garbage:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return Garbage("binary", raw, ("not UTF-8",))
        data = loads_or_none(raw)
        if data is NotImplemented:
            return Garbage("binary", raw, ("not JSON",))
        if not isinstance(data, dict):
            return Garbage("binary", raw, ("expected a JSON object",))
        return Garbage("binary", raw, ("invalid govloop",))

    return st.binary(max_size=300).map(classify)


def non_objects() -> st.SearchStrategy[Garbage]:
    scalars = (
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    )
    values = st.recursive(
        scalars | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        ),
        max_leaves=10,
    ).filter(lambda v: not isinstance(v, dict))
    return values.map(
        lambda v: Garbage(
            "non-object", json.dumps(v).encode(), ("expected a JSON object", type(v).__name__)
        )
    )


def missing_field(topic: str) -> st.SearchStrategy[Garbage]:
    def make(field: str) -> Garbage:
        data = {k: v for k, v in BASES[topic].items() if k != field}
        says = REQUIRED[topic][field]
        if says == field:
            says = f"{field}: Field required"
        return Garbage("missing", json.dumps(data).encode(), (says,))

    return st.sampled_from(sorted(REQUIRED[topic])).map(make)


def wrong_type(topic: str) -> st.SearchStrategy[Garbage]:
    def make(pair: tuple[str, Any]) -> Garbage:
        field, value = pair
        data = BASES[topic] | {field: value}
        return Garbage("wrong-type", json.dumps(data).encode(), (field,))

    return st.sampled_from(WRONG_TYPES[topic]).map(make)


def bad_tag(topic: str) -> st.SearchStrategy[Garbage]:
    tags = (st.text(max_size=30) | st.sampled_from(list(TAGS.values())) | st.integers()).filter(
        lambda t: t not in ("", TAGS[topic])
    )
    return tags.map(
        lambda t: Garbage(
            "bad-tag",
            json.dumps(BASES[topic] | {"schema": t}).encode(),
            ("schema", "expected", TAGS[topic]),
        )
    )


def unknown_field(topic: str) -> st.SearchStrategy[Garbage]:
    names = st.text(min_size=1, max_size=12).filter(
        lambda k: k not in FIELDS[topic] and k not in ("schema", "schema_")
    )

    def make(name: str, value: Any) -> Garbage:
        data = BASES[topic] | {name: value}
        return Garbage("unknown", json.dumps(data).encode(), (name, "Extra inputs"))

    return st.builds(make, names, st.integers() | st.text(max_size=5) | st.none())


def bad_distribution() -> st.SearchStrategy[Garbage]:
    dists = st.dictionaries(
        st.text(min_size=1, max_size=5), st.floats(0.0, 1.0), min_size=1, max_size=5
    ).filter(lambda d: abs(sum(d.values()) - 1.0) > 0.01)

    def make(d: dict[str, float]) -> Garbage:
        data = {k: v for k, v in PRED_BASE.items() if k != "prediction"} | {"probabilities": d}
        return Garbage("probabilities", json.dumps(data).encode(), ("probabilities", "sum"))

    return dists.map(make)


TOMBSTONE = Garbage("tombstone", None, ("empty message",))


def garbage(topic: str) -> st.SearchStrategy[list[Garbage]]:
    """One of each kind (so every example covers them all) plus a few more drawn at random."""
    kinds = [
        binary_junk(),
        non_objects(),
        missing_field(topic),
        wrong_type(topic),
        bad_tag(topic),
        unknown_field(topic),
    ]
    if topic == "predictions":
        kinds.append(bad_distribution())
    each = st.tuples(*kinds).map(list)
    extra = st.lists(st.one_of(*kinds), max_size=8)
    return st.builds(lambda a, b: [*a, *b, TOMBSTONE], each, extra)


# --- valid traffic ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    count: int
    feedback_count: int
    labelled_count: int
    correct_count: int


def valid_traffic(
    model: str, start: datetime, outcomes: list[str]
) -> tuple[list[Prediction], list[Feedback], Expected]:
    """One prediction per outcome: 'none' (no feedback), 'right', 'wrong' or 'thumbs' (no label)."""
    preds, fbs = [], []
    for i, outcome in enumerate(outcomes):
        ts = start + timedelta(seconds=1 + i * 50 / max(1, len(outcomes)))
        rid = f"{model}-{i}"
        preds.append(
            Prediction(model=model, model_version="1", request_id=rid, prediction="a", ts=ts)
        )
        if outcome == "right":
            fbs.append(Feedback(request_id=rid, label="a", ts=ts))
        elif outcome == "wrong":
            fbs.append(Feedback(request_id=rid, label="b", ts=ts))
        elif outcome == "thumbs":
            fbs.append(Feedback(request_id=rid, positive=True, ts=ts))
    expected = Expected(
        count=len(outcomes),
        feedback_count=sum(o != "none" for o in outcomes),
        labelled_count=sum(o in ("right", "wrong") for o in outcomes),
        correct_count=outcomes.count("right"),
    )
    return preds, fbs, expected


def interleave(order: list[bool], valid: list[Any], junk: list[Garbage]) -> list[Any]:
    """The valid events in their order, with the garbage where ``order`` says ``False``."""
    vi, ji = iter(valid), iter(junk)
    return [next(vi) if is_valid else next(ji) for is_valid in order]


def orders(n_valid: int, n_junk: int) -> st.SearchStrategy[list[bool]]:
    return st.permutations([True] * n_valid + [False] * n_junk)


# --- the test -----------------------------------------------------------------------------------

EXAMPLE = itertools.count()


@hsettings(
    max_examples=3,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_invalid_input_goes_to_deadletter_and_valid_input_still_counts(
    module_settings: Settings, worker: Running, data: st.DataObject
) -> None:
    s = module_settings
    # draw everything before producing anything: an example hypothesis abandons part-way
    # through drawing must not leave messages behind
    outcomes = data.draw(
        st.lists(st.sampled_from(["none", "right", "wrong", "thumbs"]), min_size=1, max_size=30),
        label="outcomes",
    )
    junk = {t: data.draw(garbage(t), label=f"{t} garbage") for t in ("predictions", "feedback")}
    n_valid = {"predictions": len(outcomes), "feedback": sum(o != "none" for o in outcomes)}
    order = {t: data.draw(orders(n_valid[t], len(junk[t])), label=f"{t} order") for t in junk}
    k = next(EXAMPLE)
    model, start = f"dl{k}", T0 + timedelta(hours=k)
    preds, fbs, expected = valid_traffic(model, start, outcomes)
    batches = {
        "predictions": interleave(order["predictions"], preds, junk["predictions"]),
        "feedback": interleave(order["feedback"], fbs, junk["feedback"]),
    }

    sent: dict[tuple[str, int, int], Garbage] = {}
    valid_at: set[tuple[str, int, int]] = set()
    for topic, messages in batches.items():
        located = produce_located(
            s, topic, [m.raw if isinstance(m, Garbage) else m for m in messages]
        )
        for m, (partition, offset) in zip(messages, located, strict=True):
            where = (s.topic(topic), partition, offset)
            if isinstance(m, Garbage):
                sent[where] = m
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

    # readers made only now: their client threads use `random`, which hypothesis forbids
    # while it draws
    with TopicTail(s, "deadletter") as dead, TopicTail(s, "metrics") as metrics:
        assert dead.wait_for(lambda ev: sent.keys() <= letters(ev).keys(), 45), (
            sorted(sent.keys() - letters(dead.events).keys()),
            worker.tail(),
        )
        assert metrics.wait_for(mine, 45), worker.tail()
        dead.drain(0.5)  # a duplicate would be in by now: the window has closed

    by_source = letters(dead.events)
    assert not valid_at & by_source.keys(), "a valid event was dead-lettered"
    for where, g in sent.items():
        got = by_source[where]
        assert len(got) == 1, (where, g, got)
        letter = got[0]
        assert letter.partition == where[1] and letter.offset == where[2]
        assert letter.reason.strip(), (where, g)
        for needle in g.says:
            assert needle in letter.reason, (g.kind, needle, letter.reason, g.raw)
        raw = g.raw or b""
        assert letter.payload == raw.decode("utf-8", errors="replace"), (g.kind, letter.payload)

    snaps = mine(metrics.events)
    assert len(snaps) == 1, snaps
    snap = snaps[0]
    assert snap.window_start == start
    got = Expected(snap.count, snap.feedback_count, snap.labelled_count, snap.correct_count)
    assert got == expected
    assert worker.worker.proc is not None
    assert worker.worker.proc.poll() is None, worker.tail()
