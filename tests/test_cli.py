"""The ``govloop`` command: CliRunner for the quick commands, a real process for ``up``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from govloop.cli import app
from govloop.runtime import EmbeddedBroker, answers
from govloop.schemas import TOPICS

runner = CliRunner()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No GOVLOOP_* variable from the shell, and an empty GOVLOOP_HOME; returns that home."""
    for name in list(os.environ):
        if name.startswith("GOVLOOP_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("GOVLOOP_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    return home


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in (
        "up",
        "worker",
        "demo",
        "topics",
        "schemas",
        "status",
        "models",
        "deadletter",
        "state",
    ):
        assert f"│ {command} " in result.output, command
    assert runner.invoke(app, ["topics", "--help"]).output.count("create") >= 1
    schemas_help = runner.invoke(app, ["schemas", "--help"]).output
    assert "export" in schemas_help and "list" in schemas_help
    assert "│ log " in runner.invoke(app, ["gate", "--help"]).output  # beside check and validate


def test_help_loads_no_heavy_modules() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from govloop.cli import app\n"
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
        "heavy = {'faust', 'mode', 'numpy', 'sklearn', 'scipy', 'sqlmodel', 'kafka', 'aiokafka',"
        " 'redis'}\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules} & heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""


def test_schemas_export(tmp_path: Path) -> None:
    target = tmp_path / "schemas" / "nested"
    result = runner.invoke(app, ["schemas", "export", str(target)])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in target.iterdir())
    assert len(files) == 11
    assert files == sorted(f"govloop.{name}.schema.json" for name in TOPICS)
    for name, topic in TOPICS.items():
        schema = json.loads((target / f"govloop.{name}.schema.json").read_text())
        assert schema["$id"] == topic.model.SCHEMA
        assert schema["title"] == topic.model.__name__
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert "schema" in schema["properties"]
        assert "schema_" not in schema["properties"]
        assert schema["additionalProperties"] is False
        assert topic.model.SCHEMA in result.output


def test_schemas_export_with_prefix(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schemas", "export", str(tmp_path), "--prefix", "acme."])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"acme.{name}.schema.json" for name in TOPICS
    )


def test_schemas_list(clean_env: Path) -> None:
    result = runner.invoke(app, ["schemas", "list"])
    assert result.exit_code == 0, result.output
    for topic in TOPICS.values():
        row = next(line for line in result.output.splitlines() if f" {topic.name} " in line)
        assert topic.model.SCHEMA in row
        assert (topic.key_field or "-") in row
        assert topic.kind in row


@pytest.mark.integration
def test_topics_create(broker: EmbeddedBroker, clean_env: Path) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}."
    env = {
        "GOVLOOP_KAFKA": broker.bootstrap,
        "GOVLOOP_TOPIC_PREFIX": prefix,
        "GOVLOOP_PARTITIONS": "2",
    }
    first = runner.invoke(app, ["topics", "create"], env=env)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("created 11 topics: ")
    for name in TOPICS:
        assert f"{prefix}{name}" in first.stdout
    again = runner.invoke(app, ["topics", "create"], env=env)
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == "created 0 topics"

    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        described = admin.describe_topics([f"{prefix}{name}" for name in TOPICS])
    finally:
        admin.close()
    assert [len(t["partitions"]) for t in described] == [2] * 11


def test_worker_without_a_broker(clean_env: Path) -> None:
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "error: no broker or Redis configured" in result.stderr
    assert "GOVLOOP_KAFKA" in result.stderr and "govloop up" in result.stderr
    assert list(clean_env.iterdir()) == []  # nothing started, nothing written


def test_topics_create_without_a_broker(clean_env: Path) -> None:
    result = runner.invoke(app, ["topics", "create"])
    assert result.exit_code == 2
    assert "error: no broker configured" in result.stderr


# --- govloop up, as a real process ---------------------------------------------------------------


class Output:
    """Collects a child's output lines on a thread, so reading never blocks the test."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._stream = proc.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def join(self) -> None:
        self._thread.join(10)


def wait_until(condition: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())


def children(pid: int) -> Iterator[tuple[int, str]]:
    """(pid, command line) of the live children of ``pid``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            yield int(entry.name), cmdline


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.integration
def test_up_runs_until_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVLOOP_")}
    env |= {
        "GOVLOOP_HOME": str(home),
        "GOVLOOP_DB_URL": f"sqlite:///{tmp_path / 'govloop.db'}",
        "GOVLOOP_SESSION_TIMEOUT_SECONDS": "6",
        # its own Redis keys: Redis on 127.0.0.1:6379 is shared with whatever else runs here
        "GOVLOOP_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:12]}.",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
    }
    runtime_file = home / "runtime.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "govloop", "up"],
        env=env,
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    output = Output(proc)
    spawned: list[int] = []
    try:
        assert wait_until(lambda: "govloop is up" in output.text or proc.poll() is not None, 60)
        assert proc.poll() is None, output.text
        assert "govloop is up" in output.text
        assert runtime_file.exists()
        info = json.loads(runtime_file.read_text())
        assert info["pid"] == proc.pid
        assert info["kafka_source"] == "embedded Tansu"
        host, port = info["kafka"].rsplit(":", 1)
        assert answers(host, int(port))
        assert f"export GOVLOOP_KAFKA={info['kafka']}" in output.text

        def worker_pids() -> list[int]:
            return [pid for pid, cmd in children(proc.pid) if "govloop worker" in cmd]

        assert wait_until(worker_pids, 15), output.text
        spawned = [pid for pid, _ in children(proc.pid)]  # the worker and the broker
        workers = worker_pids()
        assert len(workers) == 1
        time.sleep(3)  # let the worker get going: a clean stop of a busy worker is the point
        assert proc.poll() is None, output.text
        assert all(alive(pid) for pid in workers), output.text

        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        output.join()
        assert proc.returncode == 0, output.text
        assert "stopped cleanly" in output.text
        assert not runtime_file.exists()
        assert not any(alive(pid) for pid in spawned)
        assert not answers(host, int(port))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in spawned:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        output.join()
        assert proc.stdout is not None
        proc.stdout.close()
