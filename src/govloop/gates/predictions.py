"""Predictions JSONL: one object per line, the offline input of accuracy and safety rules.

Each line has ``prediction`` and ``label`` (a line without ``label`` counts but
is not scored), optional ``id``, ``output`` (the text safety rules look at;
default: the prediction) and ``flags`` (e.g. ``{"refusal": true, "toxicity":
0.02}``).  Metrics, with counts: ``count``, ``labelled_count``,
``correct_count``, ``accuracy``, ``error_rate`` and ``<flag>_rate`` for every
boolean flag; every line becomes a sample for safety rules.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from govloop.errors import ConfigError
from govloop.gates.evidence import Evidence, MetricValue, Sample

__all__ = ["parse_predictions"]


def _line(number: int, line: str, source: str) -> dict[str, object]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}:{number}:{exc.colno}: not valid JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{source}:{number}: nested too deeply to read") from exc
    if not isinstance(row, dict) or "prediction" not in row:
        raise ConfigError(
            f"{source}:{number}: a prediction line is an object with "
            "'prediction' (and 'label' to be scored)"
        )
    if not isinstance(row.get("flags") or {}, dict):
        raise ConfigError(f"{source}:{number}: flags must be an object")
    return row


def _sample(number: int, row: dict[str, object], flags: object, source: str) -> Sample:
    output = row.get("output", row["prediction"])
    try:
        return Sample(
            output=output if isinstance(output, str) else json.dumps(output),
            flags=flags,  # type: ignore[arg-type]
            id=None if row.get("id") is None else str(row["id"]),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{source}:{number}: {where}: {first['msg']}") from exc


def parse_predictions(lines: list[str], source: str = "<predictions>") -> Evidence:
    """Evidence from JSONL lines of predictions with labels (see the module docstring).

    >>> ev = parse_predictions(['{"prediction": 1, "label": 1}', '{"prediction": 0, "label": 1}',
    ...                         '{"prediction": 1, "flags": {"refusal": true}}'])
    >>> ev.metrics["accuracy"].value, ev.metrics["accuracy"].n
    (0.5, 2)
    >>> ev.metrics["refusal_rate"].value, ev.metrics["count"].value
    (1.0, 3.0)
    """
    samples: list[Sample] = []
    labelled = correct = 0
    flag_counts: dict[str, list[int]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row = _line(number, line, source)
        flags: dict[str, object] = row.get("flags") or {}  # type: ignore[assignment]
        if row.get("label") is not None:
            labelled += 1
            correct += row["prediction"] == row["label"]
        for name, value in flags.items():
            if isinstance(value, bool):
                hits = flag_counts.setdefault(name, [0, 0])
                hits[0] += value
                hits[1] += 1
        samples.append(_sample(number, row, flags, source))
    if not samples:
        raise ConfigError(f"{source}: no predictions in the file")
    metrics = {
        "count": MetricValue(value=float(len(samples))),
        "labelled_count": MetricValue(value=float(labelled)),
        "correct_count": MetricValue(value=float(correct)),
    }
    if labelled:
        metrics["accuracy"] = MetricValue(value=correct / labelled, n=labelled, successes=correct)
        metrics["error_rate"] = MetricValue(
            value=1 - correct / labelled, n=labelled, successes=labelled - correct
        )
    else:
        metrics["accuracy"] = MetricValue(value=None, note="has no labelled predictions")
    for name, (flagged, judged) in sorted(flag_counts.items()):
        metrics[f"{name}_rate"] = MetricValue(value=flagged / judged, n=judged, successes=flagged)
    return Evidence(metrics=metrics, samples=samples)
