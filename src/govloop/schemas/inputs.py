"""Input events: what production services, users and labelers send."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from govloop.schemas.base import Event, Scalar

__all__ = ["Assignment", "Feedback", "Label", "Prediction"]

_isfinite = math.isfinite
_is_float: Any = float.__instancecheck__  # isinstance(x, float), in C


def _name() -> Any:
    return Field(min_length=1, max_length=256)


class Prediction(Event):
    """One model output, for a tabular model or an LLM application.

    Tabular models fill ``features`` and one of ``prediction`` (the label or
    value served), ``probabilities`` (class -> probability) or ``score``.  LLM
    applications fill ``input_text``/``output_text`` and optionally token
    counts, judge or safety ``scores`` and an ``embedding``.

    >>> p = Prediction(model="churn", model_version="3", request_id="r1",
    ...                probabilities={"yes": 0.8, "no": 0.2})
    >>> p.schema_, p.predicted_label
    ('govloop.prediction/1', 'yes')
    """

    SCHEMA: ClassVar[str] = "govloop.prediction/1"

    model: str = _name()
    model_version: str = Field(min_length=1, max_length=128)
    request_id: str = Field(min_length=1, max_length=256)
    subject_id: str | None = Field(default=None, max_length=256)
    segment: dict[str, Scalar] = Field(
        default_factory=dict, description="Attributes to slice by (fairness, segments)."
    )
    experiment: str | None = Field(
        default=None, min_length=1, max_length=256, description="The A/B experiment served."
    )
    variant: str | None = Field(
        default=None, min_length=1, max_length=128, description="The experiment's variant served."
    )
    latency_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    features: dict[str, Scalar] = Field(default_factory=dict)
    prediction: Scalar | None = None
    probabilities: dict[str, float] | None = None
    score: float | None = Field(default=None, allow_inf_nan=False)
    input_text: str | None = None
    output_text: str | None = None
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    scores: dict[str, float] = Field(
        default_factory=dict, description="Judge, safety or other per-output scores."
    )
    embedding: list[float] | None = Field(default=None, min_length=1, max_length=8192)

    @field_validator("features")
    @classmethod
    def _finite_features(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        # the sum of the float features is finite only if each of them is; a sum
        # that is not (an overflow, or a bad value) sends us to the exact check
        if not _isfinite(sum(filter(_is_float, value.values()))):
            for name, x in value.items():
                if isinstance(x, float) and not math.isfinite(x):
                    raise ValueError(f"feature {name!r} is not finite")
        return value

    @field_validator("probabilities")
    @classmethod
    def _a_distribution(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must name at least one class")
        ps = value.values()
        total = sum(ps)
        # a NaN anywhere makes the sum NaN (total != total); min and max see the rest
        if total != total or min(ps) < 0.0 or max(ps) > 1.0:
            raise ValueError("each probability must lie in [0, 1]")
        if abs(total - 1.0) > 1e-3:
            raise ValueError(f"probabilities sum to {total:.4f}, not 1")
        return value

    @field_validator("scores", "embedding")
    @classmethod
    def _finite_numbers(cls, value: dict[str, float] | list[float] | None):  # type: ignore[no-untyped-def]
        numbers = value.values() if isinstance(value, dict) else (value or [])
        if not _isfinite(sum(numbers)) and any(not math.isfinite(x) for x in numbers):
            raise ValueError("values must be finite")
        return value

    @model_validator(mode="after")
    def _has_an_output(self) -> Prediction:
        if (
            self.prediction is None
            and self.probabilities is None
            and self.score is None
            and self.output_text is None
        ):
            raise ValueError(
                "a prediction needs one of prediction, probabilities, score or output_text"
            )
        if (self.experiment is None) != (self.variant is None):
            raise ValueError("experiment and variant go together: set both or neither")
        return self

    @property
    def predicted_label(self) -> Scalar | None:
        """The served label: ``prediction``, else the most probable class."""
        if self.prediction is not None:
            return self.prediction
        if self.probabilities:
            return max(self.probabilities, key=self.probabilities.__getitem__)
        return None


class Feedback(Event):
    """What happened after a prediction: a true label, a rating or a thumbs up/down.

    >>> Feedback(request_id="r1", label="yes").schema_
    'govloop.feedback/1'
    """

    SCHEMA: ClassVar[str] = "govloop.feedback/1"

    request_id: str = Field(min_length=1, max_length=256)
    label: Scalar | None = Field(default=None, description="The true outcome, when known.")
    positive: bool | None = Field(default=None, description="Thumbs up (True) or down.")
    rating: float | None = Field(default=None, allow_inf_nan=False)
    comment: str | None = Field(default=None, max_length=10000)
    source: str = Field(default="user", max_length=64)

    @model_validator(mode="after")
    def _says_something(self) -> Feedback:
        if self.label is None and self.positive is None and self.rating is None:
            raise ValueError("feedback needs one of label, positive or rating")
        return self


class Assignment(Event):
    """A subject's variant in an A/B experiment."""

    SCHEMA: ClassVar[str] = "govloop.assignment/1"

    experiment: str = _name()
    subject_id: str = Field(min_length=1, max_length=256)
    variant: str = Field(min_length=1, max_length=128)
    model: str | None = None
    model_version: str | None = None


class Label(Event):
    """A labeler's answer for a sample picked for relabelling."""

    SCHEMA: ClassVar[str] = "govloop.label/1"

    sample_id: str = Field(min_length=1, max_length=256)
    request_id: str | None = None
    label: Scalar
    labeler: str = Field(min_length=1, max_length=256)
    dataset: str | None = None
