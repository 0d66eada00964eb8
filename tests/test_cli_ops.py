"""The operator commands against the real broker, Redis and SQL.

``status``, ``models``, ``gate log``, ``deadletter tail`` and ``state reset``
read what the tests put in the real services; ``--follow`` runs as a real
process that is interrupted with SIGINT, as a user's Ctrl-C would.  A model
name full of rich markup, an ANSI escape and a newline goes through every
command and must come out literally.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from kafka import KafkaConsumer, KafkaProducer
from rich.console import Console
from sqlmodel import Session
from typer.testing import CliRunner

from govloop.cli import app
from govloop.cli.output import shown
from govloop.config import Settings
from govloop.schemas import DeadLetter, GateResult, MetricSnapshot, Prediction, RuleResult
from govloop.stores.redis import keys
from govloop.stores.redis.records import record_of
from govloop.stores.redis.windows import WindowStore, clear_state
from govloop.stores.sql import (
    create_engine_for,
    gate_result_row,
    init_db,
    save_reference,
    save_snapshot,
)

pytestmark = pytest.mark.integration

EVIL = "[bold]evil[/]\x1b[31m\nnext"
#: How EVIL must appear on a terminal: markup as text, the escape and newline as escapes.
EVIL_SHOWN = "[bold]evil[/]\\x1b[31m\\nnext"
T0 = datetime(2030, 1, 1, tzinfo=UTC)
POLICY = Path(__file__).parent.parent / "examples" / "policies" / "quality.yaml"


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The GOVLOOP_* variables of the test's own deployment, set for in-process runs."""
    for name in list(os.environ):
        if name.startswith("GOVLOOP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "200")
    variables = settings.as_env()
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    init_db(create_engine_for(settings))
    yield variables
    assert settings.redis_url is not None
    clear_state(settings.redis_url.get_secret_value(), settings.redis_prefix)


def run(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def snapshot(model: str, version: str, minute: int, count: int) -> MetricSnapshot:
    start = T0 + timedelta(minutes=minute)
    return MetricSnapshot(
        model=model,
        model_version=version,
        window_start=start,
        window_end=start + timedelta(minutes=1),
        count=count,
        feedback_count=0,
        labelled_count=0,
        correct_count=0,
        positive_count=0,
        judged_count=0,
    )


def gate_result(model: str, policy: str, minute: int, outcome: str, online: bool = True) -> Any:
    start = T0 + timedelta(minutes=minute)
    return GateResult(
        policy=policy,
        policy_hash="h" * 64,
        model=model,
        model_version="1",
        outcome=outcome,  # type: ignore[arg-type]
        rules=[
            RuleResult(rule="acc-floor", metric="accuracy", op=">=", threshold=0.8, outcome=outcome)  # type: ignore[arg-type]
        ],
        trigger_event_id=f"snap-{minute}" if online else None,
        window_start=start if online else None,
        window_end=start + timedelta(minutes=1) if online else None,
        ts=start + timedelta(minutes=1),
    )


def store(settings: Settings, *rows: Any) -> None:
    with Session(create_engine_for(settings)) as session:
        for r in rows:
            if isinstance(r, MetricSnapshot):
                save_snapshot(session, r)
            else:
                session.add(gate_result_row(r))
        session.commit()


def open_window(settings: Settings, model: str, version: str, n: int) -> None:
    """``n`` predictions of ``model`` counted in an open window of the real window store."""

    async def main() -> None:
        assert settings.redis_url is not None
        client = aioredis.Redis.from_url(settings.redis_url.get_secret_value())
        try:
            windows = WindowStore(client, settings.redis_prefix, 60.0, 0.0, 3600.0, 3600.0)
            records = [
                record_of(
                    Prediction(
                        model=model,
                        model_version=version,
                        request_id=f"{model}-{version}-{i}",
                        prediction="yes",
                        ts=T0 + timedelta(minutes=30),
                    ),
                    f"{model}-in",
                    0,
                    i,
                )
                for i in range(n)
            ]
            await windows.apply(records)
        finally:
            await client.aclose()

    asyncio.run(main())


class Follower:
    """``python -m govloop ...`` whose stdout lines are read as they come."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "govloop", *args],
            env={k: v for k, v in os.environ.items() if not k.startswith("GOVLOOP_")} | env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def next_json(self) -> dict[str, Any]:
        """The next line, as JSON (a generous wait: this is liveness, not speed)."""
        return json.loads(self.lines.get(timeout=90))  # type: ignore[no-any-return]

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C; the exit code and stderr."""
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err


# --- escaping -------------------------------------------------------------------------------


def test_shown_prints_user_strings_literally() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200)
    console.print(f"model {shown(EVIL)} [bold]ok[/]", soft_wrap=True)
    text = out.getvalue()
    assert "\x1b[31m" not in text  # the user's red is not sent to the terminal...
    plain = re.sub("\x1b\\[[0-9;]*m", "", text)  # ...only rich's own styling is
    assert plain == f"model {EVIL_SHOWN} ok\n"  # one line, markup and escapes as text
    assert shown("plain name 1.0") == "plain name 1.0"
    assert shown("tab\there\x7f") == "tab\\there\\x7f"


# --- models ---------------------------------------------------------------------------------


def test_models_lists_versions_with_stored_and_open_windows(
    settings: Settings, env: dict[str, str]
) -> None:
    store(
        settings,
        snapshot("churn", "1", 0, 10),
        snapshot("churn", "1", 1, 15),
        snapshot("churn", "2", 1, 7),
        snapshot(EVIL, "1", 2, 3),
    )
    open_window(settings, "churn", "2", 4)
    open_window(settings, "fresh", "0.1", 2)  # no window closed yet: Redis alone knows it

    items = json.loads(run("models", "--json").stdout)

    by_key = {(i["model"], i["model_version"]): i for i in items}
    assert set(by_key) == {("churn", "1"), ("churn", "2"), (EVIL, "1"), ("fresh", "0.1")}
    assert by_key[("churn", "1")] == {
        "model": "churn",
        "model_version": "1",
        "windows": 2,
        "predictions": 25,
        "open_predictions": 0,
        "last_window_end": (T0 + timedelta(minutes=2)).isoformat(),
    }
    assert (by_key[("churn", "2")]["predictions"], by_key[("churn", "2")]["open_predictions"]) == (
        7,
        4,
    )
    assert by_key[("fresh", "0.1")]["windows"] == 0
    assert by_key[("fresh", "0.1")]["open_predictions"] == 2
    table = run("models").stdout
    assert EVIL_SHOWN in table and "\x1b[31m" not in table


# --- gate log -------------------------------------------------------------------------------


def test_gate_log_newest_last_with_filters(settings: Settings, env: dict[str, str]) -> None:
    results = [
        gate_result("churn", "quality", 0, "pass"),
        gate_result("churn", "quality", 1, "fail"),
        gate_result("churn", "safety", 2, "warn"),
        gate_result(EVIL, "quality", 3, "pass"),
        gate_result("churn", "quality", 4, "pass", online=False),
    ]
    store(settings, *results)

    def ids(*args: str) -> list[str]:
        out = run("gate", "log", "--json", *args).stdout.splitlines()
        return [json.loads(line)["event_id"] for line in out]

    online = [r.event_id for r in results[:4]]
    assert ids() == online  # newest last, the offline result left out
    assert ids("--all") == [*online, results[4].event_id]
    assert ids("--model", "churn") == online[:3]
    assert ids("--policy", "quality") == [online[0], online[1], online[3]]
    assert ids("--limit", "2") == online[2:]
    text = run("gate", "log").stdout
    lines = text.splitlines()
    assert len(lines) == 4
    assert "fail" in lines[1] and "acc-floor" in lines[1]
    assert EVIL_SHOWN in lines[3] and "\x1b[31m" not in text


def test_gate_log_follow_prints_new_results_until_ctrl_c(
    settings: Settings, env: dict[str, str]
) -> None:
    first = gate_result("churn", "quality", 0, "pass")
    store(settings, first)
    follower = Follower(env, "gate", "log", "--follow", "--json", "--interval", "0.2")
    try:
        assert follower.next_json()["event_id"] == first.event_id
        later = gate_result("churn", "quality", 1, "fail")
        store(settings, later)
        got = follower.next_json()
        assert (got["event_id"], got["outcome"]) == (later.event_id, "fail")
    finally:
        code, err = follower.interrupt()
    assert code == 0, err
    assert "Traceback" not in err
    assert follower.lines.empty()  # each result once


# --- deadletter tail ------------------------------------------------------------------------


def dead_letters(settings: Settings, letters: list[DeadLetter | bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka, acks="all")
    base = int(datetime.now(UTC).timestamp() * 1000)
    for i, letter in enumerate(letters):
        value = letter if isinstance(letter, bytes) else letter.to_json()
        # over two partitions, each a millisecond after the last: the tail's order is known
        producer.send(
            settings.topic("deadletter"), value=value, partition=i % 2, timestamp_ms=base + i
        )
    producer.flush()
    producer.close()


def letter(i: int, reason: str = "not JSON", payload: str = "{oops") -> DeadLetter:
    return DeadLetter(
        source_topic="x.predictions", partition=i % 2, offset=i, reason=reason, payload=payload
    )


def test_deadletter_tail_shows_the_last_n_escaped_and_truncated(
    settings: Settings, env: dict[str, str]
) -> None:
    letters: list[DeadLetter | bytes] = [letter(i) for i in range(5)]
    letters.append(letter(5, reason=f"bad model {EVIL}", payload="p" * 500))
    letters.append(b"\xff not a dead letter")
    dead_letters(settings, letters)

    lines = run("deadletter", "tail", "-n", "3", "--json", "--width", "40").stdout.splitlines()
    items = [json.loads(line) for line in lines]

    assert [i["source_offset"] for i in items] == [4, 5, None]
    assert items[0]["source_topic"] == "x.predictions" and items[0]["reason"] == "not JSON"
    assert items[1]["payload"] == "p" * 40 and items[1]["truncated"] is True
    assert items[2]["reason"].startswith("not a dead letter")
    text = run("deadletter", "tail", "-n", "2", "--width", "40").stdout
    assert len(text.splitlines()) == 2
    assert f"bad model {EVIL_SHOWN}" in text and "\x1b[31m" not in text
    assert "p" * 40 + "..." in text and "p" * 41 not in text
    assert run("deadletter", "tail", "-n", "0").stdout == ""


def test_deadletter_tail_follow(settings: Settings, env: dict[str, str]) -> None:
    dead_letters(settings, [letter(0)])
    follower = Follower(env, "deadletter", "tail", "-n", "1", "--follow", "--json")
    try:
        assert follower.next_json()["source_offset"] == 0
        dead_letters(settings, [letter(7, reason="schema")])
        got = follower.next_json()
        assert (got["source_offset"], got["reason"]) == (7, "schema")
    finally:
        code, err = follower.interrupt()
    assert code == 0, err


# --- status and state reset -----------------------------------------------------------------


@pytest.fixture
def worker_member(settings: Settings) -> Iterator[KafkaConsumer]:
    """A consumer in the worker group on the predictions topic, as a running worker is."""
    consumer = KafkaConsumer(
        settings.topic("predictions"),
        bootstrap_servers=settings.kafka,
        group_id=settings.worker_group,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    for _ in range(120):  # the group's first join takes about half the session timeout
        consumer.poll(timeout_ms=500)
        if consumer.assignment():
            break
    assert consumer.assignment()
    yield consumer
    consumer.close()


def test_status_reports_services_workers_lag_policies_references_and_windows(
    settings: Settings, env: dict[str, str], worker_member: KafkaConsumer, monkeypatch: Any
) -> None:
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    monkeypatch.setenv("GOVLOOP_POLICIES", str(POLICY))
    producer = KafkaProducer(bootstrap_servers=settings.kafka, acks="all")
    for _ in range(5):
        producer.send(settings.topic("predictions"), value=b"{}", partition=0)
    producer.send(settings.topic("predictions"), value=b"{}", partition=1)
    producer.flush()
    producer.close()
    tp0 = TopicPartition(settings.topic("predictions"), 0)
    worker_member.commit({tp0: OffsetAndMetadata(2, None, -1)})
    with Session(create_engine_for(settings)) as session:
        save_reference(session, "churn", "1", "file ref.jsonl", 300, {"n": 300}, T0)
        session.commit()
    assert settings.redis_url is not None
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    client.set(keys.autoref(settings.redis_prefix, "churn\x1f2"), json.dumps({"n": 40}))
    client.close()
    open_window(settings, "churn", "2", 3)
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    late = keys.late(settings.redis_prefix)  # a field per window, as apply.lua counts them
    client.hset(late, mapping={"churn\x1f1\x1f60.000": 4, "churn\x1f1\x1f120.000": 2})
    client.close()

    report = json.loads(run("status", "--json").stdout)

    assert {name: s["up"] for name, s in report["services"].items()} == {
        "kafka": True,
        "redis": True,
        "sql": True,
    }
    assert len(report["workers"]) == 1
    lag = {(r["topic"].rsplit(".", 1)[-1], r["partition"]): r for r in report["lag"]}
    assert (lag[("predictions", 0)]["committed"], lag[("predictions", 0)]["lag"]) == (2, 3)
    assert (lag[("predictions", 1)]["committed"], lag[("predictions", 1)]["lag"]) == (None, 1)
    assert lag[("feedback", 0)]["lag"] == 0
    assert [p["name"] for p in report["policies"]["loaded"]] == ["quality"]
    refs = {(r["model"], r["model_version"]): r for r in report["references"]}
    assert refs[("churn", "1")]["reference"] == "v1 (file ref.jsonl)"
    assert refs[("churn", "2")]["reference"] is None and refs[("churn", "2")]["collected"] == 40
    [window] = report["open_windows"]
    assert (window["model"], window["model_version"], window["predictions"]) == ("churn", "2", 3)
    assert report["late"] == [{"model": "churn", "model_version": "1", "late": 6}]
    text = run("status").stdout
    assert "quality" in text and "40 of 1000" in text
    assert "late: 6 events of churn 1" in text and report["workers"][0] in text


def test_state_reset_refuses_while_a_worker_consumes(
    settings: Settings, env: dict[str, str], worker_member: KafkaConsumer
) -> None:
    open_window(settings, "churn", "1", 3)
    refused = run("state", "reset", "--model", "churn", "--yes")
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: 1 worker(s) consuming")
    assert len(refused.stderr.splitlines()) == 1
    assert json.loads(run("models", "--json").stdout)[0]["open_predictions"] == 3
    forced = run("state", "reset", "--model", "churn", "--yes", "--force", "--json")
    assert forced.exit_code == 0, forced.stderr
    assert json.loads(forced.stdout)["removed"]["win:"] == 1


def test_state_reset_clears_one_model_only(settings: Settings, env: dict[str, str]) -> None:
    open_window(settings, "churn", "1", 3)
    open_window(settings, EVIL, "1", 2)
    not_asked = run("state", "reset", "--model", "churn")  # no terminal, no --yes
    assert not_asked.exit_code == 2 and "--yes" in not_asked.stderr

    done = run("state", "reset", "--model", "churn", "--version", "1", "--yes")

    assert done.exit_code == 0, done.stderr
    assert "cleared the window state of churn 1" in done.stdout
    left = json.loads(run("models", "--json").stdout)
    assert [(m["model"], m["open_predictions"]) for m in left] == [(EVIL, 2)]
    again = run("state", "reset", "--model", "churn", "--yes")
    assert "no window state of churn" in again.stdout
    evil = run("state", "reset", "--model", EVIL, "--yes")
    assert EVIL_SHOWN in evil.stdout and "\x1b[31m" not in evil.stdout


def test_status_does_not_create_a_missing_sqlite_database(
    settings: Settings, env: dict[str, str], tmp_path: Path, monkeypatch: Any
) -> None:
    typo = tmp_path / "elsewhere" / "typo.db"
    monkeypatch.setenv("GOVLOOP_DB_URL", f"sqlite:///{typo}")
    report = json.loads(run("status", "--json").stdout)
    assert report["services"]["sql"] == {
        "up": False,
        "where": f"sqlite:///{typo}",
        "detail": "no database file yet",
    }
    assert not typo.exists()
