"""The audit ledger against real SQLite and PostgreSQL: chain, tampering, concurrency, CLI.

On PostgreSQL every test gets its own schema (the ``test`` database is shared by
every test and by earlier runs), so each test sees one fresh chain.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, func, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from typer.testing import CliRunner

from govloop.audit import (
    GENESIS_HASH,
    Anchor,
    LedgerEntry,
    append,
    entries,
    entry_hash,
    read_head,
    verify,
)
from govloop.audit.records import save_gate_result, save_policy
from govloop.cli import app
from govloop.config import Settings
from govloop.schemas import GateResult, RuleResult
from govloop.stores.sql import (
    GatePolicyRow,
    GateResultRow,
    create_engine_for,
    init_db,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def ledger_url(own_db_url: str) -> str:
    return own_db_url


def engine_for(url: str, tmp_path: Path) -> Engine:
    engine = create_engine_for(Settings(home=tmp_path, db_url=SecretStr(url)))
    init_db(engine)
    return engine


@pytest.fixture
def engine(ledger_url: str, tmp_path: Path) -> Iterator[Engine]:
    e = engine_for(ledger_url, tmp_path)
    yield e
    e.dispose()


def fill(
    engine: Engine, n: int = 5, kinds: tuple[str, str] = ("policy", "gate_result")
) -> list[str]:
    """Append ``n`` entries of ``kinds`` in turn, one transaction each; their hashes in seq order.

    They have no rows: kinds with tables of their own make ``audit verify``'s
    cross-check report those rows removed (tests/test_audit_crosscheck.py).
    """
    hashes = []
    for i in range(1, n + 1):
        with Session(engine) as session:
            e = append(
                session,
                kinds[0] if i % 2 else kinds[1],
                f"ref-{i}",
                {"i": i, "note": "ünïcode", "score": i / 3},
                model="churn" if i < 4 else "ranker",
                ts=T0 + timedelta(minutes=i),
            )
            hashes.append(e.entry_hash)
            session.commit()
    return hashes


def check(engine: Engine, anchor: Anchor | None = None) -> Any:
    with Session(engine) as session:
        return verify(session, anchor)


LEDGER = LedgerEntry.__table__  # type: ignore[attr-defined]


def sql(engine: Engine, statement: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


def row(engine: Engine, seq: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(LEDGER.select().where(LEDGER.c.seq == seq)).mappings().one())


def put(engine: Engine, seq: int, values: dict[str, Any]) -> None:
    """Overwrite the columns given (every one but seq) of row ``seq``."""
    with engine.begin() as conn:
        conn.execute(
            LEDGER.update()
            .where(LEDGER.c.seq == seq)
            .values({k: v for k, v in values.items() if k != "seq"})
        )


# -- round trip ---------------------------------------------------------------------------


def test_append_and_verify_round_trip(engine: Engine) -> None:
    with Session(engine) as session:
        empty = verify(session)
    assert (empty.ok, empty.entries, empty.head_seq, empty.head_hash) == (True, 0, 0, GENESIS_HASH)
    hashes = fill(engine)
    result = check(engine)
    assert result.ok and result.problem is None
    assert (result.entries, result.head_seq, result.head_hash) == (5, 5, hashes[-1])
    with Session(engine) as session:
        rows = sorted(entries(session, limit=10), key=lambda e: e.seq)
        assert [e.seq for e in rows] == [1, 2, 3, 4, 5]
        assert rows[0].prev_hash == GENESIS_HASH
        assert all(b.prev_hash == a.entry_hash for a, b in pairwise(rows))
        for e in rows:  # the documented hash, recomputed from the stored columns
            assert (
                entry_hash(e.seq, e.ts, e.kind, e.ref, e.model, e.payload, e.prev_hash)
                == e.entry_hash
            )
        assert json.loads(rows[0].payload) == {"i": 1, "note": "ünïcode", "score": 1 / 3}
        head = read_head(session)
        assert head is not None and (head.seq, head.entry_hash) == (5, hashes[-1])


def test_entries_filters(engine: Engine) -> None:
    fill(engine)
    with Session(engine) as session:

        def seqs(**kw: Any) -> list[int]:
            return [e.seq for e in entries(session, **kw)]

        assert seqs() == [5, 4, 3, 2, 1]
        assert seqs(kind="policy") == [5, 3, 1]
        assert seqs(model="churn") == [3, 2, 1]
        assert seqs(ref="ref-4") == [4]
        assert seqs(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4)) == [3, 2]
        naive = (T0 + timedelta(minutes=4)).replace(tzinfo=None)  # naive is UTC
        assert seqs(since=naive) == [5, 4]
        assert seqs(limit=2) == [5, 4]


def test_append_is_idempotent_per_kind_and_ref(engine: Engine) -> None:
    with Session(engine) as session:
        first = append(session, "gate_result", "evt-1", {"outcome": "fail"})
        again = append(session, "gate_result", "evt-1", {"outcome": "fail"})
        assert again is first
        session.commit()
    with Session(engine) as session:  # redelivered after a restart
        again = append(session, "gate_result", "evt-1", {"outcome": "fail"})
        assert again.seq == 1
        other = append(session, "policy", "evt-1", {"name": "same ref, other kind"})
        assert other.seq == 2
        session.commit()
    assert check(engine).entries == 2


def test_append_rolls_back_with_the_callers_transaction(engine: Engine) -> None:
    fill(engine, 2)
    with Session(engine) as session:
        append(session, "baseline", "b-1", {"accuracy": 0.9})
        session.rollback()
    result = check(engine)
    assert result.ok and result.entries == 2
    with Session(engine) as session:
        assert append(session, "baseline", "b-1", {"accuracy": 0.9}).seq == 3
        session.commit()


def test_append_rejects_what_cannot_be_hashed(engine: Engine) -> None:
    with Session(engine) as session:
        with pytest.raises(ValueError, match="not JSON compliant"):
            append(session, "dataset", "d-1", {"x": float("nan")})
        with pytest.raises(ValueError, match="kind"):
            append(session, "Bad Kind", "d-1", {})
        with pytest.raises(ValueError, match="ref"):
            append(session, "dataset", "", {})


# -- tampering ----------------------------------------------------------------------------


def _swap(engine: Engine, a: int, b: int) -> None:
    """Swap every column but seq of two rows (as ``UPDATE ... SET seq = CASE ...`` would)."""
    ra, rb = row(engine, a), row(engine, b)
    put(engine, a, {"ref": "swapping"})  # (kind, ref) is unique
    put(engine, b, ra)
    put(engine, a, rb)


def _rewrite_with_recomputed_hash(engine: Engine, seq: int) -> None:
    r = row(engine, seq)
    payload = json.dumps(
        json.loads(r["payload"]) | {"score": -1.0},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    new = entry_hash(seq, r["ts"], r["kind"], r["ref"], r["model"], payload, r["prev_hash"])
    put(engine, seq, r | {"payload": payload, "entry_hash": new})


def _renumber_after_deleting(engine: Engine, seq: int) -> None:
    sql(engine, "DELETE FROM audit_ledger WHERE seq = :s", s=seq)
    sql(engine, "UPDATE audit_ledger SET seq = -seq WHERE seq > :s", s=seq)
    sql(engine, "UPDATE audit_ledger SET seq = -seq - 1 WHERE seq < 0")
    sql(engine, "UPDATE audit_head SET seq = seq - 1")


def _forge_next(engine: Engine, hashes: list[str]) -> None:
    ts = T0 + timedelta(hours=1)
    seq, prev, payload = len(hashes) + 1, hashes[-1], '{"forged":true}'
    with engine.begin() as conn:
        conn.execute(
            LEDGER.insert().values(
                seq=seq,
                ts=ts,
                kind="policy",
                ref="forged",
                model=None,
                payload=payload,
                prev_hash=prev,
                entry_hash=entry_hash(seq, ts, "policy", "forged", None, payload, prev),
            )
        )


Tamper = Callable[[Engine, list[str]], None]

TAMPERING: dict[str, tuple[Tamper, int, str]] = {
    "payload value": (
        lambda e, h: sql(
            e,
            "UPDATE audit_ledger SET payload = :p WHERE seq = 3",
            p='{"i":3,"note":"ünïcode","score":0.99}',
        ),
        3,
        "altered",
    ),
    "payload reformatted": (
        lambda e, h: sql(
            e,
            "UPDATE audit_ledger SET payload = :p WHERE seq = 3",
            p=json.dumps(json.loads(row(e, 3)["payload"])),
        ),
        3,
        "altered",
    ),
    "model column": (
        lambda e, h: sql(e, "UPDATE audit_ledger SET model = 'other' WHERE seq = 2"),
        2,
        "altered",
    ),
    "timestamp": (lambda e, h: put(e, 4, {"ts": T0}), 4, "altered"),
    "entry hash": (
        lambda e, h: sql(e, "UPDATE audit_ledger SET entry_hash = :x WHERE seq = 3", x="f" * 64),
        3,
        "altered",
    ),
    "prev hash": (
        lambda e, h: sql(e, "UPDATE audit_ledger SET prev_hash = :x WHERE seq = 4", x=h[0]),
        4,
        "altered",
    ),
    "middle row deleted": (
        lambda e, h: sql(e, "DELETE FROM audit_ledger WHERE seq = 3"),
        3,
        "removed",
    ),
    "first row deleted": (
        lambda e, h: sql(e, "DELETE FROM audit_ledger WHERE seq = 1"),
        1,
        "removed",
    ),
    "last row deleted": (
        lambda e, h: sql(e, "DELETE FROM audit_ledger WHERE seq = 5"),
        5,
        "removed",
    ),
    "two last rows deleted": (
        lambda e, h: sql(e, "DELETE FROM audit_ledger WHERE seq >= 4"),
        4,
        "removed",
    ),
    "head record deleted": (lambda e, h: sql(e, "DELETE FROM audit_head"), 6, "removed"),
    "row deleted, rest renumbered": (lambda e, h: _renumber_after_deleting(e, 2), 2, "removed"),
    "rows swapped": (lambda e, h: _swap(e, 2, 4), 2, "reordered"),
    "neighbours swapped": (lambda e, h: _swap(e, 3, 4), 3, "reordered"),
    "first and last swapped": (lambda e, h: _swap(e, 1, 5), 1, "reordered"),
    "middle row rewritten, hash recomputed": (
        lambda e, h: _rewrite_with_recomputed_hash(e, 3),
        3,
        "replaced",
    ),
    "last row rewritten, hash recomputed": (
        lambda e, h: _rewrite_with_recomputed_hash(e, 5),
        5,
        "replaced",
    ),
    "row forged beyond the head": (_forge_next, 6, "inserted"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_is_detected_and_named(engine: Engine, case: str) -> None:
    tamper, seq, reason = TAMPERING[case]
    hashes = fill(engine)
    tamper(engine, hashes)
    result = check(engine)
    assert not result.ok
    assert result.problem is not None
    assert (result.problem.seq, result.problem.reason) == (seq, reason), result.problem
    # what verify reports as intact is the prefix before the problem
    assert (result.entries, result.head_seq) == (seq - 1, seq - 1)
    assert result.head_hash == ([GENESIS_HASH, *hashes])[seq - 1]
    if reason in ("altered", "reordered", "replaced", "inserted"):
        assert result.problem.kind is not None and result.problem.ref is not None


def test_problem_wording_names_entries(engine: Engine) -> None:
    hashes = fill(engine)
    _swap(engine, 2, 4)
    problem = check(engine).problem
    assert str(problem) == (
        "entry 2 (gate_result ref-4) reordered: the row at seq 2 is "
        "entry 4, hashes intact: rows were swapped or moved"
    )
    _swap(engine, 2, 4)
    assert check(engine).ok
    sql(engine, "DELETE FROM audit_ledger WHERE seq IN (2, 3)")
    problem = check(engine).problem
    assert problem is not None
    assert problem.detail == "entries 2 to 3 are missing: entry 4 follows entry 1"
    assert hashes


def test_removing_the_tail_and_rewinding_the_head_needs_an_anchor(engine: Engine) -> None:
    hashes = fill(engine)
    saved = Anchor(5, hashes[4])
    assert check(engine, saved).ok
    assert check(engine, Anchor(3, hashes[2][:12])).ok
    sql(engine, "DELETE FROM audit_ledger WHERE seq = 5")
    sql(engine, "UPDATE audit_head SET seq = 4, entry_hash = :h", h=hashes[3])
    assert check(engine).ok  # consistent again: only an anchor kept elsewhere tells
    result = check(engine, saved)
    assert result.problem is not None
    assert (result.problem.seq, result.problem.reason) == (5, "removed")


def test_an_anchor_catches_a_chain_rewritten_with_recomputed_hashes(engine: Engine) -> None:
    hashes = fill(engine)
    # rewrite entry 4 and re-chain entry 5 and the head: consistent, but not what was anchored
    _rewrite_with_recomputed_hash(engine, 4)
    r4, r5 = row(engine, 4), row(engine, 5)
    h5 = entry_hash(
        5, r5["ts"], r5["kind"], r5["ref"], r5["model"], r5["payload"], r4["entry_hash"]
    )
    put(engine, 5, r5 | {"prev_hash": r4["entry_hash"], "entry_hash": h5})
    sql(engine, "UPDATE audit_head SET entry_hash = :h", h=h5)
    assert check(engine).ok
    result = check(engine, Anchor(5, hashes[4]))
    assert result.problem is not None
    assert (result.problem.seq, result.problem.reason) == (5, "replaced")
    assert check(engine, Anchor(3, hashes[2])).ok  # the part before is intact


def test_anchor_parsing() -> None:
    assert Anchor.parse(" 7:" + "AB" * 32) == Anchor(7, "ab" * 32)
    for bad in ("7", "7:abc", "0:" + "a" * 12, "x:" + "a" * 12, "7:" + "g" * 12):
        with pytest.raises(ValueError, match="SEQ:HASH"):
            Anchor.parse(bad)


# -- concurrency --------------------------------------------------------------------------


def test_concurrent_appenders_keep_one_chain(ledger_url: str, tmp_path: Path) -> None:
    """Two engines (two workers' connection pools) appending at once: no fork, no gap."""
    engines = [engine_for(ledger_url, tmp_path) for _ in range(2)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(i: int) -> None:
        try:
            start.wait()
            for k in range(25):
                with Session(engines[i]) as session:
                    append(session, "experiment", f"w{i}-{k}", {"worker": i, "k": k})
                    if k % 5 == 0:  # and an idempotent re-append of the other's entry
                        append(session, "experiment", f"w{1 - i}-{k}", {"worker": 1 - i, "k": k})
                    session.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    during = []
    while any(t.is_alive() for t in threads):  # verifying while they append: never a false alarm
        during.append(check(engines[0]))
    for t in threads:
        t.join(120)
    try:
        assert not errors, errors
        assert all(r.ok for r in during), [r.problem for r in during if not r.ok]
        result = check(engines[0])
        assert result.ok, result.problem
        assert result.entries == 50
        with Session(engines[0]) as session:
            refs = {e.ref for e in entries(session, limit=100)}
        assert refs == {f"w{i}-{k}" for i in range(2) for k in range(25)}
    finally:
        for e in engines:
            e.dispose()


APPENDER = """
import sys
from pydantic import SecretStr
from sqlmodel import Session
from govloop.audit import append
from govloop.config import Settings
from govloop.stores.sql import create_engine_for
engine = create_engine_for(Settings(db_url=SecretStr(sys.argv[1])))
for k in range(20):
    with Session(engine) as session:
        append(session, "dataset", f"{sys.argv[2]}-{k}", {"k": k})
        session.commit()
engine.dispose()
"""


def test_two_processes_append_to_one_chain(engine: Engine, ledger_url: str) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, ledger_url, f"p{i}"]) for i in range(2)
    ]
    assert [p.wait(120) for p in procs] == [0, 0]
    result = check(engine)
    assert result.ok, result.problem
    assert result.entries == 40


# -- recording from the stores --------------------------------------------------------------


def gate_result(event_id: str) -> GateResult:
    return GateResult(
        event_id=event_id,
        ts=T0,
        policy="quality",
        policy_hash="h" * 64,
        model="clf",
        model_version="7",
        outcome="fail",
        trigger_event_id="snap-1",
        rules=[
            RuleResult(
                rule="accuracy >= 0.9",
                metric="accuracy",
                op=">=",
                threshold=0.9,
                observed=0.75,
                outcome="fail",
            )
        ],
        window_start=T0,
        window_end=T0 + timedelta(minutes=1),
    )


def counts(engine: Engine) -> tuple[int, int, int]:
    with Session(engine) as session:
        return (
            session.exec(select(func.count()).select_from(GateResultRow)).one(),
            session.exec(select(func.count()).select_from(GatePolicyRow)).one(),
            session.exec(select(func.count()).select_from(LedgerEntry)).one(),
        )


def test_save_gate_result_and_policy_enter_the_ledger(engine: Engine) -> None:
    result = gate_result("evt-1")
    with Session(engine) as session:
        assert save_policy(session, "quality", "h" * 64, {"name": "quality", "rules": []}, T0)
        assert save_gate_result(session, result) is True
        assert save_gate_result(session, result) is False  # redelivered: no second entry
        session.commit()
    with Session(engine) as session:
        assert save_gate_result(session, result) is False
        assert not save_policy(session, "quality", "h" * 64, {"name": "quality"}, T0)
        policy, gate = sorted(entries(session), key=lambda e: e.seq)
    assert (policy.kind, policy.ref, policy.model) == ("policy", "h" * 64, None)
    assert json.loads(policy.payload) == {
        "name": "quality",
        "hash": "h" * 64,
        "body": {"name": "quality", "rules": []},
    }
    assert (gate.kind, gate.ref, gate.model) == ("gate_result", "evt-1", "clf")
    assert GateResult.model_validate_json(gate.payload) == result
    assert counts(engine) == (1, 1, 2)
    assert check(engine).ok


def test_gate_result_and_its_entry_commit_or_roll_back_together(
    engine: Engine, ledger_url: str
) -> None:
    with Session(engine) as session:
        session.add(GatePolicyRow(policy_hash="x", name="x", created_at=T0, body="{}"))
        session.flush()  # the transaction is open: what follows is part of it
        assert save_gate_result(session, gate_result("evt-rolled-back")) is True
        session.rollback()
    assert counts(engine) == (0, 0, 0)
    if ledger_url.startswith("postgresql"):
        # on SQLite a savepoint that opens the transaction commits when released (pysqlite),
        # so this half holds on PostgreSQL only; the pair still goes together on both
        with Session(engine) as session:
            assert save_gate_result(session, gate_result("evt-alone")) is True
            session.rollback()
        assert counts(engine) == (0, 0, 0)


def test_a_gate_result_is_not_saved_when_its_entry_cannot_be(engine: Engine) -> None:
    fill(engine, 2)
    sql(engine, "UPDATE audit_head SET seq = 0")  # the next seq (1) is taken: the append fails
    with Session(engine) as session, pytest.raises(IntegrityError):
        save_gate_result(session, gate_result("evt-2"))
    assert counts(engine) == (0, 0, 2)


# -- CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli_engine(
    ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engine]:
    for name in ("GOVLOOP_KAFKA", "GOVLOOP_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOVLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GOVLOOP_DB_URL", ledger_url)
    e = engine_for(ledger_url, tmp_path)
    yield e
    e.dispose()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split()), result.stdout


def test_cli_verify_exit_codes(cli_engine: Engine) -> None:
    code, out, _ = run("audit", "verify")
    assert code == 0 and "ledger intact: 0 entries" in out
    hashes = fill(cli_engine, 3, kinds=("experiment", "dataset"))  # kinds without a table
    code, out, _ = run("audit", "verify")
    assert code == 0, out
    assert f"ledger intact: 3 entries, head {hashes[-1][:12]}" in out
    assert f"3:{hashes[-1]}" in out
    code, out, _ = run("audit", "verify", "--anchor", f"2:{hashes[1][:16]}")
    assert code == 0, out
    code, out, _ = run("audit", "verify", "--anchor", "2:xyz")
    assert code == 2 and "SEQ:HASH" in out

    sql(cli_engine, "UPDATE audit_ledger SET payload = :p WHERE seq = 2", p='{"i":20}')
    code, out, _ = run("audit", "verify")
    assert code == 1
    assert "ledger broken at entry 2: altered" in out
    assert "kind dataset, ref ref-2" in out
    code, _, stdout = run("audit", "verify", "--json")
    report = json.loads(stdout)
    assert code == 1 and report["ok"] is False and report["ledger_ok"] is False
    assert report["entries"] == 1
    assert {k: report["problem"][k] for k in ("seq", "reason", "kind", "ref")} == {
        "seq": 2,
        "reason": "altered",
        "kind": "dataset",
        "ref": "ref-2",
    }


def test_cli_log(cli_engine: Engine) -> None:
    code, out, _ = run("audit", "log")
    assert code == 0 and "no ledger entries match" in out
    hashes = fill(cli_engine)
    code, out, _ = run("audit", "log")
    assert code == 0 and "ref-5" in out and hashes[4][:12] in out
    code, _, stdout = run("audit", "log", "--json", "--kind", "policy", "--model", "churn")
    items = json.loads(stdout)
    assert [(i["seq"], i["kind"], i["ref"]) for i in items] == [
        (3, "policy", "ref-3"),
        (1, "policy", "ref-1"),
    ]
    assert items[0]["payload"] == {"i": 3, "note": "ünïcode", "score": 1.0}
    assert items[0]["entry_hash"] == hashes[2] and items[0]["prev_hash"] == hashes[1]
    assert items[0]["ts"] == "2030-01-01T00:03:00+00:00"
    code, _, stdout = run(
        "audit", "log", "--json", "--since", "2030-01-01T00:04:00", "--limit", "1"
    )
    assert [i["seq"] for i in json.loads(stdout)] == [5]
