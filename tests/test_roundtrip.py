"""Every event type through the real broker and back, and its wire form against its JSON Schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from govloop.config import Settings
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
    export_json_schemas,
    topic_of,
)
from tests.kafka_helpers import consume_raw, produce

pytestmark = pytest.mark.integration

T = datetime(2030, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
W0 = datetime(2030, 3, 4, 5, 6, tzinfo=UTC)
W1 = W0 + timedelta(minutes=1)


def events() -> list[Event]:
    """At least one event of every registry topic, covering the optional shapes."""
    return [
        # tabular prediction: features of every scalar type, probabilities, segment
        Prediction(
            model="churn",
            model_version="3",
            request_id="r-tab",
            subject_id="u1",
            ts=T,
            segment={"country": "DE", "premium": True, "age_band": 3},
            latency_ms=12.5,
            features={"age": 42, "income": 51234.5, "plan": "gold", "active": False, "z": -0.0},
            probabilities={"yes": 0.7, "no": 0.2, "maybe": 0.1},
        ),
        Prediction(model="price", model_version="1", request_id="r-reg", score=-3.25, ts=T),
        Prediction(model="clf", model_version="2", request_id="r-lbl", prediction=1, ts=T),
        # LLM prediction: texts, token counts, judge/safety scores, an embedding
        Prediction(
            model="support-bot",
            model_version="2024-06-01",
            request_id="r-llm",
            ts=T,
            input_text="How do I reset my password? \u00fc\u00df \u2603 \U0001f600",
            output_text='Open settings, then "Security".\nDone.',
            input_tokens=9,
            output_tokens=0,
            scores={"toxicity": 0.01, "judge": 4.5, "faithfulness": 1e-9},
            embedding=[0.1, -0.2, 0.3, 1.5e-12, 123456.789],
            latency_ms=840.0,
        ),
        Feedback(request_id="r-tab", label="yes", positive=True, ts=T),
        Feedback(request_id="r-llm", rating=2.5, comment="too terse", source="survey", ts=T),
        Feedback(request_id="r-lbl", label=0, ts=T),
        Assignment(
            experiment="exp-1", subject_id="u1", variant="B", model="churn", model_version="3", ts=T
        ),
        Assignment(experiment="exp-1", subject_id="u2", variant="A", ts=T),
        Label(
            sample_id="s1",
            request_id="r-tab",
            label="no",
            labeler="ann",
            dataset="churn-eval",
            ts=T,
        ),
        Label(sample_id="s2", label=3.5, labeler="bob", ts=T),
        MetricSnapshot(
            event_id="snap-1",
            ts=W1,
            model="churn",
            model_version="3",
            window_start=W0,
            window_end=W1,
            count=40,
            feedback_count=30,
            labelled_count=20,
            correct_count=15,
            positive_count=7,
            judged_count=10,
            accuracy=0.75,
            feedback_rate=0.75,
            positive_rate=0.7,
            latency_p50_ms=12.0,
            latency_p95_ms=48.5,
            variant="B",
            segment={"country": "DE"},
        ),
        MetricSnapshot(
            ts=W1,
            model="empty",
            model_version="1",
            window_start=W0,
            window_end=W1,
            count=0,
            feedback_count=0,
            labelled_count=0,
            correct_count=0,
            positive_count=0,
            judged_count=0,
        ),
        DriftAlert(
            model="churn",
            model_version="3",
            feature="income",
            test="psi",
            statistic=0.31,
            threshold=0.2,
            p_value=0.001,
            severity="critical",
            reference_version="2",
            top_features=["income", "age"],
            ts=T,
        ),
        DriftAlert(
            model="churn",
            model_version="3",
            feature="income",
            test="ks",
            statistic=0.05,
            threshold=0.2,
            state="recovered",
            ts=T,
        ),
        GateResult(
            policy="acc",
            policy_hash="ab" * 32,
            model="churn",
            model_version="3",
            outcome="fail",
            trigger_event_id="snap-1",
            window_start=W0,
            window_end=W1,
            manifest_id="man-1",
            ts=T,
            rules=[
                RuleResult(
                    rule="min_samples",
                    metric="count",
                    op=">=",
                    threshold=10,
                    observed=40,
                    outcome="pass",
                ),
                RuleResult(
                    rule="accuracy",
                    metric="accuracy",
                    op=">=",
                    threshold=0.8,
                    observed=0.75,
                    outcome="fail",
                    detail="0.75 < 0.8",
                ),
                RuleResult(
                    rule="p95",
                    metric="latency_p95_ms",
                    op="<=",
                    threshold=100,
                    observed=None,
                    outcome="inconclusive",
                    detail="no value",
                ),
            ],
        ),
        GateResult(
            policy="empty",
            policy_hash="0",
            model="m",
            model_version="1",
            outcome="pass",
            rules=[],
            ts=T,
        ),
        SampleSelected(
            sample_id="s1",
            request_id="r-tab",
            model="churn",
            model_version="3",
            strategy="margin",
            score=0.05,
            queue="churn-label",
            ts=T,
        ),
        ExperimentEvent(experiment="exp-1", kind="started", variants=["A", "B"], ts=T),
        ExperimentEvent(
            experiment="exp-1",
            kind="decision",
            variants=["A", "B"],
            ts=T,
            detail={
                "winner": "B",
                "p": 0.01,
                "n": {"A": 100, "B": 98},
                "ci": [0.01, None],
                "stopped": False,
                "note": None,
            },
        ),
        DatasetEvent(
            dataset="churn-eval",
            version="v3",
            rows=1234,
            sha256="f" * 64,
            uri="file:///data/churn-eval/v3.jsonl",
            ts=T,
        ),
        DatasetEvent(
            dataset="churn-eval", version="v1", kind="deleted", rows=0, sha256="0" * 64, ts=T
        ),
        DeadLetter(
            source_topic="govloop.predictions",
            partition=1,
            offset=42,
            reason="not JSON: Expecting value",
            payload="\ufffd\ufffdgarbage",
            ts=T,
        ),
        DeadLetter(
            source_topic="govloop.feedback", reason="empty message (no value)", payload="", ts=T
        ),
    ]


def test_the_sample_covers_every_topic() -> None:
    assert {topic_of(type(e)).name for e in events()} == set(TOPICS)


def test_every_event_type_round_trips_through_the_broker(
    settings: Settings, tmp_path: Path
) -> None:
    sent = events()
    by_topic: dict[str, list[Event]] = {}
    for e in sent:
        by_topic.setdefault(topic_of(type(e)).name, []).append(e)
    for topic, items in by_topic.items():
        produce(settings, topic, items)

    schemas_dir = tmp_path / "schemas"
    paths = export_json_schemas(schemas_dir, prefix=settings.topic_prefix)
    assert sorted(p.name for p in paths) == sorted(
        f"{settings.topic_prefix}{name}.schema.json" for name in TOPICS
    )
    assert sorted(p.name for p in schemas_dir.iterdir()) == sorted(p.name for p in paths)

    for topic, items in by_topic.items():
        records = consume_raw(settings, topic, len(items), timeout=30)
        assert len(records) == len(items), topic
        received = {}
        for r in records:
            event = decode(topic, r.value)
            assert type(event) is TOPICS[topic].model
            received[event.event_id] = event
            assert r.key == TOPICS[topic].key(event), topic
        assert received == {e.event_id: e for e in items}, topic
        for e in items:
            assert received[e.event_id] == e
            assert received[e.event_id].to_json() == e.to_json()

        schema = json.loads(
            (schemas_dir / f"{settings.topic_prefix}{topic}.schema.json").read_text()
        )
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        for r in records:
            errors = [e.message for e in validator.iter_errors(json.loads(r.value))]
            assert errors == [], (topic, r.value)


def test_exported_schemas_reject_what_decode_rejects(tmp_path: Path) -> None:
    """The schemas are contracts, not decoration: a few wrong shapes fail both ways."""
    schemas = {
        name: json.loads(p.read_text())
        for name, p in zip(TOPICS, export_json_schemas(tmp_path), strict=True)
    }
    wrong = [
        ("predictions", {"model": "m", "model_version": "1"}),  # request_id missing
        (
            "predictions",
            {
                "model": "m",
                "model_version": "1",
                "request_id": "r",
                "prediction": "a",
                "surprise": 1,
            },
        ),  # unknown field
        (
            "predictions",
            {
                "model": "m",
                "model_version": "1",
                "request_id": "r",
                "prediction": "a",
                "input_tokens": -1,
            },
        ),
        ("feedback", {"request_id": "r", "label": "a", "schema": "govloop.prediction/1"}),
        ("feedback", {"request_id": "r", "rating": "high"}),
        (
            "gates",
            {
                "policy": "p",
                "policy_hash": "h",
                "model": "m",
                "model_version": "1",
                "outcome": "maybe",
                "rules": [],
            },
        ),
        ("datasets", {"dataset": "d", "version": "1", "rows": -1, "sha256": "x"}),
    ]
    for topic, data in wrong:
        validator = jsonschema.Draft202012Validator(schemas[topic])
        assert not validator.is_valid(data), (topic, data)
        with pytest.raises(EventError, match="invalid govloop"):
            decode(topic, json.dumps(data))
    # and the tag may be left out or be the topic's own, as decode accepts
    for topic, data in [
        ("feedback", {"request_id": "r", "label": "a"}),
        ("feedback", {"request_id": "r", "label": "a", "schema": "govloop.feedback/1"}),
    ]:
        assert jsonschema.Draft202012Validator(schemas[topic]).is_valid(data)
        decode(topic, json.dumps(data))
