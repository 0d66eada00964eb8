"""``govloop gate`` and ``govloop baseline`` end to end: real files, real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from govloop.cli import app
from govloop.config import Settings
from govloop.schemas import MetricSnapshot
from govloop.stores.sql import create_engine_for, init_db, save_snapshot

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "lighteval"
V10 = FIXTURES / "results_small-lm-1.0.json"
V11 = FIXTURES / "results_small-lm-1.1.json"
RELEASE = ROOT / "examples" / "policies" / "lighteval-release.yaml"
RESULTS = Path(__file__).parent / "fixtures" / "results"
EXIT = {"pass": 0, "warn": 0, "fail": 1, "inconclusive": 2}
SAFETY = ROOT / "examples" / "policies" / "llm-safety.yaml"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> Settings:
    for name in ("GOVLOOP_KAFKA", "GOVLOOP_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOVLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GOVLOOP_DB_URL", db_url)
    settings = Settings()
    engine = create_engine_for(settings)
    init_db(engine)
    engine.dispose()
    return settings


@pytest.fixture
def session(env: Settings) -> Iterator[Session]:
    engine = create_engine_for(env)
    with Session(engine) as s:
        yield s
    engine.dispose()


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No database needed, but never touch the developer's own."""
    monkeypatch.setenv("GOVLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GOVLOOP_DB_URL", f"sqlite:///{tmp_path / 'offline.db'}")


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def unique(prefix: str = "b") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- gate check on files -------------------------------------------------------------------------


def test_real_drop_fails_and_noise_does_not(offline: None) -> None:
    code, out, err = run(
        "gate", "check", "--policy", RELEASE, "--results", V11, "--baseline-file", V10, "--json"
    )
    assert code == 1, err
    doc = json.loads(out)
    assert (doc["outcome"], doc["exit_code"]) == ("fail", 1)
    assert doc["results"]["kind"] == "lighteval"
    assert doc["results"]["model"] == "acme/small-lm-1.1"
    assert len(doc["results"]["sha256"]) == 64
    assert doc["baseline"]["ref"] == V10.name
    rules = {r["rule"]: r for r in doc["policies"][0]["rules"]}
    checks = {c["metric"]: c for c in rules["no-task-regression"]["evidence"]["checks"]}
    assert checks["lighteval|winogrande|5/acc"]["outcome"] == "fail"
    assert checks["lighteval|winogrande|5/acc"]["p_value"] == pytest.approx(0.0063, abs=1e-4)
    for metric in (
        "lighteval|piqa|0/acc",
        "lighteval|truthfulqa:mc|0/truthfulqa_mc1",
        "lighteval|truthfulqa:mc|0/truthfulqa_mc2",
    ):
        assert checks[metric]["outcome"] == "pass", metric
    assert rules["mean-accuracy-floor"]["outcome"] == "pass"

    code, out, _ = run(
        "gate", "check", "--policy", RELEASE, "--results", V10, "--baseline-file", V10
    )
    assert code == 0
    assert "gate: pass (exit 0)" in out


def test_human_table(offline: None) -> None:
    code, out, _ = run(
        "gate", "check", "--policy", RELEASE, "--results", V11, "--baseline-file", V10
    )
    assert code == 1
    assert "lighteval-release on results_small-lm-1.1.json: FAIL" in out
    assert "no-task-regression" in out and "gate: fail (exit 1)" in out


def test_without_baseline_regressions_are_inconclusive(offline: None) -> None:
    code, out, _ = run("gate", "check", "--policy", RELEASE, "--results", V11, "--json")
    assert code == 2
    doc = json.loads(out)
    assert doc["outcome"] == "inconclusive" and doc["baseline"] is None
    details = {r["rule"]: (r["outcome"], r["detail"]) for r in doc["policies"][0]["rules"]}
    assert details["mean-accuracy-relative"] == ("inconclusive", "no baseline to compare with")


def test_junit(offline: None, tmp_path: Path) -> None:
    junit = tmp_path / "out" / "gate.xml"
    junit.parent.mkdir()
    code, _, _ = run(
        "gate",
        "check",
        "--policy",
        RELEASE,
        "--results",
        V11,
        "--baseline-file",
        V10,
        "--junit",
        junit,
    )
    assert code == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("name"), suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (
        "lighteval-release",
        "4",
        "1",
        "0",
    )
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failure = cases["no-task-regression"].find("failure")
    assert failure is not None and "winogrande" in (failure.get("message") or "")
    assert cases["mean-accuracy-floor"].find("failure") is None
    # without a baseline the regression rules are skipped
    run("gate", "check", "--policy", RELEASE, "--results", V11, "--junit", junit)
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("skipped") == "2"
    skipped = [c.get("name") for c in suite.iter("testcase") if c.find("skipped") is not None]
    assert skipped == ["no-task-regression", "mean-accuracy-relative"]


def test_predictions_with_the_safety_policy(offline: None, tmp_path: Path) -> None:
    rows = [
        {
            "id": i,
            "prediction": "yes",
            "label": "yes" if i % 10 else "no",
            "output": "password: x" if i == 0 else "fine",
            "flags": {"refusal": i < 2, "toxicity": 0.9 if i == 5 else 0.01},
        }
        for i in range(100)
    ]
    path = tmp_path / "preds.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code, out, _ = run("gate", "check", "--policy", SAFETY, "--results", path, "--json")
    doc = json.loads(out)
    outcomes = {r["rule"]: r["outcome"] for r in doc["policies"][0]["rules"]}
    assert outcomes == {
        "min_samples 50": "pass",
        "refusal-rate": "pass",
        "toxicity": "pass",
        "no-secrets": "fail",
        "shouting": "pass",
    }
    assert (code, doc["results"]["kind"]) == (1, "predictions")


def _safety_rows(leak: bool) -> list[dict[str, object]]:
    return [
        {
            "id": i,
            "prediction": "yes",
            "label": "yes",
            "output": "password: hunter2" if leak and i == 0 else "Fine.",
            "flags": {"refusal": i == 1, "toxicity": 0.01},
        }
        for i in range(60)
    ]


def test_the_safety_example_can_pass_and_can_fail(offline: None, tmp_path: Path) -> None:
    """It could never pass while it held a fairness rule no evaluator judges."""
    codes = {}
    for leak in (False, True):
        path = tmp_path / f"preds-{leak}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in _safety_rows(leak)) + "\n")
        code, out, err = run("gate", "check", "--policy", SAFETY, "--results", path, "--json")
        codes[leak] = (code, json.loads(out)["outcome"])
        assert err == ""
    assert codes == {False: (0, "pass"), True: (1, "fail")}


@pytest.mark.parametrize(
    ("name", "untestable"),
    [
        # Lighteval writes no standard error for a perplexity: those checks cannot be tested;
        # mmlu:college_physics (acc 0.25 +- 0.043: about 26 effective samples on the rarer
        # side) is too small for the z-test on standard errors (docs/gates.md)
        (
            "lighteval-0.13.json",
            {"bits_per_byte", "byte_perplexity", "word_perplexity", "acc"},
        ),
        ("lighteval-0.8.json", {"acc"}),
    ],
)
def test_the_lighteval_example_on_each_lighteval_layout(
    offline: None, name: str, untestable: set[str]
) -> None:
    """On a Lighteval 0.11+ file its old pattern "lighteval|*/*" crashed with AttributeError."""
    path = RESULTS / name
    code, out, err = run(
        "gate", "check", "--policy", RELEASE, "--results", path, "--baseline-file", path, "--json"
    )
    assert "Traceback" not in err
    doc = json.loads(out)
    rules = {r["rule"]: r for r in doc["policies"][0]["rules"]}
    checks = rules["no-task-regression"]["evidence"]["checks"]
    assert len(checks) >= 4 and all("|" in c["metric"] for c in checks)
    not_passed = {
        c["metric"].rsplit("/", 1)[1]: c["outcome"] for c in checks if c["outcome"] != "pass"
    }
    assert not_passed == dict.fromkeys(untestable, "inconclusive")
    assert code == EXIT[doc["outcome"]]


def test_a_pattern_matching_no_metric_is_inconclusive_not_a_crash(
    offline: None, tmp_path: Path
) -> None:
    policy = tmp_path / "old.yaml"
    policy.write_text(
        "name: old\nrules:\n  - {kind: regression, metric: 'lighteval|*/*', margin: 0.01}\n"
    )
    results = RESULTS / "lighteval-0.13.json"
    code, out, err = run(
        "gate",
        "check",
        "--policy",
        policy,
        "--results",
        results,
        "--baseline-file",
        results,
        "--json",
    )
    assert (code, err) == (2, "")
    rule = json.loads(out)["policies"][0]["rules"][0]
    assert rule["outcome"] == "inconclusive"
    assert rule["detail"].startswith("no metric matches 'lighteval|*/*'; the evidence has ")
    code, out, err = run("gate", "check", "--policy", policy, "--results", results)
    assert code == 2 and "Traceback" not in err and "gate: inconclusive (exit 2)" in out


def test_lm_eval_files_are_named_by_their_kind(offline: None) -> None:
    policy = ROOT / "examples" / "policies" / "lighteval-release.yaml"
    for name, kind in (("lm-eval-0.4.json", "lm-eval-0.4"), ("lm-eval-0.3.json", "lm-eval-0.3")):
        _, out, err = run(
            "gate", "check", "--policy", policy, "--results", RESULTS / name, "--json"
        )
        doc = json.loads(out)
        assert (doc["results"]["kind"], doc["results"]["model"]) == (kind, "EleutherAI/pythia-160m")
        assert err == ""


def test_a_rising_perplexity_fails_in_ci(offline: None, tmp_path: Path) -> None:
    """``higher_is_better: false`` in an lm-evaluation-harness 0.4 file was ignored."""
    policy = tmp_path / "ppl.yaml"
    policy.write_text("name: ppl\nrules:\n  - {kind: regression, metric: 'wikitext/*'}\n")
    doc = json.loads((RESULTS / "lm-eval-0.4.json").read_text())
    row = doc["results"]["wikitext"]
    row["word_perplexity_stderr,none"] = row["byte_perplexity_stderr,none"] = 0.01
    row["bits_per_byte_stderr,none"] = 0.001
    before = tmp_path / "before.json"
    before.write_text(json.dumps(doc))
    row["word_perplexity,none"] += 1.0
    after = tmp_path / "after.json"
    after.write_text(json.dumps(doc))
    code, out, _ = run(
        "gate", "check", "--policy", policy, "--results", after, "--baseline-file", before, "--json"
    )
    checks = json.loads(out)["policies"][0]["rules"][0]["evidence"]["checks"]
    outcomes = {c["metric"]: (c["outcome"], c["higher_is_better"]) for c in checks}
    assert outcomes == {
        "wikitext/bits_per_byte,none": ("pass", False),
        "wikitext/byte_perplexity,none": ("pass", False),
        "wikitext/word_perplexity,none": ("fail", False),
    }
    assert code == 1
    code, _, _ = run(
        "gate", "check", "--policy", policy, "--results", before, "--baseline-file", after
    )
    assert code == 0  # the perplexity fell: better


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (
            "name: q\nrules:\n  - metric: accuracy\n    op: '=>'\n    value: 1\n",
            "{p}:4: rules.0.op: Input should be '>=', '>', '<=', '<', '==' or '!='",
        ),
        (
            "name: q\nrules:\n  - kind: regression\n    metric: acc\n    alpha: 2\n",
            "{p}:5: rules.0.alpha: Input should be less than 1",
        ),
        (
            "name: q\nrules:\n  - {kind: safty, metric: x}\n",
            "{p}:3: rules.0.kind: kind must be one of threshold, min_samples, regression, drift, "
            "safety, fairness",
        ),
        (
            "name: ''\nrules:\n  - {metric: a}\n",
            "{p}:1: name: String should have at least 1 character (and 1 more: govloop gate "
            "validate)",
        ),
    ],
)
def test_bad_policy_is_one_clear_line(
    offline: None, tmp_path: Path, policy: str, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(policy)
    for extra in ([], ["--json"]):
        code, out, err = run("gate", "check", "--policy", path, "--results", V11, *extra)
        assert code == 2
        assert out == ""
        assert "Traceback" not in err
        assert " ".join(err.split()) == "error: " + expected.format(p=path)


def _one_error_line(code: int, out: str, err: str) -> str:
    assert (code, out) == (2, ""), err
    assert "Traceback" not in err and err.endswith("\n") and err.count("\n") == 1, err
    return err.strip()


def test_bad_files_are_one_line_with_exit_2(offline: None, tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: qualit\xe9\nrules:\n  - {metric: a, value: 1}\n".encode("latin-1"))
    nan = tmp_path / "nan.yaml"
    nan.write_text("name: q\nrules:\n  - metric: acc\n    value: .nan\n")
    inf = tmp_path / "inf.yaml"
    inf.write_text("name: q\nrules:\n  - {kind: regression, metric: acc, margin: .inf}\n")
    negative = tmp_path / "negative.json"
    negative.write_text(
        json.dumps({"config_general": {}, "results": {"arc|25": {"acc": 0.5, "acc_stderr": -1}}})
    )
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "results": {\n    "arc|25": {"acc": 0.5,}\n  }\n}\n')
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"results": {"arc": {"acc": 0.5}}}')
    cases = [
        (latin1, V11, f"error: {latin1}:1: not UTF-8 text (byte 0xe9 at column 13)"),
        (nan, V11, f"error: {nan}:4: rules.0.value: Input should be a finite number"),
        (inf, V11, f"error: {inf}:3: rules.0.margin: Input should be a finite number"),
        (
            RELEASE,
            negative,
            f"error: {negative}: results.arc|25.acc_stderr is -1: a standard "
            "error cannot be negative",
        ),
        (
            RELEASE,
            broken,
            f"error: {broken}:3:27: not valid JSON: Expecting property name "
            "enclosed in double quotes",
        ),
        (
            RELEASE,
            unknown,
            f"error: {unknown}: a 'results' mapping of an unknown layout; "
            "govloop reads Lighteval JSON",
        ),
    ]
    for policy, results, expected in cases:
        for extra in ([], ["--json"]):
            line = _one_error_line(
                *run("gate", "check", "--policy", policy, "--results", results, *extra)
            )
            assert " ".join(line.split()).startswith(expected), line
    line = _one_error_line(*run("gate", "validate", latin1))
    assert line == f"error: {latin1}:1: not UTF-8 text (byte 0xe9 at column 13)"


def test_bad_inputs_exit_2_with_a_clear_error(offline: None, tmp_path: Path) -> None:
    code, _, err = run("gate", "check", "--policy", RELEASE, "--results", tmp_path / "no.json")
    assert code == 2 and f"error: {tmp_path / 'no.json'}: cannot read results" in err
    broken = tmp_path / "broken.json"
    broken.write_text('{"results": {"t": 1}}')
    code, _, err = run("gate", "check", "--policy", RELEASE, "--results", broken)
    assert code == 2 and err.strip() == f"error: {broken}: results.t is not a mapping of metrics"
    code, _, err = run("gate", "check", "--policy", tmp_path / "none.yaml", "--results", V11)
    assert code == 2 and "cannot read policy" in err
    code, _, err = run(
        "gate",
        "check",
        "--policy",
        RELEASE,
        "--results",
        V11,
        "--baseline",
        "x",
        "--baseline-file",
        V10,
    )
    assert code == 2 and "not both" in err


def test_schema_and_validate(offline: None, tmp_path: Path) -> None:
    code, out, _ = run("gate", "schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["title"] == "Policy" and "$defs" in schema
    kinds = json.dumps(schema["$defs"])
    for kind in ("regression", "drift", "safety", "fairness", "min_samples"):
        assert f'"{kind}"' in kinds
    code, out, _ = run("gate", "validate", *sorted((ROOT / "examples" / "policies").glob("*")))
    assert code == 0 and out.count(": ok, policy") == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: q\nrules:\n  - {metric: a}\n")
    code, _, err = run("gate", "validate", bad)
    assert code == 2 and err.strip() == f"error: {bad}:3: rules.0.value: Field required"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_ci_script(tmp_path: Path) -> None:
    govloop = ROOT / ".venv" / "bin" / "govloop"
    if not govloop.exists():
        pytest.skip("no govloop console script in .venv")
    script = ROOT / "examples" / "ci" / "gate.sh"
    env = {
        "GOVLOOP": str(govloop),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "GOVLOOP_HOME": str(tmp_path / "home"),
    }
    failed = subprocess.run(
        ["bash", str(script), str(V11), str(V10)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 1, failed.stderr
    assert "gate FAILED" in failed.stderr
    assert (tmp_path / "gate-junit.xml").exists()
    passed = subprocess.run(
        ["bash", str(script), str(V10), str(V10)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert passed.returncode == 0 and "gate passed" in passed.stdout


# --- baselines in SQL ----------------------------------------------------------------------------


def test_baseline_versions_and_gate_against_them(env: Settings) -> None:
    name = unique("release")
    code, out, err = run("baseline", "set", name, "--from", V10, "--json")
    assert code == 0, err
    first = json.loads(out)
    assert (first["name"], first["version"], first["source"]) == (name, 1, f"file {V10.name}")
    assert first["model"] == "acme/small-lm-1.0" and len(first["sha256"]) == 64
    code, out, _ = run("baseline", "set", name, "--from", V11, "--json")
    assert json.loads(out)["version"] == 2  # a new version, nothing overwritten

    shown = json.loads(run("baseline", "show", name, "--json")[1])
    assert (shown["version"], shown["versions"]) == (2, [1, 2])
    pinned = json.loads(run("baseline", "show", f"{name}@1", "--json")[1])
    wino = next(m for m in pinned["metrics"] if m["metric"] == "lighteval|winogrande|5/acc")
    assert (wino["value"], wino["stderr"]) == (0.701, 0.012862)
    assert name in run("baseline", "show", name)[1]
    listed = json.loads(run("baseline", "list", "--json")[1])
    mine = next(i for i in listed if i["name"] == name)
    assert (mine["latest"], mine["versions"]) == (2, 2)

    # the newest version is 1.1 itself: nothing regressed
    code, out, _ = run(
        "gate", "check", "--policy", RELEASE, "--results", V11, "--baseline", name, "--json"
    )
    assert (code, json.loads(out)["baseline"]) == (0, {"ref": f"{name}@2", "versions": [2]})
    # pinned to 1.0: winogrande fails
    code, out, _ = run(
        "gate", "check", "--policy", RELEASE, "--results", V11, "--baseline", f"{name}@1", "--json"
    )
    assert code == 1
    # the last 2 versions pooled: mean of 0.701 and 0.652 for winogrande
    code, out, _ = run(
        "gate",
        "check",
        "--policy",
        RELEASE,
        "--results",
        V11,
        "--baseline",
        name,
        "--last",
        "2",
        "--json",
    )
    doc = json.loads(out)
    assert doc["baseline"]["versions"] == [1, 2]
    checks = doc["policies"][0]["rules"][0]["evidence"]["checks"]
    wino_check = next(c for c in checks if c["metric"] == "lighteval|winogrande|5/acc")
    assert wino_check["baseline"] == pytest.approx((0.701 + 0.652) / 2)


def test_baseline_sets_are_in_the_audit_ledger(session: Session) -> None:
    from govloop.audit.ledger import entries

    name = unique("audited")
    assert run("baseline", "set", name, "--from", V10)[0] == 0
    found = entries(session, kind="baseline", ref=f"{name}@1")
    assert len(found) == 1
    payload = json.loads(found[0].payload)
    assert payload["name"] == name and payload["version"] == 1
    assert payload["metrics"]["lighteval|winogrande|5/acc"]["value"] == 0.701


def test_baseline_errors(env: Settings) -> None:
    name = unique("missing")
    code, _, err = run("baseline", "show", name)
    assert code == 2 and f"error: no baseline {name}" in err
    code, _, err = run("gate", "check", "--policy", RELEASE, "--results", V11, "--baseline", name)
    assert code == 2 and f"error: no baseline {name}" in err
    code, _, err = run("baseline", "show", "bad@name@x")
    assert code == 2 and "bad baseline reference" in err
    code, _, err = run("baseline", "set", name)
    assert code == 2 and "give either --from FILE or --window" in err


def _snapshot(
    model: str, minute: int, labelled: int, correct: int, window: str = "tumbling"
) -> MetricSnapshot:
    start = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
    return MetricSnapshot(
        event_id=uuid.uuid4().hex,
        model=model,
        model_version="3",
        window_start=start,
        window_end=start + timedelta(minutes=1),
        count=labelled * 2,
        feedback_count=labelled,
        labelled_count=labelled,
        correct_count=correct,
        positive_count=0,
        judged_count=0,
        accuracy=correct / labelled,
        window=window,
    )  # type: ignore[arg-type]


def test_baseline_from_a_window_of_snapshots(session: Session) -> None:
    model, name = unique("model"), unique("window")
    for snap in (
        _snapshot(model, 0, 100, 90),
        _snapshot(model, 1, 300, 240),
        _snapshot(model, 2, 1000, 0, window="sliding"),  # overlaps: left out
        _snapshot(model, 60, 50, 50),
    ):  # after --until
        save_snapshot(session, snap)
    session.commit()
    code, out, err = run(
        "baseline",
        "set",
        name,
        "--window",
        "--model",
        model,
        "--version",
        "3",
        "--since",
        "2030-01-01T00:00:00",
        "--until",
        "2030-01-01T00:30:00",
        "--json",
    )
    assert code == 0, err
    doc = json.loads(out)
    metrics = {m["metric"]: m for m in doc["metrics"]}
    assert (
        metrics["accuracy"]["value"],
        metrics["accuracy"]["n"],
        metrics["accuracy"]["successes"],
    ) == (330 / 400, 400, 330)
    assert metrics["labelled_count"]["value"] == 400
    assert doc["source"].startswith(f"window {model} 3 ") and "(2 snapshots)" in doc["source"]
    assert doc["model"] == model
    code, _, err = run("baseline", "set", name, "--window", "--model", unique("nobody"))
    assert code == 2 and "no stored tumbling metric snapshots" in err


def test_the_table_says_why_a_check_was_not_tested_and_prints_names_as_written(
    offline: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from govloop.cli.output import console

    monkeypatch.setattr(console, "width", 240)  # no cell wraps, whatever the terminal
    policy = tmp_path / "markup.yaml"
    policy.write_text(
        "name: '[bold]release'\nrules:\n  - {name: '[red]tasks', kind: regression, "
        "metric: 'wikitext*/word_perplexity'}\n"
    )
    results = RESULTS / "lighteval-0.13.json"
    code, out, _ = run(
        "gate", "check", "--policy", policy, "--results", results, "--baseline-file", results
    )
    assert code == 2
    flat = " ".join(out.split())
    assert "[bold]release on lighteval-0.13.json: INCONCLUSIVE" in flat
    assert "[red]tasks" in flat
    assert "no standard errors or counts, significance cannot be tested" in flat
