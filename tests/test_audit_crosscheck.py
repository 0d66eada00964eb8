"""``audit verify`` holds the recorded tables to the ledger, against real SQLite and PostgreSQL.

A real ledger is written the way the worker writes it: snapshots and a drift
alert are produced to the test's topics on the real broker, stored as the
closing step stores them, and judged by the worker's judging step
(:func:`govloop.streams.judge.judge_events`), which records policies,
manifests and gate results with their ledger entries; a baseline is saved
with :func:`govloop.audit.records.save_baseline`.  Then rows are changed with
plain SQL, as someone with database access would, and each change must be
named.  On PostgreSQL every test gets its own schema (``own_db_url``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session
from typer.testing import CliRunner

from govloop.audit import (
    CrossCheck,
    crosscheck,
    save_baseline,
    save_gate_result,
    save_policy,
    verify,
)
from govloop.cli import app
from govloop.config import Settings
from govloop.errors import ConfigError, RuntimeUnavailable
from govloop.gates import MetricValue, parse_policy
from govloop.runtime import answers
from govloop.schemas import DriftAlert, GateResult, MetricSnapshot, decode
from govloop.stores.sql import (
    create_engine_for,
    gate_result_row,
    init_db,
    save_drift_alert,
    save_snapshot,
)
from govloop.stores.sql.engine import open_existing
from govloop.streams.judge import judge_events
from tests.kafka_helpers import produce_located

pytestmark = pytest.mark.integration

T0 = datetime(2030, 1, 1, tzinfo=UTC)

QUALITY = parse_policy("""
name: quality
rules:
  - {kind: min_samples, metric: labelled_count, value: 100}
  - {name: accuracy-floor, metric: accuracy, op: ">=", value: 0.75}
  - {name: no-drift, kind: drift, max_alerts: 0}
""")
LATENCY = parse_policy("""
name: latency
rules:
  - {metric: latency_p95_ms, op: "<=", value: 200}
""")


def snapshot(minute: int, correct: int, **fields: Any) -> MetricSnapshot:
    start = T0 + timedelta(minutes=minute)
    base: dict[str, Any] = dict(
        model="clf",
        model_version="v1",
        ts=start + timedelta(seconds=65),
        window_start=start,
        window_end=start + timedelta(seconds=60),
        count=600,
        feedback_count=500,
        labelled_count=500,
        correct_count=correct,
        positive_count=0,
        judged_count=0,
        accuracy=correct / 500,
        latency_p95_ms=120.0,
    )
    return MetricSnapshot.model_validate(base | fields)


@dataclass
class Recorded:
    """A database holding a real ledger, and the ids of what it records."""

    engine: Engine
    url: str
    snapshots: list[MetricSnapshot]
    sliced: MetricSnapshot
    alert: DriftAlert
    results: list[GateResult]

    def check(self) -> CrossCheck:
        with Session(self.engine) as session:
            return crosscheck(session)

    def chain_ok(self) -> bool:
        with Session(self.engine) as session:
            return verify(session).ok

    def sql(self, statement: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(statement), params)

    def one(self, statement: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(statement), params).one()


def located(settings: Settings, topic: str, events: list[Any]) -> list[Any]:
    """Produce ``events`` to the test's ``topic``; each decoded from the bytes sent, with its
    record's real coordinates (what the worker's judging step has of a consumed record)."""
    places = produce_located(settings, topic, events)
    name = settings.topic(topic)
    return [
        (decode(topic, event.to_json()), SimpleNamespace(topic=name, partition=p, offset=o))
        for event, (p, o) in zip(events, places, strict=True)
    ]


@pytest.fixture
def recorded(settings: Settings, own_db_url: str) -> Iterator[Recorded]:
    live = settings.model_copy(update={"db_url": SecretStr(own_db_url)})
    engine = create_engine_for(live)
    init_db(engine)
    snaps = [snapshot(0, 410), snapshot(1, 300), snapshot(2, 420)]
    sliced = snapshot(2, 420, variant="b", experiment="exp-1")  # stored, never judged
    alert = DriftAlert(
        model="clf",
        model_version="v1",
        feature="error_rate",
        test="adwin",
        statistic=0.3,
        threshold=0.1,
        ts=T0 + timedelta(minutes=3),
    )
    with Session(engine) as session:
        for policy in (QUALITY, LATENCY):  # as the worker does when it starts
            save_policy(
                session, policy.name, policy.content_hash, policy.model_dump(mode="json"), T0
            )
        for snap in [*snaps, sliced]:
            save_snapshot(session, snap)
        save_drift_alert(session, alert)
        session.commit()
        judge_events(session, live, [QUALITY, LATENCY], located(live, "metrics", snaps))
        judge_events(session, live, [QUALITY, LATENCY], located(live, "drift", [alert]))
        save_baseline(
            session,
            "clf-release",
            {"accuracy": MetricValue(value=0.82, n=500, successes=410)},
            source="results.json",
            sha256="f" * 64,
            model="clf",
            created_at=T0,
        )
        session.commit()
        rows = session.connection().execute(text("SELECT body FROM gate_results"))
        results = sorted(
            (GateResult.model_validate_json(body) for (body,) in rows),
            key=lambda g: (g.window_start, g.trigger_event_id is not None, g.policy),
        )
    try:
        yield Recorded(engine, own_db_url, snaps, sliced, alert, results)
    finally:
        engine.dispose()


def named(check: CrossCheck) -> list[tuple[str, str, str]]:
    return [(p.table, p.key, p.reason) for p in check.problems]


# -- an untampered database ---------------------------------------------------------------------


def test_an_untampered_database_passes_with_a_summary_per_table(recorded: Recorded) -> None:
    assert len(recorded.results) == 7  # 3 windows x 2 policies, and the drift alert's look again
    assert recorded.chain_ok()
    check = recorded.check()
    assert check.ok and check.problems == [], [str(p) for p in check.problems]
    tables = {t.table: t for t in check.tables}
    assert {name: t.checked for name, t in tables.items()} == {
        "gate_results": 7,
        "gate_policies": 2,
        "manifests": 7,
        "baselines": 1,
        "metric_snapshots": 3,  # the judged ones; the alert's look again read the third
        "drift_alerts": 1,
    }
    assert tables["metric_snapshots"].uncovered == 1  # the variant slice nobody judged
    assert tables["drift_alerts"].uncovered == 0
    assert all(t.ok for t in tables.values())


# -- each kind of tampering, named --------------------------------------------------------------


def _edit_body(recorded: Recorded, table: str, key: str, value: str, change: Callable) -> None:
    """Rewrite a JSON body with ``change`` (a function of the parsed body), as a user might."""
    (body,) = recorded.one(f"SELECT body FROM {table} WHERE {key} = :v", v=value)
    doc = json.loads(body)
    change(doc)
    recorded.sql(f"UPDATE {table} SET body = :b WHERE {key} = :v", b=json.dumps(doc), v=value)


def _set(doc: dict[str, Any], **values: Any) -> None:
    doc.update(values)


Tamper = Callable[[Recorded], tuple[str, str, str, str]]


def _result_outcome(r: Recorded) -> tuple[str, str, str, str]:
    failing = next(g for g in r.results if g.outcome == "fail")
    r.sql("UPDATE gate_results SET outcome = 'pass' WHERE event_id = :e", e=failing.event_id)
    return (
        "gate_results",
        failing.event_id,
        "altered",
        'outcome is "pass" where the ledger has "fail"',
    )


def _result_body(r: Recorded) -> tuple[str, str, str, str]:
    g = r.results[1]
    observed = g.rules[1].observed

    def change(doc: dict[str, Any]) -> None:
        doc["rules"][1]["observed"] = 0.99

    _edit_body(r, "gate_results", "event_id", g.event_id, change)
    return (
        "gate_results",
        g.event_id,
        "altered",
        f"body: rules[1].observed is 0.99 where the ledger has {observed}",
    )


def _result_deleted(r: Recorded) -> tuple[str, str, str, str]:
    g = r.results[2]
    r.sql("DELETE FROM gate_results WHERE event_id = :e", e=g.event_id)
    return "gate_results", g.event_id, "removed", "the table has no such row"


def _result_inserted(r: Recorded) -> tuple[str, str, str, str]:
    forged = r.results[0].model_copy(update={"event_id": "forged-1", "outcome": "pass"})
    r.sql(
        "INSERT INTO gate_results (event_id, policy, policy_hash, model, model_version, "
        "outcome, ts, trigger_event_id, body) VALUES ('forged-1', :p, :h, 'clf', 'v1', "
        "'pass', :ts, NULL, :b)",
        p=forged.policy,
        h=forged.policy_hash,
        ts=T0,
        b=forged.model_dump_json(by_alias=True),
    )
    return "gate_results", "forged-1", "not in the ledger", "no gate_result entry records it"


def _snapshot_column(r: Recorded) -> tuple[str, str, str, str]:
    snap = r.snapshots[1]
    r.sql("UPDATE metric_snapshots SET accuracy = 0.95 WHERE event_id = :e", e=snap.event_id)
    return (
        "metric_snapshots",
        snap.event_id,
        "altered",
        f"column accuracy is 0.95 where its body says {snap.accuracy}",
    )


def _snapshot_body(r: Recorded) -> tuple[str, str, str, str]:
    snap = r.snapshots[0]
    _edit_body(r, "metric_snapshots", "event_id", snap.event_id, lambda d: _set(d, count=6000))
    return "metric_snapshots", snap.event_id, "altered", "its body is not the event manifest"


def _snapshot_deleted(r: Recorded) -> tuple[str, str, str, str]:
    snap = r.snapshots[2]
    r.sql("DELETE FROM metric_snapshots WHERE event_id = :e", e=snap.event_id)
    return "metric_snapshots", snap.event_id, "removed", "read it as an input"


def _manifest_body(r: Recorded) -> tuple[str, str, str, str]:
    mid = r.results[3].manifest_id
    assert mid is not None
    _edit_body(r, "manifests", "id", mid, lambda d: _set(d, git_commit="0" * 40))
    return "manifests", mid, "altered", "body: git_commit is"


def _manifest_deleted(r: Recorded) -> tuple[str, str, str, str]:
    mid = r.results[4].manifest_id
    assert mid is not None
    r.sql("DELETE FROM manifests WHERE id = :m", m=mid)
    return "manifests", mid, "removed", "the table has no such row"


def _policy_body(r: Recorded) -> tuple[str, str, str, str]:
    h = LATENCY.content_hash

    def change(doc: dict[str, Any]) -> None:
        doc["rules"][0]["value"] = 900.0

    _edit_body(r, "gate_policies", "policy_hash", h, change)
    return "gate_policies", h, "altered", "body: rules[0].value is 900.0 where the ledger has 200"


def _baseline_value(r: Recorded) -> tuple[str, str, str, str]:
    _edit_body(r, "baselines", "name", "clf-release", lambda d: d["accuracy"].update(value=0.99))
    return (
        "baselines",
        "clf-release@1",
        "altered",
        "body: accuracy.value is 0.99 where the ledger has 0.82",
    )


def _alert_state(r: Recorded) -> tuple[str, str, str, str]:
    r.sql("UPDATE drift_alerts SET state = 'recovered' WHERE event_id = :e", e=r.alert.event_id)
    return (
        "drift_alerts",
        r.alert.event_id,
        "altered",
        'column state is "recovered" where its body says "drift"',
    )


TAMPERING: dict[str, Tamper] = {
    "gate result outcome updated": _result_outcome,
    "gate result body updated": _result_body,
    "gate result deleted": _result_deleted,
    "gate result inserted": _result_inserted,
    "snapshot column updated": _snapshot_column,
    "snapshot body updated": _snapshot_body,
    "snapshot deleted": _snapshot_deleted,
    "manifest body updated": _manifest_body,
    "manifest deleted": _manifest_deleted,
    "policy body updated": _policy_body,
    "baseline value updated": _baseline_value,
    "drift alert column updated": _alert_state,
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_each_change_outside_the_ledger_is_named(recorded: Recorded, case: str) -> None:
    table, key, reason, wording = TAMPERING[case](recorded)
    assert recorded.chain_ok()  # the ledger itself is untouched: only the cross-check sees it
    check = recorded.check()
    assert not check.ok
    assert named(check) == [(table, key, reason)], [str(p) for p in check.problems]
    [problem] = check.problems
    assert str(problem).startswith(f"{table} id={key} {reason}: ")
    assert wording in problem.detail, problem.detail
    if reason == "altered":
        assert problem.ledger_hash and problem.row_hash
        assert problem.ledger_hash != problem.row_hash
        assert f"the ledger's hash of it is {problem.ledger_hash[:12]}, " in problem.detail
        assert f"the row hashes to {problem.row_hash[:12]}" in problem.detail
    summary = {t.table: t for t in check.tables}[table]
    counted = {"altered": summary.altered, "removed": summary.removed}
    assert counted.get(reason, summary.unledgered) == 1
    assert [t.table for t in check.tables if not t.ok] == [table]


def test_a_gate_result_put_back_as_it_was_passes_again(recorded: Recorded) -> None:
    failing = next(g for g in recorded.results if g.outcome == "fail")
    recorded.sql("UPDATE gate_results SET outcome = 'pass' WHERE event_id = :e", e=failing.event_id)
    altered = recorded.check().problems[0]
    recorded.sql("UPDATE gate_results SET outcome = 'fail' WHERE event_id = :e", e=failing.event_id)
    assert recorded.check().ok
    # the hash the ledger vouches for is the untampered row's: the same change gives the same one
    recorded.sql("UPDATE gate_results SET outcome = 'pass' WHERE event_id = :e", e=failing.event_id)
    assert recorded.check().problems[0] == altered


# -- the command --------------------------------------------------------------------------------


@pytest.fixture
def cli_env(recorded: Recorded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recorded:
    for name in ("GOVLOOP_KAFKA", "GOVLOOP_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOVLOOP_HOME", str(tmp_path / "cli-home"))
    monkeypatch.setenv("GOVLOOP_DB_URL", recorded.url)
    return recorded


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_verify_names_every_row_and_sums_up_each_table(cli_env: Recorded) -> None:
    r = cli_env
    code, out, err = run("audit", "verify")
    assert (code, err) == (0, ""), out + err
    assert "ledger intact:" in out
    assert "gate_results: 7 checked, 0 altered, 0 removed, 0 not in the ledger" in out
    assert (
        "metric_snapshots: 3 checked, 0 altered, 0 removed, 0 not in the ledger; "
        "1 not read by any gate decision, not covered" in out
    )

    changes = [_result_outcome(r), _result_deleted(r), _result_inserted(r)]
    changes += [_snapshot_column(r), _manifest_body(r)]
    code, out, err = run("audit", "verify")
    assert code == 1, out + err
    assert "ledger intact:" in out  # the chain is fine; the tables are not
    assert "gate_results: 7 checked, 1 altered, 1 removed, 1 not in the ledger" in out
    assert "metric_snapshots: 3 checked, 1 altered, 0 removed" in out
    assert "manifests: 7 checked, 1 altered, 0 removed" in out
    assert "baselines: 1 checked, 0 altered, 0 removed, 0 not in the ledger" in out
    lines = err.splitlines()
    assert len(lines) == len(changes), err
    for table, key, reason, wording in changes:
        [line] = [x for x in lines if x.startswith(f"{table} id={key} {reason}: ")]
        assert wording in line

    code, out, _ = run("audit", "verify", "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["ledger_ok"] is True
    assert report["tables"]["gate_results"] == {
        "table": "gate_results",
        "checked": 7,
        "altered": 1,
        "removed": 1,
        "unledgered": 1,
        "uncovered": 0,
        "ok": False,
    }
    assert report["tables"]["baselines"]["ok"] is True
    assert sorted((p["table"], p["key"], p["reason"]) for p in report["rows"]) == sorted(
        c[:3] for c in changes
    )
    altered = next(p for p in report["rows"] if p["reason"] == "altered")
    assert len(altered["ledger_hash"]) == len(altered["row_hash"]) == 64


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("command", [("audit", "verify"), ("audit", "log")])
def test_a_missing_sqlite_path_is_an_error_and_nothing_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, str]
) -> None:
    for name in ("GOVLOOP_KAFKA", "GOVLOOP_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("GOVLOOP_HOME", str(home))
    typo = tmp_path / "missing" / "govlop.db"
    monkeypatch.setenv("GOVLOOP_DB_URL", f"sqlite:///{typo}")
    code, out, err = run(*command)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: no database at {typo} (no such file): check GOVLOOP_DB_URL or GOVLOOP_HOME"
    ]
    assert not typo.parent.exists()
    monkeypatch.delenv("GOVLOOP_DB_URL")  # the default: GOVLOOP_HOME/govloop.db, not there
    code, _, err = run(*command)
    assert code == 2 and err.startswith(f"error: no database at {home / 'govloop.db'}")
    assert len(err.splitlines()) == 1
    assert not (home / "govloop.db").exists()


def test_a_file_that_is_no_govloop_database_is_an_error_and_left_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOVLOOP_HOME", str(tmp_path / "home"))
    for content in (b"", b"not a database at all, but long enough to be read as one" * 20):
        other = tmp_path / "other.db"
        other.write_bytes(content)
        monkeypatch.setenv("GOVLOOP_DB_URL", f"sqlite:///{other}")
        code, _, err = run("audit", "verify")
        assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
        assert "not a govloop database" in err or "file is not a database" in err
        assert other.read_bytes() == content
        assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_a_database_that_does_not_answer_is_a_one_line_error_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOVLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GOVLOOP_DB_URL", "postgresql://gov:s3cret@127.0.0.1:9/govloop")
    code, _, err = run("audit", "verify")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: cannot open the database postgresql://gov:***@127.0.0.1:9/")
    assert "s3cret" not in err
    monkeypatch.setenv("GOVLOOP_DB_URL", "no url at all")
    code, _, err = run("audit", "verify")
    assert code == 2 and err.startswith("error: the database URL is not one"), err
    if answers("127.0.0.1", 5432):  # a server that answers, without that database
        monkeypatch.setenv("GOVLOOP_DB_URL", "postgresql://postgres@127.0.0.1:5432/no_such_db")
        code, _, err = run("audit", "verify")
        assert code == 2 and len(err.splitlines()) == 1, err
        assert 'database "no_such_db" does not exist' in err


def test_open_existing_reads_and_never_writes(recorded: Recorded, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "h", db_url=SecretStr(recorded.url))
    recorded.engine.dispose()
    sqlite_file = Path(recorded.url.removeprefix("sqlite:///"))
    before = _file_digest(sqlite_file) if recorded.url.startswith("sqlite") else None
    engine = open_existing(settings)
    try:
        with Session(engine) as session:
            assert verify(session).ok and crosscheck(session).ok
            with pytest.raises(DBAPIError, match=r"read-?only"):
                session.connection().execute(text("DELETE FROM gate_results"))
    finally:
        engine.dispose()
    if before is not None:
        assert _file_digest(sqlite_file) == before
    assert recorded.check().ok


def test_open_existing_refuses_what_is_not_there(tmp_path: Path) -> None:
    missing = Settings(home=tmp_path, db_url=SecretStr(f"sqlite:///{tmp_path / 'no.db'}"))
    with pytest.raises(ConfigError, match="no database at"):
        open_existing(missing)
    assert list(tmp_path.iterdir()) == []
    memory = Settings(home=tmp_path, db_url=SecretStr("sqlite://"))
    with pytest.raises(ConfigError, match="existing SQLite file"):
        open_existing(memory)
    refused = Settings(home=tmp_path, db_url=SecretStr("postgresql://u:pw@127.0.0.1:9/x"))
    with pytest.raises(RuntimeUnavailable, match=r"u:\*\*\*@127\.0\.0\.1:9"):
        open_existing(refused)


# -- comparisons ---------------------------------------------------------------------------------


@pytest.fixture
def bare(own_db_url: str, tmp_path: Path) -> Iterator[Engine]:
    """A database of ``own_db_url`` with no broker behind it, for rows recorded directly."""
    engine = create_engine_for(Settings(home=tmp_path, db_url=SecretStr(own_db_url)))
    init_db(engine)
    yield engine
    engine.dispose()


def _gate_result(event_id: str, model_version: str) -> GateResult:
    return GateResult(
        event_id=event_id,
        ts=T0,
        policy="2030-01-01",
        policy_hash="h" * 64,
        model="clf",
        model_version=model_version,
        outcome="pass",
        rules=[],
        window_start=T0,
        window_end=T0 + timedelta(minutes=1),
    )


def test_text_that_reads_as_a_date_is_compared_as_text(bare: Engine) -> None:
    with Session(bare) as session:
        save_gate_result(session, _gate_result("g-1", "2030-01-01"))
        session.commit()
        assert crosscheck(session).ok, [str(p) for p in crosscheck(session).problems]
    with bare.begin() as conn:
        conn.execute(text("UPDATE gate_results SET model_version = '2030-01-01T00:00:00Z'"))
    with Session(bare) as session:
        check = crosscheck(session)
    assert named(check) == [("gate_results", "g-1", "altered")]
    assert 'model_version is "2030-01-01T00:00:00Z" where the ledger has "2030-01-01"' in (
        check.problems[0].detail
    )


def test_counts_stay_exact_beyond_the_rows_listed(bare: Engine) -> None:
    with Session(bare) as session:
        for i in range(3):
            session.add(gate_result_row(_gate_result(f"forged-{i}", "v1")))  # no entry
        session.commit()
        check = crosscheck(session, max_problems=2)
    assert len(check.problems) == 2
    summary = {t.table: t for t in check.tables}["gate_results"]
    assert (summary.checked, summary.unledgered, summary.ok) == (0, 3, False)
