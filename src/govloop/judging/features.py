"""Which numbers and categories of a prediction the drift path watches (pure).

Tabular features pass through (numbers as numeric, strings and booleans as
categorical).  Model outputs become ``output.*`` features, so prediction drift
is feature drift on them.  LLM events contribute derived numeric features:
text lengths, token counts and every judge or safety score.  Embeddings
travel beside the columns, with their event ids, to a bounded sample that the
profile tests as one multivariate feature (:mod:`govloop.stats.embeddings`).

The derived features are defined once, in :func:`derived` and its table
:data:`DERIVED_NUMERIC`; the three ways of collecting features (one
prediction, a batch column by column, a batch event by event) all read them
from there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from govloop.schemas import Prediction, Scalar
from govloop.stats.profile import Columns

__all__ = [
    "DERIVED_NUMERIC",
    "DERIVED_PREFIXES",
    "derived",
    "observed_columns",
    "observed_features",
]


#: The numeric features derived from fields of a prediction, in the order they are
#: collected: (feature name, the prediction's field, how its value becomes a number).
#: A field that is None (or empty) contributes nothing.
DERIVED_NUMERIC: tuple[tuple[str, str, str], ...] = (
    ("output.confidence", "probabilities", "max"),
    ("output.score", "score", "value"),
    ("llm.input_chars", "input_text", "length"),
    ("llm.output_chars", "output_text", "length"),
    ("llm.input_tokens", "input_tokens", "float"),
    ("llm.output_tokens", "output_tokens", "float"),
)
#: Every derived feature's name starts with one of these (a tabular feature of such a
#: name may be replaced by the derived one).
DERIVED_PREFIXES = ("output.", "llm.", "score.")


def derived(p: Prediction, label: Scalar | None) -> list[tuple[str, bool, Any]]:
    """The derived features of one prediction: ``(name, is_numeric, value)`` in order.

    ``label`` is the prediction's ``predicted_label`` (computed once by the
    caller): a string or boolean is the categorical ``output.label``, a number
    the numeric ``output.value``.  Then :data:`DERIVED_NUMERIC`, then every
    judge or safety score as ``score.<name>``.

    >>> p = Prediction(model="m", model_version="1", request_id="r", prediction=True,
    ...                output_text="hi", output_tokens=1, scores={"toxicity": 0.25})
    >>> derived(p, p.predicted_label)
    [('output.label', False, 'true'), ('llm.output_chars', True, 2.0), \
('llm.output_tokens', True, 1.0), ('score.toxicity', True, 0.25)]
    """
    out: list[tuple[str, bool, Any]] = []
    if label is not None:
        if isinstance(label, bool):
            out.append(("output.label", False, "true" if label else "false"))
        elif isinstance(label, str):
            out.append(("output.label", False, label))
        else:
            out.append(("output.value", True, float(label)))
    fields = vars(p)
    for name, field, how in DERIVED_NUMERIC:
        value = fields[field]
        if value is None:
            continue
        if how == "length":
            value = float(len(value))
        elif how == "float":
            value = float(value)
        elif how == "max":
            if not value:
                continue
            value = max(value.values())
        out.append((name, True, value))
    if p.scores:
        out.extend([(f"score.{name}", True, x) for name, x in p.scores.items()])
    return out


def observed_features(p: Prediction) -> tuple[dict[str, float], dict[str, str]]:
    """Numeric and categorical features of one prediction, by name.

    >>> p = Prediction(model="m", model_version="1", request_id="r",
    ...                features={"age": 41, "plan": "pro", "trial": False},
    ...                probabilities={"yes": 0.7, "no": 0.3},
    ...                input_text="hello", output_text="hi there", scores={"toxicity": 0.01})
    >>> numeric, categorical = observed_features(p)
    >>> sorted(numeric.items())
    [('age', 41.0), ('llm.input_chars', 5.0), ('llm.output_chars', 8.0),
     ('output.confidence', 0.7), ('score.toxicity', 0.01)]
    >>> sorted(categorical.items())
    [('output.label', 'yes'), ('plan', 'pro'), ('trial', 'false')]
    """
    numeric: dict[str, float] = {}
    categorical: dict[str, str] = {}
    for name, value in p.features.items():
        if isinstance(value, bool):
            categorical[name] = "true" if value else "false"
        elif isinstance(value, int | float):
            numeric[name] = float(value)
        else:
            categorical[name] = value
    for name, is_numeric, value in derived(p, p.predicted_label):
        if is_numeric:
            numeric[name] = value
        else:
            categorical[name] = value
    return numeric, categorical


def observed_columns(
    predictions: Sequence[Prediction], labels: Sequence[Scalar | None] | None = None
) -> Columns:
    """The features of many predictions, feature by feature: :func:`observed_features` in bulk.

    Same names, values and order as calling :func:`observed_features` on each
    prediction, without building two dicts per event (this is the hot path).
    ``labels``, if given, are the predictions' ``predicted_label`` (computed
    once by the caller).

    When every prediction has the same feature names, in the same order, and
    each feature one kind of value (numbers, strings or booleans), the
    feature columns are built with ``zip`` and each column's types checked
    once; anything else goes event by event.

    >>> ps = [Prediction(model="m", model_version="1", request_id=str(i), prediction=label,
    ...                  features={"age": 40 + i, "plan": "pro", "output.value": 0.5},
    ...                  scores={"tox": 0.1}) for i, label in enumerate(["yes", 3, True])]
    >>> cols = observed_columns(ps)
    >>> rows = [observed_features(p) for p in ps]
    >>> cols.numeric == {k: [r[0][k] for r in rows if k in r[0]] for k in cols.numeric}
    True
    >>> cols.categorical == {k: [r[1][k] for r in rows if k in r[1]] for k in cols.categorical}
    True
    >>> cols.n, cols.numeric["output.value"], cols.categorical["output.label"]
    (3, [0.5, 3.0, 0.5], ['yes', 'true'])
    >>> same = [Prediction(model="m", model_version="1", request_id=str(i), score=i / 4,
    ...                    features={"age": 40 + i, "plan": "pro", "ok": i > 0})
    ...         for i in range(3)]
    >>> cols = observed_columns(same)
    >>> cols.n, cols.numeric
    (3, {'age': [40.0, 41.0, 42.0], 'output.score': [0.0, 0.25, 0.5]})
    >>> cols.categorical
    {'plan': ['pro', 'pro', 'pro'], 'ok': ['false', 'true', 'true']}
    """
    if labels is None:
        labels = [p.predicted_label for p in predictions]
    if not predictions:
        return Columns(0, {}, {})
    numeric: dict[str, list[float]] = {}
    categorical: dict[str, list[str]] = {}
    if not _by_column(predictions, numeric, categorical):
        numeric.clear()
        categorical.clear()
        return _by_event(predictions, labels)._replace(embeddings=_embeddings(predictions))
    for p, label in zip(predictions, labels, strict=True):
        for name, is_numeric, value in derived(p, label):
            _add(numeric if is_numeric else categorical, name, value)
    return Columns(len(predictions), numeric, categorical, _embeddings(predictions))


_NUMBERS = frozenset({float, int})
#: Whether a tuple of feature names can take the column path (no derived name in it).
_plain_names: dict[tuple[str, ...], bool] = {}


def _by_column(
    predictions: Sequence[Prediction],
    numeric: dict[str, list[float]],
    categorical: dict[str, list[str]],
) -> bool:
    """The feature columns of predictions that share their feature names; False if they don't.

    Each column must hold one kind of value (exactly ``float``/``int``, ``str``
    or ``bool``), as its first value's kind; the order of the names is that of
    the first prediction, as :func:`_by_event` would insert them.
    """
    first = predictions[0].features
    names = tuple(first)
    plain = _plain_names.get(names)
    if plain is None:
        plain = not any(name.startswith(DERIVED_PREFIXES) for name in names)
        if len(_plain_names) < 1024:
            _plain_names[names] = plain
    if not plain:
        return False
    if not names:
        return all(not p.features for p in predictions)
    rows = []
    for p in predictions:
        features = p.features
        if tuple(features) != names:
            return False
        rows.append(features.values())
    for name, values in zip(names, zip(*rows, strict=True), strict=True):
        kinds = set(map(type, values))
        if kinds == {float}:
            numeric[name] = list(values)
        elif kinds == {str}:
            categorical[name] = list(values)
        elif kinds <= _NUMBERS:
            numeric[name] = list(map(float, values))
        elif kinds == {bool}:
            categorical[name] = ["true" if v else "false" for v in values]
        else:
            return False
    return True


def _add(columns: dict[str, list[Any]], name: str, value: Any) -> None:
    column = columns.get(name)
    if column is None:
        columns[name] = [value]
    else:
        column.append(value)


def _embeddings(predictions: Sequence[Prediction]) -> tuple[tuple[str, list[float]], ...]:
    """(event id, vector) of the predictions that carry an embedding (sampled by the profile)."""
    return tuple((p.event_id, p.embedding) for p in predictions if p.embedding is not None)


def _by_event(predictions: Iterable[Prediction], labels: Iterable[Scalar | None]) -> Columns:
    """:func:`observed_columns` event by event: any mix of names and kinds of values."""
    numeric: dict[str, list[float]] = {}
    categorical: dict[str, list[str]] = {}
    n = 0
    for p, label in zip(predictions, labels, strict=True):
        n += 1
        features = p.features
        for name, value in features.items():
            kind = type(value)
            x: Any
            target: dict[str, list[Any]]
            if kind is float or kind is int:
                x, target = float(value), numeric
            elif kind is str:
                x, target = value, categorical
            elif isinstance(value, bool):
                x, target = ("true" if value else "false"), categorical
            elif isinstance(value, int | float):
                x, target = float(value), numeric
            else:
                x, target = value, categorical
            column = target.get(name)
            if column is None:
                target[name] = [x]
            else:
                column.append(x)
        for name, is_numeric, value in derived(p, label):
            _put(numeric if is_numeric else categorical, name, value, features, is_numeric)
    return Columns(n, numeric, categorical)


def _put(
    columns: dict[str, list[Any]], name: str, value: Any, features: dict[str, Any], numeric: bool
) -> None:
    """Add this event's derived value; it replaces a same-named feature, as one dict would."""
    column = columns.get(name)
    if column is None:
        columns[name] = [value]
        return
    if name in features:
        kind = type(features[name])
        if numeric == (kind is not str and kind is not bool):
            column[-1] = value  # the feature's value, appended for this very event
            return
    column.append(value)
