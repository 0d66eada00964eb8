"""Input events: what production services, users and labelers send."""

from __future__ import annotations

import operator
from typing import Annotated, Any, ClassVar, cast

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonDict, JsonSchemaValue, JsonValue
from pydantic_core import CoreSchema

from govloop.schemas.base import Event, Scalar

__all__ = [
    "Assignment",
    "Count",
    "Feature",
    "Feedback",
    "FiniteFloat",
    "Label",
    "Number",
    "Prediction",
]

#: A number that must be finite (no NaN or infinity), checked by pydantic-core.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

#: A finite JSON number, never a string or a boolean (``"12.5"`` and ``true`` are
#: rejected, as the exported schema's ``"type": "number"`` rejects them); an
#: integer is a number too.  pydantic-core's strict float checks it.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def _integral(value: Any) -> Any:
    """``5.0`` as ``5``: JSON Schema counts a number without a fraction as an integer.

    An integer type of Python's own or numpy's (``numpy.int64``) is taken as its
    ``int``; a boolean and a string are left for the strict check to refuse.
    """
    if type(value) is float and value.is_integer():
        return int(value)
    if not isinstance(value, bool | int | float | str) and hasattr(type(value), "__index__"):
        return operator.index(value)
    return value


#: A count (tokens): a JSON integer, never a string or a boolean.
Count = Annotated[int, Field(strict=True, ge=0), BeforeValidator(_integral)]

#: What every optional output, rating or feedback field must be if present: not null.
_NOT_NULL: JsonDict = {"not": {"type": "null"}}


def _string_only(schema: JsonDict) -> None:
    """Export an optional name as a string alone: on the wire, leave it out rather than null."""
    options = cast(list[JsonDict], schema.pop("anyOf"))
    schema.pop("default", None)
    schema.update(next(o for o in options if o.get("type") != "null"))


def _present(*names: str) -> list[JsonValue]:
    """One ``anyOf`` branch per name: the field is there and not null."""
    return [{"required": [n], "properties": {n: _NOT_NULL}} for n in names]


class _ScalarUnion:
    """A feature value's union, reported and exported as one scalar type.

    Its failure is one error (``features.age: Input should be a string, a
    boolean or a finite number``) rather than one per member, and its JSON
    Schema is that of :data:`~govloop.schemas.base.Scalar`.
    """

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        schema: dict[str, Any] = {
            **handler(source),
            "custom_error_type": "scalar_type",
            "custom_error_message": "Input should be a string, a boolean or a finite number",
        }
        return cast(CoreSchema, schema)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [
                {"type": "string"},
                {"type": "integer"},
                {"type": "number"},
                {"type": "boolean"},
            ]
        }


#: A feature, segment, label or prediction value: a string, a boolean or a
#: finite number (NaN, Infinity and 1e400 are refused), all checked by
#: pydantic-core (no Python per value).  What it accepts, and the value it
#: gives, are those of ``str | int | float | bool`` in smart mode with the
#: non-finite floats rejected: the strict members take what has their exact
#: type (all of JSON), in one try for a JSON number; anything else goes to the
#: lax members in the smart union's order.  ``check_fast_paths.py`` compares
#: the two on JSON and on odd Python values (enums, numpy, Decimal, bytes).
Feature = Annotated[
    StrictInt
    | Annotated[float, Field(allow_inf_nan=False, strict=True)]
    | StrictStr
    | StrictBool
    | str
    | int
    | FiniteFloat
    | bool,
    Field(union_mode="left_to_right"),
    _ScalarUnion(),
]


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

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": _present("prediction", "probabilities", "score", "output_text"),
            "dependentRequired": {"experiment": ["variant"], "variant": ["experiment"]},
        }
    )

    model: str = _name()
    model_version: str = Field(min_length=1, max_length=128)
    request_id: str = Field(min_length=1, max_length=256)
    subject_id: str | None = Field(default=None, max_length=256)
    segment: dict[str, Feature] = Field(
        default_factory=dict, description="Attributes to slice by (fairness, segments)."
    )
    experiment: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="The A/B experiment served; set with variant.",
        json_schema_extra=_string_only,
    )
    variant: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The experiment's variant served; set with experiment.",
        json_schema_extra=_string_only,
    )
    latency_ms: Number | None = Field(default=None, ge=0)
    features: dict[str, Feature] = Field(default_factory=dict)
    prediction: Feature | None = None
    probabilities: dict[str, Annotated[Number, Field(ge=0, le=1)]] | None = Field(
        default=None,
        min_length=1,
        description="Class -> probability, summing to 1 within 1e-3.",
        json_schema_extra={
            "$comment": "Also checked, beyond this schema: the probabilities sum to 1 "
            "within 1e-3 (JSON Schema cannot add up values)."
        },
    )
    score: Number | None = None
    input_text: str | None = None
    output_text: str | None = None
    input_tokens: Count | None = None
    output_tokens: Count | None = None
    scores: dict[str, Number] = Field(
        default_factory=dict, description="Judge, safety or other per-output scores."
    )
    embedding: list[Number] | None = Field(default=None, min_length=1, max_length=8192)

    @field_validator("probabilities")
    @classmethod
    def _a_distribution(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        total = sum(value.values())  # each is finite and in [0, 1] (pydantic-core checked)
        if abs(total - 1.0) > 1e-3:
            raise ValueError(f"probabilities sum to {total:.4f}, not 1")
        return value

    @field_validator("experiment", "variant", mode="before")
    @classmethod
    def _named(cls, value: Any, info: ValidationInfo) -> Any:
        # on the wire an explicit null is refused (the schema says string); Python's None
        # is left out, as the SDK's callers expect
        if value is None and info.mode == "json":
            raise ValueError("must be a string; leave it out for none")
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

    model_config = ConfigDict(json_schema_extra={"anyOf": _present("label", "positive", "rating")})

    request_id: str = Field(min_length=1, max_length=256)
    label: Feature | None = Field(default=None, description="The true outcome, when known.")
    positive: StrictBool | None = Field(default=None, description="Thumbs up (true) or down.")
    rating: Number | None = None
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
    label: Feature
    labeler: str = Field(min_length=1, max_length=256)
    dataset: str | None = None
