"""Offline gate inputs: a results file -> evidence, its format told from its structure.

=================== ==================================================================
kind                what the file looks like
=================== ==================================================================
``lighteval``       ``config_general`` and ``results`` rows keyed ``task|fewshot``
                    (:mod:`govloop.gates.lighteval`)
``lm-eval-0.4``     ``results`` rows with ``metric,filter`` keys; ``configs``,
                    ``n-shot``, ``higher_is_better`` (:mod:`govloop.gates.lm_eval`)
``lm-eval-0.3``     ``results``, ``versions`` and ``config.model`` (:mod:`govloop.gates.lm_eval`)
``predictions``     JSONL, one prediction per line (:mod:`govloop.gates.predictions`)
=================== ==================================================================

Anything else is refused with an error naming these formats.  The parsers
take bytes and are pure; :func:`load_results` reads the file and adds its
SHA-256, so a decision can later name the exact input it judged.  Invalid JSON
is reported at its line and column.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from govloop.errors import ConfigError
from govloop.gates.evidence import Evidence, MetricValue
from govloop.gates.lighteval import is_lighteval, lighteval_model, parse_lighteval
from govloop.gates.lm_eval import (
    is_lm_eval_03,
    is_lm_eval_04,
    lm_eval_model,
    parse_lm_eval_03,
    parse_lm_eval_04,
)
from govloop.gates.predictions import parse_predictions

__all__ = [
    "FORMATS",
    "Kind",
    "ResultsFile",
    "load_results",
    "parse_lighteval",
    "parse_predictions",
    "parse_results",
]

Kind = Literal["lighteval", "lm-eval-0.3", "lm-eval-0.4", "predictions"]

#: The formats read, as an error names them.
FORMATS = (
    "Lighteval JSON (config_general, results keyed 'task|fewshot'), "
    "lm-evaluation-harness 0.4 JSON (results with 'metric,filter' keys, configs, n-shot), "
    "lm-evaluation-harness 0.3 JSON (results, versions, config.model) "
    "or a JSONL of predictions (one object with 'prediction' per line)"
)


@dataclass(frozen=True)
class ResultsFile:
    """What a results file holds: the evidence, the file's SHA-256, its kind and model."""

    evidence: Evidence
    sha256: str
    kind: Kind
    model: str | None
    source: str


_Harness = tuple[
    Kind,
    Callable[[Mapping[str, Any]], bool],
    Callable[[Mapping[str, Any], str], dict[str, MetricValue]],
    Callable[[Mapping[str, Any]], str | None],
]
#: Tried in order: no lm-evaluation-harness task name has a ``|``, and a Lighteval file
#: has ``versions`` too, so 0.3 (the least specific) comes last.
_HARNESSES: tuple[_Harness, ...] = (
    ("lighteval", is_lighteval, parse_lighteval, lighteval_model),
    ("lm-eval-0.4", is_lm_eval_04, parse_lm_eval_04, lm_eval_model),
    ("lm-eval-0.3", is_lm_eval_03, parse_lm_eval_03, lm_eval_model),
)


def _unknown(source: str, why: str) -> ConfigError:
    return ConfigError(f"{source}: {why}; govloop reads {FORMATS}")


def _harness_results(doc: dict[str, Any], digest: str, source: str) -> ResultsFile:
    results = doc["results"]
    if not isinstance(results, dict) or not results:
        raise ConfigError(f"{source}: no 'results' mapping of tasks to metrics")
    for task, row in results.items():
        if not isinstance(row, dict):
            raise ConfigError(f"{source}: results.{task} is not a mapping of metrics")
    for kind, matches, parse, model in _HARNESSES:
        if matches(doc):
            evidence = Evidence(metrics=parse(doc, source))
            return ResultsFile(evidence, digest, kind, model(doc), source)
    raise _unknown(source, "a 'results' mapping of an unknown layout")


def _first_line_is_json(text: str) -> bool:
    """A JSONL file: its first non-blank line is a JSON object on its own."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except (json.JSONDecodeError, RecursionError):
        return False


def parse_results(data: bytes, source: str = "<results>") -> ResultsFile:
    """A results file of any kind the module docstring lists, told apart by structure."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text") from exc
    if not text.strip():
        raise ConfigError(f"{source}: the file is empty: no results and no predictions")
    try:
        doc = json.loads(text)
    except RecursionError as exc:
        raise ConfigError(f"{source}: nested too deeply to read") from exc
    except json.JSONDecodeError as exc:
        if not _first_line_is_json(text):
            raise ConfigError(
                f"{source}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}"
            ) from exc
        doc = None  # JSONL: each line is read on its own
    if isinstance(doc, dict) and "results" in doc:
        return _harness_results(doc, digest, source)
    if doc is not None and not (isinstance(doc, dict) and "prediction" in doc):
        raise _unknown(source, "a JSON document without 'results'")
    evidence = parse_predictions(text.splitlines(), source)
    return ResultsFile(evidence, digest, "predictions", None, source)


def load_results(path: Path) -> ResultsFile:
    """Read and parse a results file; errors name the file (:class:`ConfigError`)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read results: {exc.strerror}") from exc
    return parse_results(data, str(path))
