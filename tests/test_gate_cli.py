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
    assert checks["lighteval|winogrande|5/acc"]["p_value"] == pytest.approx(0.0041, abs=1e-4)
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
        "demographic-parity": "inconclusive",
    }
    assert (code, doc["results"]["kind"]) == (1, "predictions")


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
