"""Offline gate inputs: a Lighteval results JSON or a JSONL of predictions -> evidence.

The parsers take bytes and are pure; :func:`load_results` reads the file and
adds its SHA-256, so a decision can later name the exact input it judged.

**Lighteval** (``{"config_general": ..., "results": {"suite|task|shots": {"acc":
0.7, "acc_stderr": 0.01}}}``).  Each metric becomes ``"<suite|task|shots>/<metric>"``
with its ``_stderr``, e.g. ``"lighteval|winogrande|5/acc"``.  The file's own
``all`` entry is replaced: ``"all/<metric>"`` is the mean over the tasks that
report the metric, with standard error ``sqrt(sum se**2) / k`` (Lighteval
writes 0 there).  A standard error of exactly 0 is read as unknown, since
Lighteval writes 0 where it computed none.  Lighteval files carry no sample
counts, so ``min_samples`` rules on them are inconclusive.

**Predictions JSONL**, one object per line: ``prediction`` and ``label`` (a line
without ``label`` counts but is not scored), optional ``id``, ``output`` (the
text safety rules look at; default: the prediction) and ``flags`` (e.g.
``{"refusal": true, "toxicity": 0.02}``).  Metrics, with counts: ``count``,
``labelled_count``, ``correct_count``, ``accuracy``, ``error_rate`` and
``<flag>_rate`` for every boolean flag.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from govloop.errors import ConfigError
from govloop.gates.evidence import Evidence, MetricValue, Sample
from govloop.stats.significance import mean_estimate

__all__ = ["ResultsFile", "load_results", "parse_lighteval", "parse_predictions", "parse_results"]


@dataclass(frozen=True)
class ResultsFile:
    """What a results file holds: the evidence, the file's SHA-256, its kind and model."""

    evidence: Evidence
    sha256: str
    kind: Literal["lighteval", "predictions"]
    model: str | None
    source: str


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) or math.isinf(value) else float(value)


def parse_lighteval(doc: dict[str, Any], source: str = "<results>") -> dict[str, MetricValue]:
    """Metrics of a Lighteval results document (see the module docstring for names).

    >>> m = parse_lighteval({"results": {
    ...     "lighteval|piqa|0": {"acc": 0.774, "acc_stderr": 0.009756},
    ...     "lighteval|winogrande|5": {"acc": 0.701, "acc_stderr": 0.012862},
    ...     "all": {"acc": 0.7375, "acc_stderr": 0.0}}})
    >>> m["lighteval|piqa|0/acc"]
    MetricValue(value=0.774, stderr=0.009756, n=None, successes=None, note='')
    >>> round(m["all/acc"].value, 4), round(m["all/acc"].stderr, 5)
    (0.7375, 0.00807)
    """
    results = doc.get("results")
    if not isinstance(results, dict) or not results:
        raise ConfigError(f"{source}: no 'results' mapping of tasks to metrics")
    metrics: dict[str, MetricValue] = {}
    per_metric: dict[str, list[MetricValue]] = {}
    for task, values in results.items():
        if task == "all":
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: results.{task} is not a mapping of metrics")
        for name, raw in values.items():
            if name.endswith("_stderr"):
                continue
            value = _number(raw)
            if value is None and raw is not None and not isinstance(raw, float):
                continue  # not a metric (Lighteval may add strings or nested details)
            se = _number(values.get(f"{name}_stderr"))
            mv = MetricValue(
                value=value, stderr=se or None, note="" if value is not None else "is NaN"
            )
            metrics[f"{task}/{name}"] = mv
            if value is not None:
                per_metric.setdefault(name, []).append(mv)
    if not metrics:
        raise ConfigError(f"{source}: the results hold no numeric metrics")
    for name, values in sorted(per_metric.items()):
        mean, se = mean_estimate(
            [v.value for v in values],  # type: ignore[misc]
            [v.stderr for v in values],
        )
        metrics[f"all/{name}"] = MetricValue(value=mean, stderr=se)
    return metrics


def parse_predictions(lines: list[str], source: str = "<predictions>") -> Evidence:
    """Evidence from JSONL lines of predictions with labels (see the module docstring).

    >>> ev = parse_predictions(['{"prediction": 1, "label": 1}', '{"prediction": 0, "label": 1}',
    ...                         '{"prediction": 1, "flags": {"refusal": true}}'])
    >>> ev.metrics["accuracy"]
    MetricValue(value=0.5, stderr=None, n=2, successes=1, note='')
    >>> ev.metrics["refusal_rate"].value, ev.metrics["count"].value
    (1.0, 3.0)
    """
    samples: list[Sample] = []
    labelled = correct = 0
    flag_counts: dict[str, list[int]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}:{number}: not valid JSON: {exc.msg}") from exc
        if not isinstance(row, dict) or "prediction" not in row:
            raise ConfigError(
                f"{source}:{number}: a prediction line is an object with "
                "'prediction' (and 'label' to be scored)"
            )
        flags = row.get("flags") or {}
        if not isinstance(flags, dict):
            raise ConfigError(f"{source}:{number}: flags must be an object")
        if row.get("label") is not None:
            labelled += 1
            correct += row["prediction"] == row["label"]
        for name, value in flags.items():
            if isinstance(value, bool):
                hits = flag_counts.setdefault(name, [0, 0])
                hits[0] += value
                hits[1] += 1
        output = row.get("output", row["prediction"])
        samples.append(
            Sample(
                output=output if isinstance(output, str) else json.dumps(output),
                flags=flags,
                id=None if row.get("id") is None else str(row["id"]),
            )
        )
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


def parse_results(data: bytes, source: str = "<results>") -> ResultsFile:
    """A Lighteval results JSON or a predictions JSONL, told apart by content."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and "results" in doc:
        config = doc.get("config_general")
        model = config.get("model_name") if isinstance(config, dict) else None
        evidence = Evidence(metrics=parse_lighteval(doc, source))
        return ResultsFile(evidence, digest, "lighteval", model, source)
    if text.lstrip().startswith("{") and doc is None and "\n" not in text.strip():
        raise ConfigError(f"{source}: not valid JSON")
    evidence = parse_predictions(text.splitlines(), source)
    return ResultsFile(evidence, digest, "predictions", None, source)


def load_results(path: Path) -> ResultsFile:
    """Read and parse a results file; errors name the file (:class:`ConfigError`)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read results: {exc.strerror}") from exc
    return parse_results(data, str(path))
