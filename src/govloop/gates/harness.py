"""What every evaluation harness's results file shares: task rows of metrics, each metric
with its standard error beside it, some rows aggregating others.

A format module (:mod:`~govloop.gates.lighteval`, :mod:`~govloop.gates.lm_eval`)
says how its rows are spelled (:class:`Spelling`): which keys are metrics, which
key holds a metric's standard error, which rows are groups.  This module turns
the rows into govloop's metric names:

* ``"<task>/<metric>"`` for a leaf task, as the file spells both
  (``"lighteval|winogrande|5/acc"``, ``"gsm8k/exact_match,strict-match"``);
* ``"group:<group>/<metric>"`` for a row that aggregates other rows (an
  lm-evaluation-harness group, a Lighteval ``:_average`` row), so that a pattern
  over tasks and the mean below never count a task twice;
* ``"all/<metric>"``: the mean over the leaf tasks that report the metric, with
  standard error ``sqrt(sum se**2) / k`` (:func:`govloop.stats.significance.mean_estimate`).

A standard error is never a metric of its own.  A negative one is an error in
the file; one that is missing, ``"N/A"`` or NaN is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from govloop.errors import ConfigError
from govloop.gates.evidence import MetricValue
from govloop.stats.significance import mean_estimate

__all__ = ["Spelling", "TaskRows", "number", "read_rows"]


def number(value: Any) -> float | None:
    """A finite number, else ``None`` (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class Spelling:
    """How one format spells a task row.

    ``stderr_of(key)`` is the metric whose standard error ``key`` holds (``None``:
    ``key`` is not a standard error); ``is_metric(key)`` tells metric keys from
    the row's other fields; ``zero_stderr_unknown`` reads a standard error of 0
    as "not computed" (Lighteval writes 0 there).
    """

    stderr_of: Callable[[str], str | None]
    is_metric: Callable[[str], bool] = lambda key: True
    zero_stderr_unknown: bool = False


@dataclass(frozen=True)
class TaskRows:
    """The rows of a results file, split into leaf tasks and groups, with what the file
    says about each task: the direction of its metrics and its sample count."""

    tasks: Mapping[str, Mapping[str, Any]]
    groups: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    higher_is_better: Callable[[str, str], bool | None] = lambda task, metric: None
    samples: Mapping[str, int] = field(default_factory=dict)


def _stderr(raw: Any, where: str, spelling: Spelling) -> float | None:
    value = number(raw)
    if value is None:
        return None
    if value < 0:
        raise ConfigError(f"{where} is {raw}: a standard error cannot be negative")
    return None if value == 0 and spelling.zero_stderr_unknown else value


def _value(raw: Any) -> MetricValue | None:
    """The metric's value, a missing value with the reason, or ``None``: not a metric."""
    if isinstance(raw, float) and math.isnan(raw):
        return MetricValue(value=None, note="is NaN")
    if isinstance(raw, float) and math.isinf(raw):
        return MetricValue(value=None, note="is infinite")
    value = number(raw)
    return None if value is None else MetricValue(value=value)


def _row(
    task: str, row: Mapping[str, Any], rows: TaskRows, spelling: Spelling, source: str
) -> dict[str, MetricValue]:
    """The metrics of one row, each with its standard error, direction and sample count."""
    stderrs = {m: k for k in row if (m := spelling.stderr_of(k)) is not None}
    out: dict[str, MetricValue] = {}
    for key, raw in row.items():
        if key in stderrs.values() or not spelling.is_metric(key):
            continue
        mv = _value(raw)
        if mv is None:  # a string, a list, nested details: not a metric
            continue
        se_key = stderrs.get(key)
        se = (
            None
            if se_key is None
            else _stderr(row[se_key], f"{source}: results.{task}.{se_key}", spelling)
        )
        out[key] = mv.model_copy(
            update={
                "stderr": se if mv.value is not None else None,
                "n": rows.samples.get(task),
                "higher_is_better": rows.higher_is_better(task, key),
            }
        )
    return out


def _mean_over_tasks(per_task: Mapping[str, Mapping[str, MetricValue]]) -> dict[str, MetricValue]:
    """``all/<metric>``: each metric's mean over the leaf tasks that have a value for it."""
    by_metric: dict[str, list[MetricValue]] = {}
    for metrics in per_task.values():
        for name, mv in metrics.items():
            if mv.value is not None:
                by_metric.setdefault(name, []).append(mv)
    out = {}
    for name, values in sorted(by_metric.items()):
        mean, se = mean_estimate(
            [v.value for v in values],  # type: ignore[misc]
            [v.stderr for v in values],
        )
        directions = {v.higher_is_better for v in values}
        out[f"all/{name}"] = MetricValue(
            value=mean,
            stderr=se,
            higher_is_better=directions.pop() if len(directions) == 1 else None,
        )
    return out


def read_rows(rows: TaskRows, spelling: Spelling, source: str) -> dict[str, MetricValue]:
    """Every metric of the file under govloop's names (see the module docstring)."""
    leaves = {task: _row(task, row, rows, spelling, source) for task, row in rows.tasks.items()}
    metrics = {
        f"{task}/{name}": mv for task, values in leaves.items() for name, mv in values.items()
    }
    for group, row in rows.groups.items():
        for name, mv in _row(group, row, rows, spelling, source).items():
            metrics[f"group:{group}/{name}"] = mv
    if not metrics:
        raise ConfigError(f"{source}: the results hold no numeric metrics")
    return metrics | _mean_over_tasks(leaves)
