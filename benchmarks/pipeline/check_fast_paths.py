"""Fuzz the validators' fast paths against the plain checks they replace.

The event validators take shortcuts on the hot path (``schemas/base.py``,
``schemas/inputs.py``).  Each shortcut must give the value, or the error, that
the straightforward check gives.  This script draws many inputs around the
edges and compares:

* ``Event._in_utc``: a wire timestamp parsed with ``datetime.fromisoformat``
  against the plain check: the RFC 3339 pattern (``TIMESTAMP_PATTERN``), then
  pydantic's own parse followed by ``astimezone(UTC)``;
* the finiteness and range checks of ``Prediction`` (``features``,
  ``probabilities``, ``scores``, now pydantic-core constraints) against the
  Python loops they replaced: the same events rejected, for the same fields;
* ``schemas.inputs.Feature`` (strict members, then lax ones, left to right)
  against ``str | int | float | bool`` in smart mode with the non-finite
  floats rejected: the same values and types out, the same inputs rejected,
  on JSON numbers and odd Python values;
* ``judging.features.observed_columns`` (column by column when the
  predictions share their feature names) against ``observed_features`` of
  each prediction: same names, values, order of names and order of values.

Run::

    .venv/bin/python benchmarks/pipeline/check_fast_paths.py          # ~20 s
"""

from __future__ import annotations

import math
import random
import re
import sys
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from govloop.schemas import Prediction, describe_validation_error
from govloop.schemas.base import TIMESTAMP_PATTERN

BASE = {"model": "m", "model_version": "1", "request_id": "r", "prediction": "a"}


class _Reference(BaseModel):
    ts: datetime


def reference_ts(value: str) -> datetime | None:
    """The RFC 3339 pattern, pydantic's parse, then the conversion to UTC."""
    if re.search(TIMESTAMP_PATTERN, value) is None or value.endswith("\n"):
        return None
    try:
        ts = _Reference(ts=value).ts
    except ValidationError:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def fast_ts(value: str) -> datetime | None:
    try:
        return Prediction(**BASE, ts=value).ts
    except ValidationError:
        return None


def check_timestamps(rng: random.Random, n: int) -> int:
    base = "2031-06-15T12:34:56.123456Z"
    alphabet = "0123456789-:T.Z +_,tz\u0661\uff11"
    bad = 0
    for _ in range(n):
        length = rng.choice((19, 20, 21, 22, 24, 26, 27, 28, 32))
        chars = list((base[:19] + "." + base[20:] * 2)[: length - 1] + "Z")
        for _ in range(rng.randint(0, 4)):
            pool = alphabet if rng.random() < 0.5 else "0123456789"
            chars[rng.randrange(len(chars))] = rng.choice(pool)
        value = "".join(chars)
        want, got = reference_ts(value), fast_ts(value)
        if want != got or (got is not None and got.tzinfo is not UTC):
            bad += 1
            print(f"timestamp {value!r}: reference {want!r}, validator {got!r}")
    return bad


def reference_numbers(data: dict[str, Any]) -> str | None:
    """The reason the plain checks give (every failing field), or None.

    What is accepted is what the Python loops accepted before the checks moved
    into pydantic-core; the wording is pydantic-core's, one error per value.
    """
    reasons = []
    for name, x in data["features"].items():
        if isinstance(x, float) and not math.isfinite(x):
            reasons.append(
                f"features.{name}: Input should be a string, a boolean or a finite number"
            )
    probs = data["probabilities"]
    bounds = []
    for c, p in probs.items():
        if not math.isfinite(p):
            bounds.append(f"probabilities.{c}: Input should be a finite number")
        elif p < 0.0:
            bounds.append(f"probabilities.{c}: Input should be greater than or equal to 0")
        elif p > 1.0:
            bounds.append(f"probabilities.{c}: Input should be less than or equal to 1")
    if not probs:
        reasons.append(
            "probabilities: Dictionary should have at least 1 item after validation, not 0"
        )
    elif bounds:
        reasons += bounds
    elif abs(sum(probs.values()) - 1.0) > 1e-3:
        reasons.append(f"probabilities: probabilities sum to {sum(probs.values()):.4f}, not 1")
    for name, x in data["scores"].items():
        if not math.isfinite(x):
            reasons.append(f"scores.{name}: Input should be a finite number")
    return "; ".join(reasons) or None


def check_numbers(rng: random.Random, n: int) -> int:
    specials = [math.inf, -math.inf, math.nan, 1e308, -1e308, 0.0, 1.0, -0.0, 5e-324]
    bad = 0
    for _ in range(n):

        def number() -> float:
            return rng.choice(specials) if rng.random() < 0.1 else rng.uniform(-2, 2)

        features: dict[str, Any] = {f"f{i}": number() for i in range(rng.randint(0, 6))}
        features |= {f"c{i}": rng.choice(["x", 3, True]) for i in range(rng.randint(0, 2))}
        k = rng.randint(0, 3)
        probs = {f"p{i}": (number() if rng.random() < 0.2 else rng.random()) for i in range(k)}
        if probs and rng.random() < 0.5:  # mostly a proper distribution
            total = sum(abs(p) for p in probs.values() if math.isfinite(p)) or 1.0
            probs = {c: (abs(p) / total if math.isfinite(p) else p) for c, p in probs.items()}
        scores = {f"s{i}": number() for i in range(rng.randint(0, 3))}
        data = {"features": features, "probabilities": probs, "scores": scores}
        want = reference_numbers(data)
        try:
            Prediction(**{k: v for k, v in BASE.items() if k != "prediction"}, **data)
            got = None
        except ValidationError as exc:
            got = describe_validation_error(exc)
        if want != got:
            bad += 1
            print(f"numbers {data!r}: reference {want!r}, validator {got!r}")
    return bad


def check_feature_union(rng: random.Random, n: int) -> int:
    import enum
    from decimal import Decimal
    from fractions import Fraction

    import numpy as np

    from govloop.schemas.inputs import Feature

    class Smart(BaseModel):
        f: dict[str, str | int | float | bool]

    class Fast(BaseModel):
        f: dict[str, Feature]

    class Level(enum.IntEnum):
        A = 3

    class Colour(enum.StrEnum):
        RED = "red"

    class Text(str):
        pass

    class Real(float):
        pass

    def smart(value: Any, json_text: str | None = None) -> Any:
        try:
            m = Smart.model_validate_json(json_text) if json_text else Smart(f={"a": value})
        except ValidationError:
            return "rejected"
        x = m.f["a"]
        if isinstance(x, float) and not math.isfinite(x):
            return "rejected"
        return repr(x), type(x)

    def fast(value: Any, json_text: str | None = None) -> Any:
        try:
            m = Fast.model_validate_json(json_text) if json_text else Fast(f={"a": value})
        except ValidationError:
            return "rejected"
        return repr(m.f["a"]), type(m.f["a"])

    odd: list[Any] = [
        3,
        3.0,
        -0.0,
        True,
        False,
        "x",
        "3",
        "",
        Level.A,
        Colour.RED,
        Text("t"),
        Real(1.5),
        Real("inf"),
        Decimal("2"),
        Decimal("2.5"),
        Decimal("nan"),
        Decimal("inf"),
        np.float64(1.5),
        np.float64("inf"),
        np.int64(4),
        np.bool_(True),
        np.float32(0.5),
        np.str_("s"),
        Fraction(1, 2),
        b"x",
        b"3",
        b"3.5",
        b"true",
        b"",
        bytearray(b"4"),
        None,
        10**30,
        -(10**30),
        math.inf,
        -math.inf,
        math.nan,
        [1],
        {},
        (1,),
        object(),
        1 + 2j,
    ]
    texts = [
        "3",
        "3.0",
        "-0",
        "-0.0",
        "1e400",
        "-1e400",
        "NaN",
        "Infinity",
        "-Infinity",
        "1e308",
        "5e-324",
        "1" * 30,
        "1.5e3",
        "true",
        "false",
        "null",
        '"x"',
        '"3"',
        '""',
        '"\\u00e9"',
        "[1]",
        "{}",
        '{"a":1}',
        "0.1",
        "1E2",
        "-5",
    ]
    texts += [repr(rng.uniform(-1e6, 1e6)) for _ in range(n)]
    texts += [str(rng.randint(-(10**20), 10**20)) for _ in range(n)]
    bad = 0
    for value in odd:
        if smart(value) != fast(value):
            bad += 1
            print(f"feature {value!r}: smart union {smart(value)!r}, Feature {fast(value)!r}")
    for text in texts:
        doc = '{"f":{"a":' + text + "}}"
        if smart(None, doc) != fast(None, doc):
            bad += 1
            print(
                f"feature JSON {text}: smart union {smart(None, doc)!r}, "
                f"Feature {fast(None, doc)!r}"
            )
    return bad


def check_columns(rng: random.Random, n: int) -> int:
    """Batches of predictions, mostly alike (the column path), some not (event by event)."""
    from govloop.judging.features import observed_columns, observed_features

    values: list[Any] = [1.5, -2.0, 3, 0, "x", "", True, False]
    names = ["a", "b", "c", "output.label", "output.value", "score.s", "llm.input_chars"]
    bad = 0
    for _ in range(n):
        shape = rng.sample(names[:3], rng.randint(0, 3))
        if rng.random() < 0.1:
            shape.append(rng.choice(names[3:]))
        kinds = {name: rng.choice(["num", "int", "str", "bool", "any"]) for name in shape}

        def value(kind: str) -> Any:
            if kind == "any":
                return rng.choice(values)
            return {
                "num": rng.uniform(-1, 1),
                "int": rng.randint(-3, 3),
                "str": rng.choice("xyz"),
                "bool": rng.random() < 0.5,
            }[kind]

        ps = []
        for i in range(rng.randint(0, 6)):
            order = shape if rng.random() < 0.9 else rng.sample(shape, len(shape))
            features = {name: value(kinds[name]) for name in order}
            output: dict[str, Any] = rng.choice(
                [
                    {"prediction": rng.choice(values)},
                    {"score": rng.random()},
                    {"probabilities": {"y": 0.25, "n": 0.75}},
                    {"output_text": "hi", "input_text": "q", "input_tokens": 3},
                ]
            )
            if rng.random() < 0.2:
                output["scores"] = {"s": rng.random()}
            ps.append(
                Prediction(
                    model="m", model_version="1", request_id=str(i), features=features, **output
                )
            )
        cols = observed_columns(ps)
        rows = [observed_features(p) for p in ps]
        numeric: dict[str, list[float]] = {}
        categorical: dict[str, list[str]] = {}
        for num, cat in rows:
            for name, x in num.items():
                numeric.setdefault(name, []).append(x)
            for name, y in cat.items():
                categorical.setdefault(name, []).append(y)
        got = (cols.n, list(cols.numeric.items()), list(cols.categorical.items()))
        want = (len(ps), list(numeric.items()), list(categorical.items()))
        if got != want:
            bad += 1
            print(f"columns {[p.features for p in ps]!r}: reference {want!r}, fast {got!r}")
    return bad


def main() -> None:
    rng = random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    bad = (
        check_timestamps(rng, 200_000)
        + check_numbers(rng, 100_000)
        + check_feature_union(rng, 20_000)
        + check_columns(rng, 20_000)
    )
    print("fast paths agree with the reference checks" if not bad else f"{bad} disagreements")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
