"""The exported JSON Schemas are the contract: govloop and a standard validator agree.

Events are generated from each input topic's exported schema
(hypothesis-jsonschema) and near misses are made from them by mutation; on
every one, govloop's decoder and ``jsonschema`` (Draft 2020-12) must give the
same verdict, both ways.  The three rules a JSON Schema cannot say (numbers
are finite; the probabilities sum to 1; a timestamp exists on the calendar
and in UTC) are
stated beside the schema, in its ``$comment``, and checked here by
:func:`documented_rules_hold`.  The 18 cases issue 9 found on which the two
disagreed are a table of their own.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator

from govloop.errors import EventError
from govloop.schemas import TOPICS, decode, export_json_schemas, json_schema

INPUTS = [name for name, topic in TOPICS.items() if topic.kind == "input"]
VALIDATORS = {name: Draft202012Validator(json_schema(name)) for name in INPUTS}
#: Per topic, events its exported schema allows (built once: building one is slow).
GENERATED = {name: from_schema(json_schema(name)) for name in INPUTS}


def govloop_accepts(topic: str, data: Any) -> bool:
    """Whether govloop's one validation path takes ``data`` sent as JSON."""
    try:
        decode(topic, json.dumps(data))  # an infinite float goes as Infinity
    except EventError:
        return False
    return True


def finite(value: Any) -> bool:
    """Whether every number in ``value`` is finite (a float can overflow to infinity)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return True


def documented_rules_hold(topic: str, data: Any) -> bool:
    """The rules stated beside the schemas (their ``$comment``, docs/schemas.md)."""
    if not isinstance(data, dict):
        return True
    if not finite(data):
        return False
    ts = data.get("ts")
    if isinstance(ts, str):
        try:
            datetime.fromisoformat(ts).astimezone(UTC)
        except (ValueError, OverflowError):
            return False
    probabilities = data.get("probabilities") if topic == "predictions" else None
    if isinstance(probabilities, dict) and probabilities:
        values = list(probabilities.values())
        if all(isinstance(p, int | float) and not isinstance(p, bool) for p in values):
            return abs(sum(values) - 1.0) <= 1e-3  # as the validator adds them
    return True


def standard_accepts(topic: str, data: Any) -> bool:
    """What the exported schema and the rules documented beside it say."""
    return VALIDATORS[topic].is_valid(data) and documented_rules_hold(topic, data)


# --- generated from the schemas -----------------------------------------------------------------

CONTRACT = hsettings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("topic", INPUTS)
def test_every_event_the_schema_generates_is_judged_alike(topic: str) -> None:
    @CONTRACT
    @given(GENERATED[topic])
    def check(event: dict[str, Any]) -> None:
        assert VALIDATORS[topic].is_valid(event)
        assert govloop_accepts(topic, event) == documented_rules_hold(topic, event), event

    check()


#: Values a mutation puts in place of a field's value: every JSON type, and the
#: look-alikes (numbers as strings, booleans as numbers, other time formats).
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats()
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=4,
)
LOOK_ALIKES = st.sampled_from(
    [
        "5",
        "12.5",
        "true",
        1,
        0,
        True,
        False,
        5.0,
        -1,
        "",
        {},
        [],
        None,
        "2031-01-01T12:00:00",
        "2031-01-01 12:00:00Z",
        "2031-01-01",
        1924992000,
        math.inf,
        math.nan,
        1e308,
        "2031-01-01T12:00:00+02:00",
        "2031-01-01T12:00:00.123456789Z",
        "2031-02-29T12:00:00Z",
        "2031-01-01t12:00:00z",
        "2031-01-01T12:00:00Z\n",
        "0001-01-01T00:00:00+00:01",
        "9999-12-31T23:59:59-00:01",
        {"a": True},
        {"a": "0.5"},
        {"a": 1},
        {"a": 0.4, "b": 0.6},
        ["x"],
    ]
)


@st.composite
def near_misses(draw: st.DrawFn, topic: str) -> dict[str, Any]:
    """A valid event with one to three fields dropped, replaced or added."""
    event: dict[str, Any] = dict(draw(GENERATED[topic]))
    names = sorted(json_schema(topic)["properties"])  # type: ignore[arg-type]
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from([*names, "unknown"]))
        action = draw(st.sampled_from(["drop", "look-alike", "any"]))
        if action == "drop":
            event.pop(name, None)
        elif action == "look-alike":
            event[name] = draw(LOOK_ALIKES)
        else:
            event[name] = draw(JSON_VALUES)
    return event


@pytest.mark.parametrize("topic", INPUTS)
def test_near_misses_are_judged_alike(topic: str) -> None:
    @CONTRACT
    @given(near_misses(topic))
    def check(event: dict[str, Any]) -> None:
        assert govloop_accepts(topic, event) == standard_accepts(topic, event), event

    check()


# --- the 18 disagreements issue 9 found ---------------------------------------------------------

PRED: dict[str, Any] = {
    "model": "m",
    "model_version": "1",
    "request_id": "r1",
    "ts": "2031-01-01T12:00:00Z",
}
FB: dict[str, Any] = {"request_id": "r1", "ts": "2031-01-01T12:00:00Z"}


@pytest.mark.parametrize(
    ("topic", "event", "schema_valid"),
    [
        # schema-valid but dead-lettered before: the schema now says it too ...
        pytest.param("predictions", PRED, False, id="no-output"),
        pytest.param("predictions", PRED | {"probabilities": {}}, False, id="empty-probabilities"),
        pytest.param(
            "predictions", PRED | {"prediction": "a", "variant": "b"}, False, id="variant-alone"
        ),
        pytest.param("feedback", FB, False, id="feedback-request-id-only"),
        pytest.param(
            "feedback", FB | {"label": None, "positive": None}, False, id="label-positive-null"
        ),
        # ... except the sum, which only the comment beside the schema can say
        pytest.param(
            "predictions",
            PRED | {"probabilities": {"a": 0.9, "b": 0.9}},
            True,
            id="probabilities-sum-1.8",
        ),
        # schema-invalid but accepted and counted before
        pytest.param("predictions", PRED | {"prediction": "a", "ts": "2031-01-01T12:00:00"}, False,
                     id="ts-no-offset"),
        pytest.param("predictions", PRED | {"prediction": "a", "ts": "2031-01-01 12:00:00Z"},
                     False, id="ts-space"),
        pytest.param("predictions", PRED | {"prediction": "a", "ts": 1924992000}, False,
                     id="ts-epoch"),
        pytest.param("predictions", PRED | {"prediction": "a", "ts": "2031-01-01"}, False,
                     id="ts-date"),
        pytest.param("predictions", PRED | {"output_text": "hi", "input_tokens": "5"}, False,
                     id="input-tokens-string"),
        pytest.param("predictions", PRED | {"prediction": "a", "latency_ms": "12.5"}, False,
                     id="latency-string"),
        pytest.param("feedback", FB | {"rating": "5"}, False, id="rating-string"),
        pytest.param("predictions", PRED | {"probabilities": {"a": True, "b": False}}, False,
                     id="probabilities-booleans"),
        pytest.param("predictions", PRED | {"prediction": "a", "scores": {"s": "0.5"}}, False,
                     id="score-values-strings"),
        pytest.param("feedback", FB | {"positive": "true"}, False, id="positive-string"),
        pytest.param("feedback", FB | {"positive": 1}, False, id="positive-one"),
    ],
)  # fmt: skip
def test_the_disagreements_of_issue_9_are_settled(
    topic: str, event: dict[str, Any], schema_valid: bool
) -> None:
    assert VALIDATORS[topic].is_valid(event) is schema_valid
    assert not govloop_accepts(topic, event)
    assert not standard_accepts(topic, event)


def test_an_event_without_event_id_sent_three_times_is_one_event() -> None:
    """The 18th: the schema allows leaving ``event_id`` out; the id then comes from content."""
    event = PRED | {"prediction": "a"}
    assert VALIDATORS["predictions"].is_valid(event)
    ids = {decode("predictions", json.dumps(event)).event_id for _ in range(3)}
    assert len(ids) == 1
    assert "content" in json_schema("predictions")["properties"]["event_id"]["description"]  # type: ignore[index]


def test_exported_files_are_valid_draft_2020_12_schemas(tmp_path: Path) -> None:
    for path in export_json_schemas(tmp_path):
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
