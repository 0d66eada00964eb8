"""The zero-setup runtime against real processes: Tansu, LocalStack, runtime.json, SQL."""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from pydantic import SecretStr
from sqlmodel import Session, func, select

from govloop.audit.records import save_gate_result, save_policy
from govloop.cli.services import prepare_stores
from govloop.config import Settings
from govloop.errors import RuntimeUnavailable
from govloop.runtime import (
    AlreadyRunning,
    EmbeddedBroker,
    LocalRedis,
    LocalStack,
    answers,
    discover,
    ensure_topics,
    free_port,
)
from govloop.runtime.stack import write_private_json
from govloop.schemas import TOPICS, GateResult, MetricSnapshot, RuleResult
from govloop.stores.sql import (
    GatePolicyRow,
    GateResultRow,
    MetricSnapshotRow,
    create_engine_for,
    init_db,
    save_snapshot,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GOVLOOP_* variable of the surrounding shell leaks into Settings()."""
    for name in list(os.environ):
        if name.startswith("GOVLOOP_"):
            monkeypatch.delenv(name)


def port_is_free(host: str, port: int) -> bool:
    """Nothing answers on ``host:port`` and a new server could listen there."""
    if answers(host, port):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen()
        except OSError:
            return False
    return True


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# --- the embedded broker -----------------------------------------------------------------------


def test_embedded_broker_lifecycle(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_file=tmp_path / "broker.log")
    host, port = broker.host, broker.port
    assert broker.bootstrap == f"127.0.0.1:{port}"
    assert not broker.running()
    try:
        broker.start()
        assert broker.running()
        assert broker._process is not None
        pid = broker._process.pid
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000)
        try:
            cluster = admin.describe_cluster()
            assert [(b["host"], b["port"]) for b in cluster["brokers"]] == [(host, port)]
            assert admin.list_topics() == []
        finally:
            admin.close()
    finally:
        broker.stop()
    assert not broker.running()
    assert process_gone(pid)
    assert port_is_free(host, port)
    broker.stop()  # stopping twice is harmless


def test_embedded_broker_on_a_chosen_port() -> None:
    port = free_port()
    with EmbeddedBroker(port=port) as broker:
        assert broker.bootstrap == f"127.0.0.1:{port}"
        assert answers("127.0.0.1", port)
    assert port_is_free("127.0.0.1", port)


# --- LocalStack and discover -------------------------------------------------------------------


def topic_partitions(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        described = admin.describe_topics(topics)
    finally:
        admin.close()
    assert all(t["error_code"] == 0 for t in described), described
    return {t["name"]: len(t["partitions"]) for t in described}


@pytest.mark.usefixtures("clean_env")
def test_local_stack(tmp_path: Path) -> None:
    home = tmp_path / "h"
    requested = Settings(
        home=home, db_url=SecretStr(f"sqlite:///{tmp_path / 'db.sqlite'}"), partitions=3
    )
    assert requested.kafka is None and requested.redis_url is None
    runtime_file = home / "runtime.json"
    stack = LocalStack(requested, prepare=prepare_stores)
    try:
        settings = stack.start()
        assert stack.broker is not None and stack.broker.running()
        assert settings.kafka == stack.broker.bootstrap
        assert settings.redis_url is not None
        names = [settings.topic(n) for n in TOPICS]
        assert sorted(stack.created_topics) == sorted(names)

        assert topic_partitions(settings.kafka, names) == dict.fromkeys(names, 3)
        consumer = KafkaConsumer(bootstrap_servers=settings.kafka)
        try:
            assert consumer.partitions_for_topic(settings.topic("predictions")) == {0, 1, 2}
        finally:
            consumer.close()
        assert ensure_topics(settings) == []  # already there

        info = json.loads(runtime_file.read_text())
        assert info["kafka"] == settings.kafka
        assert info["kafka_source"] == "embedded Tansu"
        assert info["redis_url"] == settings.redis_url.get_secret_value()
        assert info["redis_discoverable"] is True
        assert info["db_url"] == f"sqlite:///{tmp_path / 'db.sqlite'}"
        assert info["pid"] == os.getpid()
        assert info["workers"] == []
        assert runtime_file.stat().st_mode & 0o777 == 0o600
        stack.write_runtime(worker_pids=[11, 12])
        assert json.loads(runtime_file.read_text())["workers"] == [11, 12]
        assert runtime_file.stat().st_mode & 0o777 == 0o600
        assert [p.name for p in home.iterdir() if p.name.startswith(".runtime")] == []
        assert (tmp_path / "db.sqlite").exists()

        found = discover(Settings(home=home))
        assert found.kafka == settings.kafka
        assert found.redis_url == settings.redis_url
        # what is configured wins over what is discovered
        assert discover(Settings(home=home, kafka="10.0.0.1:9092")).kafka == "10.0.0.1:9092"
        broker = stack.broker
    finally:
        stack.stop()
    assert not runtime_file.exists()
    assert not broker.running()
    host, port = settings.kafka.rsplit(":", 1)
    assert port_is_free(host, int(port))
    assert discover(Settings(home=home)).kafka is None


@pytest.mark.usefixtures("clean_env")
def test_discover_ignores_a_stale_or_broken_runtime_file(tmp_path: Path) -> None:
    plain = Settings(home=tmp_path)
    assert discover(plain) == plain  # no file
    (tmp_path / "runtime.json").write_text(
        json.dumps({"kafka": f"127.0.0.1:{free_port()}", "redis_url": "redis://x:1/0"})
    )
    assert discover(plain) == plain  # nothing answers there: a leftover of a crashed `up`
    (tmp_path / "runtime.json").write_text('{"kafka": "127.0.0.1:')
    assert discover(plain) == plain  # half-written


@pytest.mark.usefixtures("clean_env")
def test_local_stack_reuses_configured_services(
    broker: EmbeddedBroker, redis_url: str, tmp_path: Path
) -> None:
    s = Settings(
        home=tmp_path / "h",
        kafka=broker.bootstrap,
        redis_url=SecretStr(redis_url),
        db_url=SecretStr(f"sqlite:///{tmp_path / 'db.sqlite'}"),
        topic_prefix=f"t{uuid.uuid4().hex[:12]}.",
        partitions=1,
    )
    with LocalStack(s, write_runtime_file=False) as settings:
        assert settings == s
        assert not (tmp_path / "h" / "runtime.json").exists()
    assert answers(broker.host, broker.port)  # not ours to stop
    assert topic_partitions(broker.bootstrap, [s.topic("gates")]) == {s.topic("gates"): 1}


@pytest.mark.usefixtures("clean_env")
def test_runtime_file_holds_no_secret(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """A configured Redis URL with a password is written redacted and never discovered."""
    home = tmp_path / "h"
    s = Settings(
        home=home,
        kafka=broker.bootstrap,
        redis_url=SecretStr("redis://gov:hunter2@127.0.0.1:6379/0"),
        db_url=SecretStr(f"sqlite:///{tmp_path / 'db.sqlite'}?password=hunter3"),
        topic_prefix=f"t{uuid.uuid4().hex[:12]}.",
        partitions=1,
    )
    with LocalStack(s):
        text = (home / "runtime.json").read_text()
        assert "hunter" not in text
        info = json.loads(text)
        assert info["redis_url"] == "redis://gov:***@127.0.0.1:6379/0"
        assert info["redis_discoverable"] is False
        assert info["db_url"].endswith("db.sqlite?password=***")
        found = discover(Settings(home=home))
        assert found.kafka == broker.bootstrap
        assert found.redis_url is None  # the client must be given the secret itself


def test_write_private_json_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "runtime.json"
    path.write_text("old")
    path.chmod(0o644)
    write_private_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(TypeError):
        write_private_json(path, {"a": object()})  # not JSON: the old file stays whole
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runtime.json"]


@pytest.mark.usefixtures("clean_env")
def test_a_second_stack_in_the_same_home_refuses(broker: EmbeddedBroker, tmp_path: Path) -> None:
    home = tmp_path / "h"
    s = Settings(
        home=home,
        kafka=broker.bootstrap,
        redis_url=SecretStr("redis://127.0.0.1:6379/0"),
        db_url=SecretStr(f"sqlite:///{tmp_path / 'db.sqlite'}"),
        topic_prefix=f"t{uuid.uuid4().hex[:12]}.",
        partitions=1,
    )
    with LocalStack(s):
        before = (home / "runtime.json").read_text()
        second = LocalStack(s)
        holder = re.escape(f"already running in {home} (pid {os.getpid()})")
        with pytest.raises(AlreadyRunning, match=holder):
            second.start()
        second.stop()  # what `up` does on its way out: must not touch the first's file
        assert (home / "runtime.json").read_text() == before
    assert not (home / "runtime.json").exists()
    with LocalStack(s):  # the lock went with the first stack
        assert (home / "runtime.json").exists()


# --- the embedded Redis ------------------------------------------------------------------------


def test_embedded_redis_keeps_its_state_across_restarts(tmp_path: Path) -> None:
    """An append-only file under the data dir: a new server, or a SIGKILLed one, keeps the keys."""
    import signal

    import redis

    data = tmp_path / "redis"
    first = LocalRedis(port=free_port(), data_dir=data).start()  # nothing there: embedded
    try:
        assert first.embedded and first.running()
        client = redis.Redis.from_url(first.url)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert Path(client.config_get("dir")["dir"]) == data.resolve()
        client.set("k", "v1")
        client.close()
    finally:
        first.stop()
    assert not first.running()

    second = LocalRedis(port=free_port(), data_dir=data).start()
    try:
        client = redis.Redis.from_url(second.url)
        assert client.get("k") == b"v1"
        client.set("k", "v2")
        pid, port = second.pid, second.port
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: not second.running())
        second.restart()
        assert second.port == port and second.pid != pid  # same URL for its clients
        assert client.get("k") == b"v2"
        client.close()
    finally:
        second.stop()


def test_a_redis_that_answers_is_reused_not_restarted(redis_url: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(redis_url)
    assert parts.hostname is not None and parts.port is not None
    reused = LocalRedis(host=parts.hostname, port=parts.port).start()
    assert not reused.embedded and reused.url == redis_url
    with pytest.raises(RuntimeUnavailable, match="only an embedded Redis"):
        reused.restart()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# --- SQL ---------------------------------------------------------------------------------------

T0 = datetime(2030, 1, 1, tzinfo=UTC)


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


def count(session: Session, table: type, event_id: str) -> int:
    return session.exec(
        select(func.count()).select_from(table).where(table.event_id == event_id)
    ).one()


def test_sql_insert_once(db_url: str, tmp_path: Path) -> None:
    engine = create_engine_for(Settings(home=tmp_path, db_url=SecretStr(db_url)))
    try:
        init_db(engine)
        init_db(engine)  # idempotent
        eid = uuid.uuid4().hex  # PostgreSQL is shared between runs
        result = gate_result(eid)
        with Session(engine) as session:
            assert save_gate_result(session, result) is True
            assert save_gate_result(session, result) is False  # same session
            session.commit()
        with Session(engine) as session:
            assert save_gate_result(session, result) is False  # after a restart
            # a duplicate does not spoil the rest of the batch
            other = gate_result(uuid.uuid4().hex)
            assert save_gate_result(session, other) is True
            session.commit()
        with Session(engine) as session:
            assert count(session, GateResultRow, eid) == 1
            row = session.get(GateResultRow, eid)
            assert row is not None
            assert (row.policy, row.model, row.outcome, row.trigger_event_id) == (
                "quality",
                "clf",
                "fail",
                "snap-1",
            )
            assert GateResult.model_validate_json(row.body) == result
            assert count(session, GateResultRow, other.event_id) == 1

            snap = MetricSnapshot(
                event_id=uuid.uuid4().hex,
                model="clf",
                model_version="7",
                window_start=T0,
                window_end=T0 + timedelta(minutes=1),
                count=10,
                feedback_count=0,
                labelled_count=0,
                correct_count=0,
                positive_count=0,
                judged_count=0,
            )
            assert save_snapshot(session, snap) is True
            assert save_snapshot(session, snap) is False
            session.commit()
            assert count(session, MetricSnapshotRow, snap.event_id) == 1

            policy_hash = uuid.uuid4().hex
            body = {"name": "quality", "rules": []}
            assert save_policy(session, "quality", policy_hash, body, T0) is True
            assert save_policy(session, "quality", policy_hash, body, T0) is False
            session.commit()
            stored = session.get(GatePolicyRow, policy_hash)
            assert stored is not None and json.loads(stored.body) == body
    finally:
        engine.dispose()


def test_local_stack_forgets_state_of_an_earlier_embedded_broker(tmp_path: Path) -> None:
    """A new embedded broker starts empty: Redis state about the old one must not skip events."""
    import redis

    prefix = f"t{uuid.uuid4().hex[:12]}."
    requested = Settings(
        home=tmp_path / "h",
        topic_prefix=prefix,
        db_url=SecretStr(f"sqlite:///{tmp_path / 'db.sqlite'}"),
    )
    first = LocalStack(requested, write_runtime_file=False, prepare=prepare_stores)
    settings = first.start()
    assert settings.redis_url is not None
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    try:
        client.hset(f"{prefix}offsets", f"{prefix}predictions:0", 41)
        client.set(f"{prefix}seen:abc", 1)
        client.set("unrelated-key-" + prefix, 1)
        first.stop()
        second = LocalStack(requested, write_runtime_file=False, prepare=prepare_stores)
        second.start()
        try:
            assert client.exists(f"{prefix}offsets", f"{prefix}seen:abc") == 0
            assert client.exists("unrelated-key-" + prefix) == 1
        finally:
            second.stop()
    finally:
        client.delete("unrelated-key-" + prefix)
        client.close()


@pytest.mark.integration
def test_faust_keeps_its_data_under_govloop_home(settings: Settings) -> None:
    from govloop.streams.app import create_app

    app = create_app(settings, policies=[])
    group = settings.topic_prefix.rstrip(".") + "-worker"
    assert Path(app.conf.datadir) == settings.home / "faust" / group
