"""Result events: what govloop's workers publish for anyone to consume."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from govloop.schemas.base import Event, Scalar

__all__ = [
    "DatasetEvent",
    "DeadLetter",
    "DriftAlert",
    "ExperimentEvent",
    "GateResult",
    "MetricSnapshot",
    "Outcome",
    "RuleResult",
    "SampleSelected",
]

Outcome = Literal["pass", "warn", "fail", "inconclusive"]


class MetricSnapshot(Event):
    """Online metrics of one model version over one window.

    ``accuracy`` counts feedback carrying a label, joined to its prediction;
    rates are ``None`` when their denominator is zero.
    """

    SCHEMA: ClassVar[str] = "govloop.metrics/1"

    model: str
    model_version: str
    window_start: datetime
    window_end: datetime
    count: int = Field(ge=0, description="Predictions in the window.")
    feedback_count: int = Field(ge=0, description="Feedback joined to a prediction.")
    labelled_count: int = Field(ge=0, description="Joined feedback that carried a label.")
    correct_count: int = Field(ge=0)
    positive_count: int = Field(ge=0)
    judged_count: int = Field(ge=0, description="Joined feedback with a thumbs up/down.")
    accuracy: float | None = None
    feedback_rate: float | None = None
    positive_rate: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    estimated_accuracy: float | None = Field(
        default=None,
        description="Label-free accuracy estimate, calibrated on the model version's labelled "
        "reference period (histogram binning of the served class's confidence); None when "
        "the version has no calibration map (see estimated_accuracy_raw). Valid in "
        "distribution; not under concept drift, nor under covariate shift for a "
        "misspecified model.",
    )
    estimated_accuracy_se: float | None = Field(
        default=None,
        ge=0,
        description="Standard error of estimated_accuracy: the predictions' outcomes given "
        "the map, plus the map's own estimation error.",
    )
    estimated_accuracy_raw: float | None = Field(
        default=None,
        description="Mean confidence of the served class over predictions with probabilities "
        "(uncalibrated: the expected accuracy only if the probabilities are calibrated).",
    )
    calibration: str | None = Field(
        default=None,
        description="The calibration map behind estimated_accuracy (its version and "
        "reference period); None: none yet.",
    )
    window: Literal["tumbling", "sliding"] = "tumbling"
    experiment: str | None = None
    variant: str | None = None
    segment: dict[str, Scalar] | None = None
    revision: int = Field(
        default=0,
        ge=0,
        description="0 for a window's first snapshot; n for its n-th amendment by events "
        "that arrived after it closed (within the allowed lateness).",
    )
    late_count: int = Field(
        default=0, ge=0, description="Events in these counts that arrived after the window closed."
    )


class DriftAlert(Event):
    """A drift episode starting (``state="drift"``) or ending (``"recovered"``)."""

    SCHEMA: ClassVar[str] = "govloop.drift/1"

    model: str
    model_version: str
    feature: str
    test: str = Field(description="Which statistic, e.g. psi, ks, adwin.")
    statistic: float
    threshold: float
    p_value: float | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    state: Literal["drift", "recovered"] = "drift"
    reference_version: str | None = None
    top_features: list[str] = Field(default_factory=list)
    details: dict[str, Any] | None = Field(
        default=None,
        description="What raised or ended the episode: the streaming detector's arm, statistic "
        "and threshold, its false-alarm rate; the windowed test that explains it.",
    )


class RuleResult(BaseModel):
    """One rule's verdict and the evidence for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str
    metric: str
    op: str
    threshold: float
    observed: float | None = None
    outcome: Outcome
    detail: str = ""


class GateResult(Event):
    """A policy's decision on one snapshot (or, offline, on one results file)."""

    SCHEMA: ClassVar[str] = "govloop.gate/1"

    policy: str
    policy_hash: str
    model: str
    model_version: str
    outcome: Outcome
    rules: list[RuleResult]
    trigger_event_id: str | None = None
    previous_outcome: Outcome | None = Field(
        default=None,
        description="Online gates: the gate's state before this result changed it "
        "(the gates topic carries changes of state, SQL every result).",
    )
    window_start: datetime | None = None
    window_end: datetime | None = None
    manifest_id: str | None = None


class SampleSelected(Event):
    """A sample an active-learning strategy picked for labelling."""

    SCHEMA: ClassVar[str] = "govloop.sample/1"

    sample_id: str
    request_id: str
    model: str
    model_version: str
    strategy: str
    score: float
    queue: str


class ExperimentEvent(Event):
    """An A/B experiment's life: started, a decision, stopped."""

    SCHEMA: ClassVar[str] = "govloop.experiment/1"

    experiment: str
    kind: Literal["started", "decision", "stopped"]
    variants: list[str] = Field(default_factory=list)
    detail: dict[str, Any] = Field(default_factory=dict)


class DatasetEvent(Event):
    """A new version of an eval dataset."""

    SCHEMA: ClassVar[str] = "govloop.dataset/1"

    dataset: str
    version: str
    kind: Literal["created", "deleted"] = "created"
    rows: int = Field(ge=0)
    sha256: str
    uri: str | None = None


class DeadLetter(Event):
    """Input that could not be processed, with the reason and the raw bytes."""

    SCHEMA: ClassVar[str] = "govloop.deadletter/1"

    source_topic: str
    partition: int | None = None
    offset: int | None = None
    reason: str
    payload: str = Field(description="The raw value, UTF-8 with replacement, truncated.")
