"""Manifests and replay against the real broker, SQLite and PostgreSQL.

An online decision is judged on a snapshot produced to the metrics topic and
replayed by re-reading exactly that record; an offline one is recorded by
``govloop gate check --record`` and replayed by ``govloop repro verify``.  On
PostgreSQL every test gets its own schema (the database is shared).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func
from sqlmodel import Session, select
from typer.testing import CliRunner

from govloop.audit import (
    LedgerEntry,
    build_manifest,
    event_digest,
    file_input,
    kafka_input,
    load_manifest,
    save_gate_result,
    save_manifest,
    save_policy,
    verify,
)
from govloop.cli import app
from govloop.config import Settings
from govloop.errors import RuntimeUnavailable
from govloop.gates import DriftSignal, Policy, judge_snapshot, parse_policy
from govloop.repro import ReplayError, replay
from govloop.schemas import GateResult, MetricSnapshot
from govloop.stores.sql import GateResultRow, ManifestRow, create_engine_for, init_db
from tests.kafka_helpers import produce_located

FIXTURES = Path(__file__).parent / "fixtures" / "lighteval"
V10 = FIXTURES / "results_small-lm-1.0.json"
V11 = FIXTURES / "results_small-lm-1.1.json"
RELEASE = Path(__file__).parent.parent / "examples" / "policies" / "lighteval-release.yaml"
T0 = datetime(2030, 1, 1, tzinfo=UTC)

POLICY = parse_policy("""
name: quality
rules:
  - {kind: min_samples, metric: labelled_count, value: 100}
  - {name: accuracy-floor, metric: accuracy, op: ">=", value: 0.75}
  - {name: no-drift, kind: drift, max_alerts: 0}
""")


@pytest.fixture
def repro_url(own_db_url: str) -> str:
    return own_db_url


@pytest.fixture
def live(settings: Settings, repro_url: str) -> Settings:
    """The test's broker topics, with the database under test."""
    return settings.model_copy(update={"db_url": SecretStr(repro_url)})


@pytest.fixture
def session(live: Settings) -> Iterator[Session]:
    engine = create_engine_for(live)
    init_db(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


def snapshot(accuracy_correct: int = 410, **fields: object) -> MetricSnapshot:
    base: dict[str, object] = dict(
        model="clf",
        model_version="v1",
        ts=T0 + timedelta(seconds=65),
        window_start=T0,
        window_end=T0 + timedelta(seconds=60),
        count=600,
        feedback_count=500,
        labelled_count=500,
        correct_count=accuracy_correct,
        positive_count=0,
        judged_count=0,
        accuracy=accuracy_correct / 500,
        latency_p95_ms=120.0,
    )
    return MetricSnapshot.model_validate(base | fields)


def decide(
    session: Session,
    settings: Settings,
    snap: MetricSnapshot,
    located: tuple[int, int],
    signals: list[DriftSignal],
    policy: Policy = POLICY,
    digest_of: MetricSnapshot | None = None,
) -> GateResult:
    """What the stream worker does per judged snapshot record: judge, manifest, save."""
    partition, offset = located
    result = judge_snapshot(policy, snap, drift_alerts=signals)
    m = build_manifest(
        policy_hash=policy.content_hash,
        inputs=[kafka_input(settings.topic("metrics"), partition, offset, digest_of or snap)],
        evidence={"drift_alerts": [s.model_dump(mode="json") for s in signals]},
        settings=settings,
    )
    result = result.model_copy(update={"manifest_id": m.id})
    save_policy(session, policy.name, policy.content_hash, policy.model_dump(mode="json"), T0)
    save_manifest(session, m)
    save_gate_result(session, result)
    session.commit()
    return result


def test_online_decision_replays_to_an_identical_result(live: Settings, session: Session) -> None:
    snap = snapshot()
    [located] = produce_located(live, "metrics", [snap])
    signals = [DriftSignal(feature="age", test="psi", severity="critical", statistic=0.4)]
    result = decide(session, live, snap, located, signals)
    assert result.outcome == "fail"  # the drift alert fails it; accuracy 0.82 passes

    r = replay(session, result.event_id, live)
    assert r.match, r.differences
    assert r.differences == []
    assert r.recomputed is not None
    assert r.recomputed.outcome == "fail" and r.recomputed.rules == result.rules
    assert f"offset {located[1]}" in r.inputs[0] and "matches the manifest" in r.inputs[0]
    assert r.inputs[1] == "drift alerts: 1 recorded in the manifest"

    # the result, its manifest and the policy are all in the ledger, and it is intact
    kinds = {e.kind for e in session.exec(select(LedgerEntry))}
    assert kinds == {"policy", "manifest", "gate_result"}
    assert verify(session).ok


def test_tampered_result_names_every_difference(live: Settings, session: Session) -> None:
    snap = snapshot()
    [located] = produce_located(live, "metrics", [snap])
    result = decide(session, live, snap, located, [])
    assert result.outcome == "pass"

    row = session.get(GateResultRow, result.event_id)
    assert row is not None
    body = json.loads(row.body)
    floor = next(r for r in body["rules"] if r["rule"] == "accuracy-floor")
    floor["observed"], body["outcome"] = 0.79, "warn"
    row.body = json.dumps(body)
    session.add(row)
    session.commit()

    r = replay(session, result.event_id, live)
    assert not r.match
    assert r.differences == [
        'outcome: "warn" (stored) != "pass" (recomputed)',
        "rule accuracy-floor: observed 0.79 (stored) != 0.82 (recomputed)",
    ]


def test_manifest_digest_that_does_not_match_the_record_is_named(
    live: Settings, session: Session
) -> None:
    snap = snapshot()
    [(partition, offset)] = produce_located(live, "metrics", [snap])
    other = snapshot(accuracy_correct=300)  # the manifest vouches for a different event
    result = decide(session, live, snap, (partition, offset), [], digest_of=other)

    r = replay(session, result.event_id, live)
    assert not r.match
    where = f"{live.topic('metrics')} partition {partition} offset {offset}"
    assert r.differences == [
        f"input {where}: sha256 {event_digest(other)} (manifest) != {event_digest(snap)} (re-read)"
    ]
    assert "DIFFERS" in r.inputs[0]


def test_unreplayable_decisions_are_clear_errors(live: Settings, session: Session) -> None:
    snap = snapshot()
    [(partition, offset)] = produce_located(live, "metrics", [snap])
    gone = decide(session, live, snap, (partition, offset + 5), [])
    with pytest.raises(
        ReplayError,
        match=rf"partition {partition} offset {offset + 5}: "
        r"the record is gone",
    ):
        replay(session, gone.event_id, live)

    with pytest.raises(ReplayError, match="no gate result 'nope'"):
        replay(session, "nope", live)

    bare = judge_snapshot(POLICY, snapshot(event_id="bare"), drift_alerts=[])
    save_gate_result(session, bare)
    session.commit()
    with pytest.raises(ReplayError, match="has no manifest"):
        replay(session, bare.event_id, live)

    nowhere = live.model_copy(update={"kafka": "127.0.0.1:9"})
    with pytest.raises(
        RuntimeUnavailable,
        match=rf"127.0.0.1:9 does not answer, cannot re-read "
        rf".*partition {partition} offset {offset + 5}",
    ):
        replay(session, gone.event_id, nowhere)


def test_manifest_id_is_stable_and_saved_once(live: Settings, session: Session) -> None:
    snap = snapshot()
    inputs = [kafka_input("t.metrics", 1, 42, snap)]
    a = build_manifest(
        policy_hash=POLICY.content_hash, inputs=inputs, settings=live, seeds={"sampler": 7}
    )
    b = build_manifest(
        policy_hash=POLICY.content_hash, inputs=inputs, settings=live, seeds={"sampler": 7}
    )
    assert a.id == b.id == a.content_id and len(a.id) == 64
    # any input, seed or policy changes the id
    assert (
        build_manifest(
            policy_hash=POLICY.content_hash,
            settings=live,
            seeds={"sampler": 7},
            inputs=[kafka_input("t.metrics", 1, 43, snap)],
        ).id
        != a.id
    )
    assert (
        build_manifest(
            policy_hash=POLICY.content_hash, inputs=inputs, settings=live, seeds={"sampler": 8}
        ).id
        != a.id
    )
    assert (
        build_manifest(policy_hash="0" * 64, inputs=inputs, settings=live, seeds={"sampler": 7}).id
        != a.id
    )
    # the digest does not depend on where the event was read from
    assert inputs[0]["sha256"] == event_digest(MetricSnapshot.model_validate_json(snap.to_json()))
    # secrets are redacted, versions recorded
    assert a.config["kafka"] == live.kafka and a.config["topic_prefix"] == live.topic_prefix
    assert a.packages["pydantic"] and a.python

    assert save_manifest(session, a) == a.id
    assert save_manifest(session, b) == a.id
    session.commit()
    assert session.exec(select(func.count()).select_from(ManifestRow)).one() == 1
    entries = list(session.exec(select(LedgerEntry).where(LedgerEntry.kind == "manifest")))
    assert [e.ref for e in entries] == [a.id]
    assert load_manifest(session, a.id) == a
    assert load_manifest(session, "missing") is None


def test_config_redacts_passwords(live: Settings) -> None:
    secret = live.model_copy(
        update={
            "db_url": SecretStr("postgresql://gov:hunter2@db/x"),
            "redis_url": SecretStr("redis://:hunter2@r:6379/0"),
        }
    )
    m = build_manifest(policy_hash="p" * 64, inputs=[], settings=secret)
    text = json.dumps(m.config)
    assert "hunter2" not in text
    assert m.config["db_url"] == "postgresql://gov:***@db/x"
    assert m.config["redis_url"] == "redis://:***@r:6379/0"


def test_git_commit_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # read at the edge, into Settings; the manifest takes it from there
    monkeypatch.setenv("GOVLOOP_GIT_COMMIT", "abc123")
    m = build_manifest(policy_hash="p" * 64, inputs=[], settings=Settings())
    assert m.git_commit == "abc123"
    assert "git_commit" not in m.config  # recorded once, as the manifest's own field


# --- offline: govloop gate check --record, govloop repro verify ----------------------------------


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repro_url: str) -> None:
    for name in ("GOVLOOP_KAFKA", "GOVLOOP_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOVLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GOVLOOP_DB_URL", repro_url)


def test_offline_gate_check_record_then_verify(cli_env: None, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    shutil.copy(V11, results)
    code, out, err = run(
        "gate",
        "check",
        "--policy",
        RELEASE,
        "--results",
        results,
        "--baseline-file",
        V10,
        "--record",
        "--json",
    )
    assert code == 1, err  # winogrande regressed: the failing gate
    doc = json.loads(out)
    assert doc["recorded"] is True
    [entry] = doc["policies"]
    gate_id, manifest = entry["gate_result_id"], entry["manifest"]
    assert manifest["inputs"] == [file_input(results.resolve(), doc["results"]["sha256"])]
    assert manifest["evidence"]["baseline"]["ref"] == {
        "ref": V10.name,
        "sha256": doc["baseline"]["sha256"],
    }

    code, out, err = run("repro", "verify", gate_id)
    assert code == 0, out + err
    assert "match" in out and "matches the manifest" in out
    code, out, _ = run("repro", "verify", gate_id, "--json")
    verdict = json.loads(out)
    assert (code, verdict["match"], verdict["differences"]) == (0, True, [])
    assert verdict["stored"]["outcome"] == verdict["recomputed"]["outcome"] == "fail"
    code, out, _ = run("repro", "show", gate_id, "--json")
    assert code == 0 and json.loads(out)["id"] == manifest["id"]

    # without --record the same decision has the same id and manifest id
    code, out, _ = run(
        "gate", "check", "--policy", RELEASE, "--results", results, "--baseline-file", V10, "--json"
    )
    again = json.loads(out)["policies"][0]
    assert (again["gate_result_id"], again["manifest"]["id"]) == (gate_id, manifest["id"])

    # the file changes: named, exit 1
    data = json.loads(results.read_text())
    data["results"]["lighteval|winogrande|5"]["acc"] = 0.70
    results.write_text(json.dumps(data))
    code, out, err = run("repro", "verify", gate_id)
    assert code == 1, out + err
    assert (
        f"input file {results.resolve()}: sha256 {manifest['inputs'][0]['sha256']} "
        "(manifest) !=" in out
    )
    assert 'outcome: "fail" (stored) != "pass" (recomputed)' in out
    # pointed at an unchanged copy, it matches again
    assert run("repro", "verify", gate_id, "--file", V11)[0] == 0


def test_repro_errors_exit_2(cli_env: None) -> None:
    code, _, err = run("repro", "verify", "no-such-id")
    assert code == 2
    assert "error: no gate result 'no-such-id'" in err
    code, _, err = run("repro", "show", "no-such-id")
    assert code == 2 and "no gate result" in err


def test_a_broker_that_lost_the_record_falls_back_to_the_stored_copy(
    live: Settings, session: Session
) -> None:
    from govloop.stores.sql import MetricSnapshotRow, save_snapshot

    snap = snapshot(accuracy_correct=300)
    [located] = produce_located(live, "metrics", [snap])
    result = decide(session, live, snap, located, [])
    save_snapshot(session, snap)  # the worker stores every snapshot it publishes
    session.commit()
    nowhere = live.model_copy(update={"kafka": "127.0.0.1:9"})

    r = replay(session, result.event_id, nowhere)
    assert r.match, r.differences
    assert "copy in the SQL store" in r.inputs[0] and "matches the manifest" in r.inputs[0]
    with pytest.raises(RuntimeUnavailable, match="does not answer"):
        replay(session, result.event_id, nowhere, strict=True)

    # the copy is held to the manifest's digest like the record would be
    row = session.get(MetricSnapshotRow, snap.event_id)
    assert row is not None
    row.body = row.body.replace('"correct_count":300', '"correct_count":450')
    session.add(row)
    session.commit()
    r = replay(session, result.event_id, nowhere)
    assert not r.match and any("sha256" in d for d in r.differences), r.differences
