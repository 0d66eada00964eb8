"""Which numbers and categories of a prediction the drift path watches (pure).

Tabular features pass through (numbers as numeric, strings and booleans as
categorical).  Model outputs become ``output.*`` features, so prediction drift
is feature drift on them.  LLM events contribute derived numeric features:
text lengths, token counts and every judge or safety score.  Embeddings are
handled apart (a multivariate test), not here.
"""

from __future__ import annotations

from govloop.schemas import Prediction

__all__ = ["observed_features"]


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
    label = p.predicted_label
    if label is not None:
        if isinstance(label, bool):
            categorical["output.label"] = "true" if label else "false"
        elif isinstance(label, str):
            categorical["output.label"] = label
        else:
            numeric["output.value"] = float(label)
    if p.probabilities:
        numeric["output.confidence"] = max(p.probabilities.values())
    if p.score is not None:
        numeric["output.score"] = p.score
    if p.input_text is not None:
        numeric["llm.input_chars"] = float(len(p.input_text))
    if p.output_text is not None:
        numeric["llm.output_chars"] = float(len(p.output_text))
    if p.input_tokens is not None:
        numeric["llm.input_tokens"] = float(p.input_tokens)
    if p.output_tokens is not None:
        numeric["llm.output_tokens"] = float(p.output_tokens)
    for name, value in p.scores.items():
        numeric[f"score.{name}"] = value
    return numeric, categorical
