"""Event contracts: pydantic models of every event, the topic registry, JSON Schema export.

Every event is frozen, rejects unknown fields, and carries a ``schema`` tag
(``govloop.prediction/1``), an ``event_id`` and a UTC timestamp ``ts``.
"""

from govloop.schemas.base import Event, Scalar, new_event_id, utcnow
from govloop.schemas.export import export_json_schemas, json_schema
from govloop.schemas.inputs import Assignment, Feedback, Label, Prediction
from govloop.schemas.registry import TOPICS, Topic, decode, describe_validation_error, topic_of
from govloop.schemas.results import (
    DatasetEvent,
    DeadLetter,
    DriftAlert,
    ExperimentEvent,
    GateResult,
    MetricSnapshot,
    Outcome,
    RuleResult,
    SampleSelected,
)

__all__ = [
    "TOPICS",
    "Assignment",
    "DatasetEvent",
    "DeadLetter",
    "DriftAlert",
    "Event",
    "ExperimentEvent",
    "Feedback",
    "GateResult",
    "Label",
    "MetricSnapshot",
    "Outcome",
    "Prediction",
    "RuleResult",
    "SampleSelected",
    "Scalar",
    "Topic",
    "decode",
    "describe_validation_error",
    "export_json_schemas",
    "json_schema",
    "new_event_id",
    "topic_of",
    "utcnow",
]
