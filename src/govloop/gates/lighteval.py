"""Lighteval results files (``results/<model>/results_<timestamp>.json``), every layout in use.

* ``results``: one row per task, keyed ``suite|task|fewshot`` up to Lighteval 0.10
  (``"lighteval|winogrande|5"``) and ``task|fewshot`` since 0.11 (``"gsm8k|0"``);
  ``task`` may name a subset (``"mmlu:abstract_algebra|5"``).  Each metric
  has its standard error under ``<metric>_stderr``.  Rows ``<task>:_average|<fewshot>``
  average a task's subsets: they are groups.  The file's ``all`` row is
  recomputed over the leaf tasks (Lighteval writes 0 for its standard errors).
* ``config_general.model_name`` names the model (``config.model_name`` in the
  older files of the Open LLM Leaderboard, which share this layout).
* ``config_tasks.<task>.metrics`` (``metric`` before 0.11) lists each metric with
  its ``higher_is_better``: a flag, or a map for a metric that reports several names.
* ``versions``: the task versions, not read.

A standard error of exactly 0 is read as unknown, since Lighteval writes 0
where it computed none.  Lighteval files carry no sample counts, so
``min_samples`` rules on them are inconclusive.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from govloop.gates.evidence import MetricValue
from govloop.gates.harness import Spelling, TaskRows, read_rows

__all__ = ["SPELLING", "is_lighteval", "lighteval_model", "parse_lighteval"]

#: ``acc_stderr`` is the standard error of ``acc``.
SPELLING = Spelling(
    stderr_of=lambda key: key.removesuffix("_stderr") if key.endswith("_stderr") else None,
    zero_stderr_unknown=True,
)


def is_lighteval(doc: Mapping[str, Any]) -> bool:
    """A Lighteval layout: ``config_general``, or task rows keyed with ``|``."""
    return "config_general" in doc or any("|" in task for task in doc["results"])


def lighteval_model(doc: Mapping[str, Any]) -> str | None:
    for key in ("config_general", "config"):
        config = doc.get(key)
        if isinstance(config, dict) and isinstance(config.get("model_name"), str):
            return str(config["model_name"])
    return None


def _directions(doc: Mapping[str, Any]) -> dict[str, bool]:
    """metric name -> higher_is_better, from ``config_tasks`` (a metric's direction is the
    metric's own, whatever task reports it)."""
    out: dict[str, bool] = {}
    tasks = doc.get("config_tasks")
    for config in tasks.values() if isinstance(tasks, dict) else ():
        if not isinstance(config, dict):
            continue
        listed = config.get("metrics", config.get("metric"))
        for metric in listed if isinstance(listed, list) else ():
            if not isinstance(metric, dict):
                continue  # an enum's name: the file does not say its direction
            names, flag = metric.get("metric_name"), metric.get("higher_is_better")
            if isinstance(flag, bool) and isinstance(names, str):
                out[names] = flag
            elif isinstance(flag, dict):
                out.update({k: v for k, v in flag.items() if isinstance(v, bool)})
            elif isinstance(flag, bool) and isinstance(names, list):
                out.update({n: flag for n in names if isinstance(n, str)})
    return out


def _is_group(task: str) -> bool:
    return ":_average|" in task


def parse_lighteval(doc: Mapping[str, Any], source: str = "<results>") -> dict[str, MetricValue]:
    """Metrics of a Lighteval results document (see the module docstring for names).

    >>> m = parse_lighteval({"results": {
    ...     "lighteval|piqa|0": {"acc": 0.774, "acc_stderr": 0.009756},
    ...     "lighteval|winogrande|5": {"acc": 0.701, "acc_stderr": 0.012862},
    ...     "all": {"acc": 0.7375, "acc_stderr": 0.0}}})
    >>> m["lighteval|piqa|0/acc"].stderr
    0.009756
    >>> round(m["all/acc"].value, 4), round(m["all/acc"].stderr, 5)
    (0.7375, 0.00807)
    """
    results = doc["results"]
    directions = _directions(doc)
    rows = TaskRows(
        tasks={t: r for t, r in results.items() if t != "all" and not _is_group(t)},
        groups={t: r for t, r in results.items() if _is_group(t)},
        higher_is_better=lambda task, metric: directions.get(metric),
    )
    return read_rows(rows, SPELLING, source)
