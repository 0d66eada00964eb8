"""lm-evaluation-harness results files (``lm_eval --output_path``), versions 0.3 and 0.4.

**0.3** (``{"results": {"hellaswag": {"acc": 0.56, "acc_stderr": 0.005}},
"versions": {...}, "config": {"model": "hf-causal", "model_args":
"pretrained=..."}}``): rows keyed by task, ``<metric>_stderr`` beside each
metric, no direction and no sample counts in the file.

**0.4** (``{"results": {"hellaswag": {"alias": "hellaswag", "acc,none": 0.56,
"acc_stderr,none": 0.005}}, "groups": ..., "group_subtasks": ..., "configs":
..., "versions": ..., "n-shot": ..., "higher_is_better": ..., "n-samples":
...}``): every metric is spelled ``metric,filter`` and kept so
(``"gsm8k/exact_match,strict-match"``); its standard error is
``metric_stderr,filter`` (``"N/A"`` when not computed).  A group's row sits in
``results`` among the tasks: a row is a group when ``groups`` has it or
``group_subtasks`` lists tasks under it (or, in 0.4.0, which has neither map,
when ``configs`` has no task of that name).  ``higher_is_better`` gives each
task's metrics their direction (by metric, without the filter), ``n-samples``
each task's number of examples (``effective``).

The model is ``model_name`` (0.4.3 and later), else the ``pretrained=`` of
``config.model_args``, else ``config.model``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from govloop.gates.evidence import MetricValue
from govloop.gates.harness import Spelling, TaskRows, read_rows

__all__ = [
    "is_lm_eval_03",
    "is_lm_eval_04",
    "lm_eval_model",
    "parse_lm_eval_03",
    "parse_lm_eval_04",
]

#: Keys only 0.4 writes beside ``results``.
_KEYS_04 = ("configs", "n-shot", "higher_is_better", "group_subtasks", "n-samples")


def _stderr_04(key: str) -> str | None:
    metric, comma, filter_ = key.partition(",")
    if not comma or not metric.endswith("_stderr"):
        return None
    return f"{metric.removesuffix('_stderr')},{filter_}"


SPELLING_03 = Spelling(
    stderr_of=lambda key: key.removesuffix("_stderr") if key.endswith("_stderr") else None
)
#: Only ``metric,filter`` keys are metrics; ``alias``, ``samples``... are not.
SPELLING_04 = Spelling(stderr_of=_stderr_04, is_metric=lambda key: "," in key)


def is_lm_eval_04(doc: Mapping[str, Any]) -> bool:
    """0.4: ``metric,filter`` keys in a row, or one of the maps only 0.4 writes."""
    rows = [r for r in doc["results"].values() if isinstance(r, dict)]
    return any(k in doc for k in _KEYS_04) or any("," in key for row in rows for key in row)


def is_lm_eval_03(doc: Mapping[str, Any]) -> bool:
    """0.3: ``versions`` and a ``config`` naming the ``model``."""
    config = doc.get("config")
    return isinstance(doc.get("versions"), dict) and isinstance(config, dict) and "model" in config


def _pretrained(model_args: Any) -> str | None:
    if isinstance(model_args, dict):
        value = model_args.get("pretrained")
        return value if isinstance(value, str) else None
    if isinstance(model_args, str):
        for part in model_args.split(","):
            key, _, value = part.partition("=")
            if key.strip() == "pretrained" and value.strip():
                return value.strip()
    return None


def lm_eval_model(doc: Mapping[str, Any]) -> str | None:
    """The model the file names (see the module docstring)."""
    if isinstance(doc.get("model_name"), str):
        return str(doc["model_name"])
    config = doc.get("config")
    if not isinstance(config, dict):
        return None
    model = _pretrained(config.get("model_args")) or config.get("model")
    return model if isinstance(model, str) else None


def parse_lm_eval_03(doc: Mapping[str, Any], source: str = "<results>") -> dict[str, MetricValue]:
    """Metrics of an lm-evaluation-harness 0.3 results document.

    >>> m = parse_lm_eval_03({"results": {"lambada_openai": {"ppl": 6.4, "ppl_stderr": 0.17}},
    ...                       "versions": {"lambada_openai": 0}, "config": {"model": "gpt2"}})
    >>> m["lambada_openai/ppl"].stderr, sorted(m)
    (0.17, ['all/ppl', 'lambada_openai/ppl'])
    """
    return read_rows(TaskRows(tasks=doc["results"]), SPELLING_03, source)


def _groups_04(doc: Mapping[str, Any]) -> set[str]:
    groups = set(doc.get("groups") or {})
    subtasks = doc.get("group_subtasks")
    if isinstance(subtasks, dict):
        groups |= {name for name, children in subtasks.items() if children}
    configs = doc.get("configs")
    if not isinstance(subtasks, dict) and isinstance(configs, dict) and configs:
        groups |= {name for name in doc["results"] if name not in configs}
    return groups


def _samples_04(doc: Mapping[str, Any]) -> dict[str, int]:
    counts = doc.get("n-samples")
    out = {}
    for task, count in counts.items() if isinstance(counts, dict) else ():
        effective = count.get("effective") if isinstance(count, dict) else None
        if isinstance(effective, int) and not isinstance(effective, bool) and effective >= 0:
            out[task] = effective
    return out


def _direction_04(doc: Mapping[str, Any]) -> Any:
    table = doc.get("higher_is_better")
    table = table if isinstance(table, dict) else {}

    def higher_is_better(task: str, metric: str) -> bool | None:
        per_task = table.get(task)
        flag = per_task.get(metric.partition(",")[0]) if isinstance(per_task, dict) else None
        return flag if isinstance(flag, bool) else None

    return higher_is_better


def _mapping(row: Any) -> Mapping[str, Any]:
    return row if isinstance(row, dict) else {}


def parse_lm_eval_04(doc: Mapping[str, Any], source: str = "<results>") -> dict[str, MetricValue]:
    """Metrics of an lm-evaluation-harness 0.4 results document.

    >>> m = parse_lm_eval_04({"results": {
    ...     "mmlu": {"alias": "mmlu", "acc,none": 0.52, "acc_stderr,none": 0.004},
    ...     "mmlu_anatomy": {"alias": " - anatomy", "acc,none": 0.5, "acc_stderr,none": 0.04}},
    ...     "group_subtasks": {"mmlu": ["mmlu_anatomy"]},
    ...     "higher_is_better": {"mmlu_anatomy": {"acc": True}}})
    >>> sorted(m)
    ['all/acc,none', 'group:mmlu/acc,none', 'mmlu_anatomy/acc,none']
    >>> m["mmlu_anatomy/acc,none"].higher_is_better
    True
    """
    results = doc["results"]
    groups = _groups_04(doc)
    extra_groups = _mapping(doc.get("groups"))
    rows = TaskRows(
        tasks={t: r for t, r in results.items() if t not in groups},
        groups={g: _mapping(results.get(g, extra_groups.get(g))) for g in sorted(groups)},
        higher_is_better=_direction_04(doc),
        samples=_samples_04(doc),
    )
    return read_rows(rows, SPELLING_04, source)
