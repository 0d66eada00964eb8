"""Event contracts: valid shapes pass, invalid ones name the field, the wire form round-trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from govloop.errors import EventError
from govloop.schemas import (
    TOPICS,
    Assignment,
    DatasetEvent,
    DeadLetter,
    DriftAlert,
    Event,
    ExperimentEvent,
    Feedback,
    GateResult,
    Label,
    MetricSnapshot,
    Prediction,
    RuleResult,
    SampleSelected,
    decode,
    describe_validation_error,
    topic_of,
)

T = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

TABULAR: dict[str, Any] = {
    "model": "churn",
    "model_version": "3",
    "request_id": "r1",
    "subject_id": "u1",
    "segment": {"country": "DE", "premium": True},
    "latency_ms": 12.5,
    "features": {"age": 42, "income": 51234.5, "plan": "gold", "active": False},
    "probabilities": {"yes": 0.75, "no": 0.25},
}

LLM: dict[str, Any] = {
    "model": "support-bot",
    "model_version": "2024-06-01",
    "request_id": "r2",
    "input_text": "How do I reset my password?",
    "output_text": "Open settings, then 'Security'.",
    "input_tokens": 9,
    "output_tokens": 7,
    "scores": {"toxicity": 0.01, "judge": 4.5},
    "embedding": [0.1, -0.2, 0.3],
    "latency_ms": 840.0,
}

#: The minimal valid prediction each rejection below starts from.
BASE: dict[str, Any] = {"model": "m", "model_version": "1", "request_id": "r", "prediction": "a"}


def reason(event_type: type[Event], /, **data: Any) -> str:
    """The one-line reason ``event_type`` rejects ``data`` with."""
    with pytest.raises(ValidationError) as info:
        event_type(**data)
    return describe_validation_error(info.value)


# --- valid shapes ------------------------------------------------------------------------------


def test_tabular_prediction() -> None:
    p = Prediction(**TABULAR)
    assert p.schema_ == "govloop.prediction/1"
    assert p.features == TABULAR["features"]
    assert p.predicted_label == "yes"
    assert len(p.event_id) == 32
    assert p.ts.tzinfo is UTC


@pytest.mark.parametrize(
    "output",
    [
        {"prediction": "yes"},
        {"prediction": 3},
        {"prediction": 2.5},
        {"prediction": True},
        {"score": 0.31},
        {"probabilities": {"only": 1.0}},
        {"output_text": ""},
    ],
)
def test_prediction_outputs(output: dict[str, Any]) -> None:
    p = Prediction(model="m", model_version="1", request_id="r", **output)
    key, value = next(iter(output.items()))
    assert getattr(p, key) == value


def test_probabilities_tolerate_rounding() -> None:
    p = Prediction(**BASE | {"probabilities": {"a": 0.3333, "b": 0.3333, "c": 0.3333}})
    assert p.prediction == "a"  # prediction wins over the most probable class
    assert (
        Prediction(
            **{**BASE, "prediction": None, "probabilities": {"a": 0.2, "b": 0.8}}
        ).predicted_label
        == "b"
    )


def test_llm_prediction() -> None:
    p = Prediction(**LLM)
    assert p.output_text == LLM["output_text"]
    assert p.features == {}
    assert p.predicted_label is None
    assert p.scores == {"toxicity": 0.01, "judge": 4.5}


@pytest.mark.parametrize(
    "data",
    [
        {"label": "yes"},
        {"label": 0},
        {"positive": False},
        {"rating": 4.0},
        {"positive": True, "comment": "great", "source": "support"},
    ],
)
def test_feedback_shapes(data: dict[str, Any]) -> None:
    f = Feedback(request_id="r1", **data)
    assert f.schema_ == "govloop.feedback/1"
    for key, value in data.items():
        assert getattr(f, key) == value


def test_assignment_and_label() -> None:
    a = Assignment(experiment="ranker", subject_id="u1", variant="B", model="rk", model_version="7")
    assert (a.schema_, a.variant) == ("govloop.assignment/1", "B")
    label = Label(sample_id="s1", request_id="r1", label="spam", labeler="ann", dataset="d1")
    assert (label.schema_, label.label) == ("govloop.label/1", "spam")


# --- rejections name the field -----------------------------------------------------------------


def test_missing_model_version() -> None:
    data = {k: v for k, v in BASE.items() if k != "model_version"}
    assert reason(Prediction, **data) == "model_version: Field required"


@pytest.mark.parametrize("field", ["model_version", "request_id", "model"])
def test_empty_identifiers(field: str) -> None:
    assert reason(Prediction, **BASE | {field: ""}).startswith(f"{field}: String should have")


def test_negative_latency() -> None:
    assert reason(Prediction, **BASE, latency_ms=-1) == (
        "latency_ms: Input should be greater than or equal to 0"
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers(bad: float) -> None:
    assert reason(Prediction, **BASE, features={"x": 1.0, "age": bad}) == (
        "features.age: Input should be a string, a boolean or a finite number"
    )
    assert reason(Prediction, **BASE, latency_ms=bad).startswith("latency_ms: ")
    assert reason(Prediction, **BASE, scores={"judge": bad}) == (
        "scores.judge: Input should be a finite number"
    )
    assert reason(Prediction, **BASE, embedding=[0.0, bad]) == (
        "embedding.1: Input should be a finite number"
    )
    assert reason(Prediction, **BASE, score=bad) == "score: Input should be a finite number"
    assert reason(Feedback, request_id="r", rating=bad) == "rating: Input should be a finite number"


@pytest.mark.parametrize(
    ("probabilities", "message"),
    [
        (
            {"a": 1.2, "b": -0.2},
            "probabilities.a: Input should be less than or equal to 1; "
            "probabilities.b: Input should be greater than or equal to 0",
        ),
        ({"a": float("nan")}, "probabilities.a: Input should be a finite number"),
        ({"a": float("inf"), "b": 0.0}, "probabilities.a: Input should be a finite number"),
        ({"a": 0.5, "b": 0.2}, "probabilities: probabilities sum to 0.7000, not 1"),
        ({"a": 0.6, "b": 0.6}, "probabilities: probabilities sum to 1.2000, not 1"),
        ({}, "probabilities: Dictionary should have at least 1 item after validation, not 0"),
    ],
)
def test_bad_probabilities(probabilities: dict[str, float], message: str) -> None:
    data = {k: v for k, v in BASE.items() if k != "prediction"}
    assert reason(Prediction, **data, probabilities=probabilities) == message


def test_prediction_without_output() -> None:
    assert reason(Prediction, model="m", model_version="1", request_id="r", features={"x": 1}) == (
        "event: a prediction needs one of prediction, probabilities, score or output_text"
    )


def test_feedback_with_nothing() -> None:
    assert reason(Feedback, request_id="r", comment="meh") == (
        "event: feedback needs one of label, positive or rating"
    )


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (Prediction, BASE),
        (Feedback, {"request_id": "r", "label": 1}),
        (Assignment, {"experiment": "e", "subject_id": "s", "variant": "A"}),
        (Label, {"sample_id": "s", "label": 1, "labeler": "l"}),
    ],
)
def test_unknown_fields_are_rejected(model: type[Event], data: dict[str, Any]) -> None:
    assert reason(model, **data, colour="blue") == "colour: Extra inputs are not permitted"


def test_wrong_schema_tag() -> None:
    assert reason(Prediction, **BASE, schema="govloop.feedback/1") == (
        "schema: expected 'govloop.prediction/1', got 'govloop.feedback/1'"
    )
    assert reason(Prediction, **BASE, schema="govloop.prediction/2").startswith("schema: ")
    with pytest.raises(EventError, match=r"invalid govloop.feedback/1: schema: expected"):
        decode(
            "feedback",
            json.dumps({"schema": "govloop.prediction/1", "request_id": "r", "label": 1}),
        )


def test_right_schema_tag_is_accepted() -> None:
    assert Prediction(**BASE, schema="govloop.prediction/1").schema_ == "govloop.prediction/1"
    assert Prediction(**BASE, schema=None).schema_ == "govloop.prediction/1"


def test_several_problems_in_one_line() -> None:
    message = reason(Prediction, model="m", request_id="r", prediction="a", latency_ms=-3, extra=1)
    assert message == (
        "model_version: Field required; "
        "latency_ms: Input should be greater than or equal to 0; "
        "extra: Extra inputs are not permitted"
    )


def test_describe_validation_error_nested_location() -> None:
    message = reason(Prediction, **BASE, features={"x": [1, 2]})
    assert message == "features.x: Input should be a string, a boolean or a finite number"
    assert "\n" not in message


# --- decode ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "empty message (no value)"),
        (b"{not json", "not JSON: "),
        (b"\xff\xfe", "not UTF-8: "),
        (b"", "not JSON: "),
        (b"[" * 200_000, "not JSON we read: nested deeper than 64 levels"),
        (b'{"model": ' + b"[" * 100 + b"]" * 100 + b"}", "not JSON we read: nested deeper"),
        (b'{"a": 1' + b"0" * 5000 + b"}", "not JSON: "),
        ('{"model": "m"}'.encode("utf-16"), "not UTF-8: "),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'"x"', "expected a JSON object, got str"),
        (b'{"model": "m"}', "invalid govloop.prediction/1: model_version: Field required; "),
    ],
)
def test_decode_rejects(raw: bytes | None, message: str) -> None:
    with pytest.raises(EventError) as info:
        decode("predictions", raw)
    assert info.value.reason.startswith(message)
    assert isinstance(info.value, ValueError)


# --- time --------------------------------------------------------------------------------------


def test_naive_datetime_is_read_as_utc_but_a_wire_time_needs_an_offset() -> None:
    p = Prediction(**BASE, ts=datetime(2030, 1, 1, 12, 0))
    assert p.ts == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert p.ts.utcoffset() == timedelta(0)
    with pytest.raises(EventError, match="ts: must be an RFC 3339 timestamp with an offset"):
        decode("predictions", json.dumps(BASE | {"ts": "2030-01-01T12:00:00"}))


def test_an_event_without_event_id_gets_one_from_its_content() -> None:
    body = BASE | {"ts": "2030-01-01T12:00:00Z"}
    first = decode("predictions", json.dumps(body))
    again = decode("predictions", json.dumps(dict(reversed(body.items())), indent=1))
    other = decode("predictions", json.dumps(body | {"request_id": "r2"}))
    assert first.event_id == again.event_id != other.event_id
    assert decode("predictions", json.dumps(body | {"event_id": "e1"})).event_id == "e1"
    assert Prediction(**BASE).event_id != Prediction(**BASE).event_id  # Python: random


def test_aware_timestamp_is_converted_to_utc() -> None:
    berlin_summer = timezone(timedelta(hours=2))
    p = Prediction(**BASE, ts=datetime(2030, 7, 1, 12, 0, tzinfo=berlin_summer))
    assert p.ts.tzinfo is UTC
    assert (p.ts.hour, p.ts.minute) == (10, 0)
    wire = decode("predictions", json.dumps(BASE | {"ts": "2030-07-01T12:00:00-05:30"}))
    assert wire.ts.tzinfo is UTC
    assert wire.ts == datetime(2030, 7, 1, 17, 30, tzinfo=UTC)
    assert p.epoch == datetime(2030, 7, 1, 10, 0, tzinfo=UTC).timestamp()


def test_default_timestamp_is_now_in_utc() -> None:
    before = datetime.now(UTC)
    p = Prediction(**BASE)
    assert before <= p.ts <= datetime.now(UTC)
    assert p.ts.tzinfo is UTC


# --- wire form ---------------------------------------------------------------------------------

WINDOW = {"window_start": T, "window_end": T + timedelta(minutes=1)}

ROUND_TRIP: list[Event] = [
    Prediction(**TABULAR, ts=T),
    Prediction(**LLM, ts=T),
    Prediction(**BASE | {"prediction": 3}, score=0.5),
    Prediction(**BASE | {"prediction": True}),
    Feedback(request_id="r1", label="yes", positive=True, rating=4.5, comment="ok", ts=T),
    Feedback(request_id="r1", label=0),
    Assignment(experiment="ranker", subject_id="u1", variant="B"),
    Label(sample_id="s1", label=2.5, labeler="ann"),
    MetricSnapshot(
        model="m",
        model_version="1",
        **WINDOW,
        count=10,
        feedback_count=5,
        labelled_count=4,
        correct_count=3,
        positive_count=1,
        judged_count=2,
        accuracy=0.75,
        latency_p95_ms=120.0,
        segment={"country": "DE"},
    ),
    DriftAlert(
        model="m",
        model_version="1",
        feature="age",
        test="psi",
        statistic=0.3,
        threshold=0.2,
        top_features=["age", "income"],
    ),
    GateResult(
        policy="q",
        policy_hash="h" * 64,
        model="m",
        model_version="1",
        outcome="fail",
        rules=[
            RuleResult(
                rule="accuracy >= 0.9",
                metric="accuracy",
                op=">=",
                threshold=0.9,
                observed=0.8,
                outcome="fail",
                detail="low",
            )
        ],
        **WINDOW,
    ),
    SampleSelected(
        sample_id="s1",
        request_id="r1",
        model="m",
        model_version="1",
        strategy="margin",
        score=0.1,
        queue="q",
    ),
    ExperimentEvent(
        experiment="e", kind="decision", variants=["A", "B"], detail={"winner": "B", "p": 0.01}
    ),
    DatasetEvent(dataset="d", version="v1", rows=10, sha256="0" * 64),
    DeadLetter(
        source_topic="govloop.predictions", partition=1, offset=7, reason="bad", payload="{"
    ),
]


@pytest.mark.parametrize("event", ROUND_TRIP, ids=lambda e: type(e).__name__)
def test_round_trip(event: Event) -> None:
    topic = topic_of(type(event))
    raw = event.to_json()
    body = json.loads(raw)
    assert body["schema"] == type(event).SCHEMA
    assert "schema_" not in body
    assert None not in body.values()
    back = decode(topic.name, raw)
    assert type(back) is type(event)
    assert back == event
    assert back.to_json() == raw


def test_round_trip_covers_every_topic() -> None:
    assert {topic_of(type(e)).name for e in ROUND_TRIP} == set(TOPICS)


def test_scalar_types_survive_the_wire() -> None:
    p = Prediction(**BASE, features={"i": 1, "f": 1.0, "s": "1", "b": True})
    back = decode("predictions", p.to_json())
    assert isinstance(back, Prediction)
    assert {k: type(v) for k, v in back.features.items()} == {
        "i": int,
        "f": float,
        "s": str,
        "b": bool,
    }


def test_events_are_frozen() -> None:
    p = Prediction(**BASE)
    with pytest.raises(ValidationError, match="frozen"):
        p.model_version = "2"  # type: ignore[misc]
    f = Feedback(request_id="r", label=1)
    with pytest.raises(ValidationError, match="frozen"):
        f.ts = T  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        ROUND_TRIP[10].rules[0].outcome = "pass"  # type: ignore[attr-defined]


def test_event_ids_are_unique_and_may_be_given() -> None:
    assert len({Prediction(**BASE).event_id for _ in range(100)}) == 100
    assert Prediction(**BASE, event_id="abc").event_id == "abc"
    assert reason(Prediction, **BASE, event_id="").startswith("event_id: ")


def test_registry_keys() -> None:
    p = Prediction(**BASE)
    assert TOPICS["predictions"].key(p) == b"r"
    assert TOPICS["deadletter"].key_field is None
    assert TOPICS["deadletter"].key(ROUND_TRIP[-1]) is None
    with pytest.raises(KeyError):
        topic_of(Event)
