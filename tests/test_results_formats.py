"""Results files of every harness layout govloop reads, told apart by structure.

The fixtures (tests/fixtures/results/README.md) have each harness's own shape; the
tests check the names govloop gives their metrics, that standard errors stay with
their metric, that group rows stay apart from leaf tasks, and that each metric's
direction is respected by regression rules.  Pure code: no service is needed.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from govloop.errors import ConfigError
from govloop.gates import Evidence, check, parse_policy, parse_results
from govloop.gates.inputs import FORMATS
from govloop.gates.rules import RegressionRule

FIXTURES = Path(__file__).parent / "fixtures" / "results"


def fixture(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return doc


def parse(doc: dict[str, Any]) -> Any:
    return parse_results(json.dumps(doc).encode(), "r.json")


def regression(**fields: Any) -> RegressionRule:
    return RegressionRule.model_validate({"kind": "regression", "metric": "*", **fields})


def judged(now: dict[str, Any], before: dict[str, Any], **rule: Any) -> Any:
    current, base = parse(now).evidence, parse(before).evidence
    return check(regression(**rule), current.with_baseline(base.metrics, "before"))


# --- each layout -----------------------------------------------------------------------------


def test_lighteval_since_0_11_rows_are_task_fewshot() -> None:
    loaded = parse(fixture("lighteval-0.13.json"))
    m = loaded.evidence.metrics
    assert (loaded.kind, loaded.model) == ("lighteval", "acme/small-lm-2.0")
    assert sorted(n for n in m if not n.startswith("all/")) == [
        "group:mmlu:_average|5/acc",
        "gsm8k|5/extractive_match",
        "mmlu:abstract_algebra|5/acc",
        "mmlu:anatomy|5/acc",
        "truthfulqa:mc|0/truthfulqa_mc1",
        "truthfulqa:mc|0/truthfulqa_mc2",
        "wikitext:103:document_level|0/bits_per_byte",
        "wikitext:103:document_level|0/byte_perplexity",
        "wikitext:103:document_level|0/word_perplexity",
    ]
    assert m["gsm8k|5/extractive_match"].stderr == 0.013557
    # the mean is over the two leaf tasks, not over them and their own average
    assert m["all/acc"].value == pytest.approx((0.31 + 0.518519) / 2)
    assert m["all/acc"].stderr == pytest.approx(math.hypot(0.046482, 0.043163) / 2)
    # directions from config_tasks: a flag per metric, or a map for a metric with several names
    assert m["wikitext:103:document_level|0/word_perplexity"].higher_is_better is False
    assert m["all/bits_per_byte"].higher_is_better is False
    assert m["mmlu:anatomy|5/acc"].higher_is_better is True
    assert m["truthfulqa:mc|0/truthfulqa_mc2"].higher_is_better is True
    assert m["wikitext:103:document_level|0/word_perplexity"].stderr is None


def test_lighteval_up_to_0_10_rows_are_suite_task_fewshot() -> None:
    loaded = parse(fixture("lighteval-0.8.json"))
    m = loaded.evidence.metrics
    assert (loaded.kind, loaded.model) == ("lighteval", "acme/small-lm-1.5")
    assert m["leaderboard|arc:challenge|25/acc_norm"].stderr == 0.014604
    assert m["group:lighteval|mmlu:_average|5/acc"].value == 0.27315
    assert "lighteval|mmlu:_average|5/acc" not in m
    assert m["all/acc"].value == pytest.approx((0.4497 + 0.2549 + 0.2914) / 3)
    assert m["all/acc_norm"].value == pytest.approx(0.4838)
    assert m["lighteval|mmlu:college_physics|5/acc"].higher_is_better is True


def test_the_leaderboard_era_layout_is_lighteval() -> None:
    """The Open LLM Leaderboard's older files: ``config`` instead of ``config_general``."""
    loaded = parse(
        {
            "config": {"model_name": "acme/old-lm", "model_sha": "abc"},
            "results": {
                "harness|arc:challenge|25": {"acc": 0.42, "acc_stderr": 0.0144},
                "harness|hellaswag|10": {"acc": 0.51, "acc_stderr": 0.005},
                "all": {"acc": 0.465, "acc_stderr": 0.0},
            },
            "versions": {"harness|arc:challenge|25": 0, "harness|hellaswag|10": 0},
        }
    )
    assert (loaded.kind, loaded.model) == ("lighteval", "acme/old-lm")
    assert loaded.evidence.metrics["harness|hellaswag|10/acc"].stderr == 0.005
    assert loaded.evidence.metrics["all/acc"].stderr == pytest.approx(math.hypot(0.0144, 0.005) / 2)


def test_lm_eval_0_3() -> None:
    loaded = parse(fixture("lm-eval-0.3.json"))
    m = loaded.evidence.metrics
    assert (loaded.kind, loaded.model) == ("lm-eval-0.3", "EleutherAI/pythia-160m")
    assert m["lambada_openai/ppl"].value == 38.2519
    assert m["lambada_openai/ppl"].stderr == 1.412183
    assert m["lambada_openai/ppl"].higher_is_better is None  # 0.3 does not say
    assert m["all/acc"].value == pytest.approx((0.2872 + 0.3284 + 0.4373) / 3)
    assert len(m) == 6 + 3  # 6 task metrics, 3 means: no standard error became a metric


def test_lm_eval_0_4_metric_filter_names_and_groups_apart() -> None:
    loaded = parse(fixture("lm-eval-0.4.json"))
    m = loaded.evidence.metrics
    assert (loaded.kind, loaded.model) == ("lm-eval-0.4", "EleutherAI/pythia-160m")
    assert sorted(n for n in m if not n.startswith("all/")) == [
        "group:mmlu/acc,none",
        "group:mmlu_stem/acc,none",
        "gsm8k/exact_match,flexible-extract",
        "gsm8k/exact_match,strict-match",
        "mmlu_anatomy/acc,none",
        "mmlu_astronomy/acc,none",
        "wikitext/bits_per_byte,none",
        "wikitext/byte_perplexity,none",
        "wikitext/word_perplexity,none",
    ]
    assert m["gsm8k/exact_match,strict-match"].stderr == 0.004172
    assert m["gsm8k/exact_match,flexible-extract"].stderr == 0.004836
    assert m["wikitext/word_perplexity,none"].stderr is None  # "N/A"
    assert m["mmlu_anatomy/acc,none"].n == 135  # n-samples, effective
    assert m["group:mmlu/acc,none"].value == 0.2497
    # the mean counts each leaf once, never a group that already averages them
    assert m["all/acc,none"].value == pytest.approx((0.2222 + 0.1776) / 2)
    assert m["wikitext/word_perplexity,none"].higher_is_better is False
    assert m["gsm8k/exact_match,strict-match"].higher_is_better is True


def test_lm_eval_0_4_0_groups_are_the_rows_without_a_config() -> None:
    doc = fixture("lm-eval-0.4.json")
    for key in ("groups", "group_subtasks", "higher_is_better", "n-samples"):
        del doc[key]  # 0.4.0 wrote none of these
    m = parse(doc).evidence.metrics
    assert "group:mmlu_stem/acc,none" in m and "mmlu_stem/acc,none" not in m
    assert m["mmlu_anatomy/acc,none"].higher_is_better is None


def test_each_layout_is_told_apart_by_structure() -> None:
    """The lm-eval 0.4 file was once read as Lighteval, each stderr a metric of its own."""
    kinds = {
        name: parse(fixture(name)).kind for name in sorted(p.name for p in FIXTURES.glob("*.json"))
    }
    assert kinds == {
        "lighteval-0.13.json": "lighteval",
        "lighteval-0.8.json": "lighteval",
        "lm-eval-0.3.json": "lm-eval-0.3",
        "lm-eval-0.4.json": "lm-eval-0.4",
    }
    for name in kinds:
        assert not any("_stderr" in n for n in parse(fixture(name)).evidence.metrics), name


# --- direction -------------------------------------------------------------------------------


def _with_stderr(doc: dict[str, Any], task: str, metric: str, value: float, se: float) -> None:
    doc["results"][task][metric] = value
    stderr = metric.replace(",", "_stderr,") if "," in metric else f"{metric}_stderr"
    doc["results"][task][stderr] = se


def test_a_rising_perplexity_fails_when_the_file_says_lower_is_better() -> None:
    before = fixture("lm-eval-0.4.json")
    _with_stderr(before, "wikitext", "word_perplexity,none", 37.0, 0.5)
    worse, better = copy.deepcopy(before), copy.deepcopy(before)
    _with_stderr(worse, "wikitext", "word_perplexity,none", 40.0, 0.5)
    _with_stderr(better, "wikitext", "word_perplexity,none", 34.0, 0.5)
    rule = {"metric": "wikitext/word_perplexity,none"}
    rose = judged(worse, before, **rule)
    assert rose.outcome == "fail"
    assert rose.evidence["higher_is_better"] is False
    assert rose.evidence["direction_from"] == "results"
    assert rose.evidence["drop"] == pytest.approx(3.0)
    assert judged(better, before, **rule).outcome == "pass"
    # the policy's own word wins over the file's
    overruled = judged(worse, before, higher_is_better=True, **rule)
    assert (overruled.outcome, overruled.evidence["direction_from"]) == ("pass", "policy")


def test_a_rising_error_rate_fails_with_lighteval_directions() -> None:
    before = fixture("lighteval-0.13.json")
    task = "wikitext:103:document_level|0"
    _with_stderr(before, task, "bits_per_byte", 0.79, 0.004)
    now = copy.deepcopy(before)
    _with_stderr(now, task, "bits_per_byte", 0.81, 0.004)
    report = judged(now, before, metric=f"{task}/bits_per_byte")
    assert (report.outcome, report.evidence["direction_from"]) == ("fail", "results")


def test_known_lower_is_better_metrics_when_the_file_is_silent() -> None:
    before = fixture("lm-eval-0.3.json")
    now = copy.deepcopy(before)
    _with_stderr(now, "lambada_openai", "ppl", 45.0, 1.4)
    report = judged(now, before, metric="lambada_openai/ppl")
    assert (report.outcome, report.evidence["direction_from"]) == ("fail", "known metric")
    acc = judged(now, before, metric="lambada_openai/acc")
    assert (acc.outcome, acc.evidence["direction_from"]) == ("pass", "default")


def test_online_error_rate_and_latency_regressions_point_the_right_way() -> None:
    policy = parse_policy(
        "name: q\nrules:\n  - {kind: regression, metric: error_rate}\n"
        "  - {kind: regression, metric: latency_p95_ms}\n"
    )
    from govloop.gates import MetricValue, judge

    base = {
        "error_rate": MetricValue(value=0.10, n=1000, successes=100),
        "latency_p95_ms": MetricValue(value=200.0, stderr=2.0),
    }
    worse = Evidence(
        metrics={
            "error_rate": MetricValue(value=0.15, n=1000, successes=150),
            "latency_p95_ms": MetricValue(value=230.0, stderr=2.0),
        },
        baseline=base,
    )
    assert [r.outcome for r in judge(policy, worse).rules] == ["fail", "fail"]
    better = Evidence(
        metrics={
            "error_rate": MetricValue(value=0.05, n=1000, successes=50),
            "latency_p95_ms": MetricValue(value=170.0, stderr=2.0),
        },
        baseline=base,
    )
    assert [r.outcome for r in judge(policy, better).rules] == ["pass", "pass"]


# --- bad files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'{"results": {"hellaswag": {"acc": 0.5}}}', "a 'results' mapping of an unknown layout"),
        (b'{"metrics": {"acc": 0.5}}', "a JSON document without 'results'"),
        (b"[1, 2]", "a JSON document without 'results'"),
    ],
)
def test_an_unknown_layout_names_the_formats_read(data: bytes, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_results(data, "r.json")
    assert str(info.value) == f"r.json: {why}; govloop reads {FORMATS}"
    for name in ("Lighteval", "lm-evaluation-harness 0.4", "lm-evaluation-harness 0.3", "JSONL"):
        assert name in str(info.value)


def test_invalid_json_is_reported_at_its_line_and_column() -> None:
    text = '{\n  "results": {\n    "gsm8k|5": {"em": 0.5,}\n  }\n}\n'
    with pytest.raises(ConfigError) as info:
        parse_results(text.encode(), "r.json")
    col = text.splitlines()[2].index("}") + 1
    assert str(info.value) == (
        f"r.json:3:{col}: not valid JSON: Expecting property name enclosed in double quotes"
    )
    jsonl = '{"prediction": 1, "label": 1}\n{"prediction": 2, "label" 2}\n'
    with pytest.raises(ConfigError) as info:
        parse_results(jsonl.encode(), "p.jsonl")
    assert str(info.value) == "p.jsonl:2:27: not valid JSON: Expecting ':' delimiter"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"config_general": {}, "results": {"gsm8k|5": {"em": 0.5, "em_stderr": -1}}},
            "r.json: results.gsm8k|5.em_stderr is -1: a standard error cannot be negative",
        ),
        (
            {"results": {"arc": {"acc,none": 0.5, "acc_stderr,none": -0.01}}, "configs": {}},
            "r.json: results.arc.acc_stderr,none is -0.01: a standard error cannot be negative",
        ),
        (
            {
                "results": {"arc": {"acc": 0.5, "acc_stderr": -1}},
                "versions": {},
                "config": {"model": "hf"},
            },
            "r.json: results.arc.acc_stderr is -1: a standard error cannot be negative",
        ),
        (
            {"results": {"arc": {"alias": "arc"}}, "configs": {}},
            "r.json: the results hold no numeric metrics",
        ),
    ],
)
def test_bad_values_are_named(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(doc)
    assert str(info.value) == message


def test_nan_values_are_missing_with_a_reason() -> None:
    m = parse_results(
        b'{"config_general": {}, "results": {"t|0": {"acc": NaN, "acc_stderr": NaN, "f1": 0.5}}}'
    ).evidence.metrics
    assert (m["t|0/acc"].value, m["t|0/acc"].note) == (None, "is NaN")
    assert "all/acc" not in m and m["all/f1"].value == 0.5


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(ConfigError) as info:
        parse_results(b"[" * 100_000 + b"]" * 100_000, "r.json")
    assert str(info.value) == "r.json: nested too deeply to read"
