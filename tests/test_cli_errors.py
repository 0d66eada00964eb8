"""Every govloop command on a table of bad inputs: one ``error:`` line, exit 2, no traceback.

The commands are found by walking the typer app, so a new command fails
:func:`test_every_command_has_a_row` until it gets a row in :data:`COMMANDS`
saying how to call it and what it reads.  Each row's valid call is checked
to work first (so the bad inputs below fail for the reason they carry, not
for a mistake in the row), then every bad input that applies is tried: a
bad option, missing, mistyped, non-UTF-8 and malformed files, invalid
``GOVLOOP_*`` variables, a garbage or unreachable database, an unreachable
broker or Redis.  Quick commands run in-process (CliRunner); the ones that
start services (``up``, ``worker``, ``demo``) and a sample of the rest run as
real ``python -m govloop`` processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from govloop.cli import app
from govloop.config import Settings
from govloop.runtime import EmbeddedBroker
from govloop.stores.sql import create_engine_for, init_db

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "fixtures"
RESULTS = FIXTURES / "lighteval" / "results_small-lm-1.1.json"
PASSWORD = "s3cret-Pa55word"

POLICY = """\
name: floor
models: ["*"]
rules:
  - name: acc-floor
    metric: all/acc
    op: ">="
    value: 0.0
"""
PREDICTIONS = '{"age": 31, "country": "fr"}\n{"age": 45, "country": "de"}\n'


@dataclass(frozen=True)
class Row:
    """How to call one command well, and what it reads.

    ``files`` names the placeholders of ``args`` (``{policy}``...) and each
    one's format; ``services`` the services it uses (sql, kafka, redis);
    ``settings`` whether it reads the GOVLOOP_* variables at all; ``process``
    that it starts services, so it runs only as a real process;
    ``reports_down`` that a service being down is what it reports (status),
    not an error.  ``xfail`` maps a case to the reason it fails today.
    """

    args: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)
    services: frozenset[str] = frozenset()
    settings: bool = True
    process: bool = False
    ok_codes: tuple[int, ...] = (0,)
    reports_down: bool = False
    xfail: dict[str, str] = field(default_factory=dict)


SQL = frozenset({"sql"})


COMMANDS: dict[str, Row] = {
    "up": Row(
        ("up",),
        services=frozenset({"kafka", "sql"}),
        process=True,
    ),
    "worker": Row(
        ("worker",),
        services=frozenset({"kafka", "sql", "redis"}),
        process=True,
    ),
    "demo": Row(("demo",), process=True),
    "status": Row(("status",), services=frozenset({"kafka", "sql", "redis"}), reports_down=True),
    "models": Row(("models",), services=SQL),
    "topics create": Row(
        ("topics", "create"),
        services=frozenset({"kafka"}),
    ),
    "schemas export": Row(("schemas", "export", "{out}"), files={"out": "outdir"}, settings=False),
    "schemas list": Row(("schemas", "list"), settings=False),
    "drift status": Row(("drift", "status"), services=SQL),
    "drift reference set": Row(
        ("drift", "reference", "set", "m", "1", "--from", "{rows}"),
        files={"rows": "jsonl"},
        services=SQL,
    ),
    "drift reference show": Row(("drift", "reference", "show"), services=SQL),
    "metrics show": Row(("metrics", "show"), services=SQL),
    "gate check": Row(
        ("gate", "check", "--policy", "{policy}", "--results", "{results}", "--record"),
        files={"policy": "yaml", "results": "json"},
        services=SQL,
    ),
    "gate schema": Row(("gate", "schema"), settings=False),
    "gate validate": Row(
        ("gate", "validate", "{policy}"),
        files={"policy": "yaml"},
        settings=False,
    ),
    "gate log": Row(("gate", "log"), services=SQL),
    "baseline set": Row(
        ("baseline", "set", "base", "--from", "{results}"), files={"results": "json"}, services=SQL
    ),
    "baseline show": Row(("baseline", "show", "base"), services=SQL, ok_codes=(2,)),
    "baseline list": Row(("baseline", "list"), services=SQL),
    "audit verify": Row(("audit", "verify"), services=SQL),
    "audit log": Row(("audit", "log"), services=SQL),
    "repro verify": Row(("repro", "verify", "no-such-id"), services=SQL, ok_codes=(2,)),
    "repro show": Row(("repro", "show", "no-such-id"), services=SQL, ok_codes=(2,)),
    "deadletter tail": Row(("deadletter", "tail"), services=frozenset({"kafka"})),
    "state reset": Row(
        ("state", "reset", "--model", "m", "--yes"), services=frozenset({"kafka", "redis"})
    ),
}


def command_paths() -> list[str]:
    """Every command of the app, as the words that call it (``gate check``)."""

    def walk(cmd: Any, path: list[str]) -> Iterator[str]:
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(None):
                yield from walk(cmd.get_command(None, name), [*path, name])
        else:
            yield " ".join(path)

    return sorted(walk(typer.main.get_command(app), []))


# --- the bad inputs -------------------------------------------------------------------------

#: Invalid settings: (case id, variables, what the error must name).
BAD_SETTINGS = [
    ("window-abc", {"GOVLOOP_WINDOW_SECONDS": "abc"}, "GOVLOOP_WINDOW_SECONDS"),
    ("partitions-0", {"GOVLOOP_PARTITIONS": "0"}, "GOVLOOP_PARTITIONS"),
    ("budget-word", {"GOVLOOP_DRIFT_BUDGET": "sometimes"}, "GOVLOOP_DRIFT_BUDGET"),
    ("prefix-space", {"GOVLOOP_TOPIC_PREFIX": "my prefix"}, "GOVLOOP_TOPIC_PREFIX"),
    ("batch-float", {"GOVLOOP_BATCH_SIZE": "1.5"}, "GOVLOOP_BATCH_SIZE"),
]

#: Services that are not there: (case id, service, variables, what the error must name).
DOWN = [
    ("db-garbage", "sql", {"GOVLOOP_DB_URL": "garbage"}, "GOVLOOP_DB_URL"),
    (
        "db-unreachable",
        "sql",
        {"GOVLOOP_DB_URL": f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test"},
        "127.0.0.1:1",
    ),
    ("db-under-a-file", "sql", {"GOVLOOP_DB_URL": "sqlite:///{file}/sub/govloop.db"}, "sub"),
    ("kafka-unreachable", "kafka", {"GOVLOOP_KAFKA": "127.0.0.1:1"}, "127.0.0.1:1"),
    (
        "redis-unreachable",
        "redis",
        {"GOVLOOP_REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:1/0"},
        "127.0.0.1:1",
    ),
]

#: Bad files by format: case id -> (how to make it, given tmp dir and suffix).
BAD_FILES: dict[str, Any] = {
    "missing": lambda d, s: d / f"missing.{s}",
    "mistyped-dir": lambda d, s: d / "no-such-dir" / f"file.{s}",
    "a-directory": lambda d, s: _mkdir(d / f"dir.{s}"),
    "not-utf8": lambda d, s: _write(d / f"latin1.{s}", b"name: caf\xe9 \xff\xfe\n"),
    "empty": lambda d, s: _write(d / f"empty.{s}", b""),
    "malformed": lambda d, s: _write(d / f"bad.{s}", MALFORMED[s]),
}
MALFORMED = {
    "yaml": b"name: x\nrules: [1, 2\n",
    "json": b'{"results": {"a|b|0": {"acc": 0.5,}}\n',
    "jsonl": b'{"age": 1}\n{"age": \n',
}
#: For an output directory: a regular file in its place, or under it.
BAD_OUTDIRS: dict[str, Any] = {
    "is-a-file": lambda d: _write(d / "file.txt", b"x"),
    "under-a-file": lambda d: _write(d / "file2.txt", b"x") / "sub",
}


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- running a command ----------------------------------------------------------------------


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def base_env(
    broker: EmbeddedBroker, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Working settings of an isolated deployment; no GOVLOOP_* from the shell."""
    for name in list(os.environ):
        if name.startswith("GOVLOOP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "200")
    return {
        "GOVLOOP_HOME": str(tmp_path / "home"),
        "GOVLOOP_KAFKA": broker.bootstrap,
        "GOVLOOP_REDIS_URL": redis_url,
        "GOVLOOP_DB_URL": f"sqlite:///{tmp_path / 'govloop.db'}",
        "GOVLOOP_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:12]}.",
        "GOVLOOP_PARTITIONS": "1",
        "GOVLOOP_SESSION_TIMEOUT_SECONDS": "6",
    }


def good_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "policy": _write(tmp_path / "policy.yaml", POLICY.encode()),
        "results": _write(tmp_path / "results.json", RESULTS.read_bytes()),
        "rows": _write(tmp_path / "rows.jsonl", PREDICTIONS.encode()),
        "out": tmp_path / "schemas-out",
    }
    return files


def argv(row: Row, files: dict[str, Path]) -> list[str]:
    out = []
    for a in row.args:
        for name, path in files.items():
            a = a.replace("{" + name + "}", str(path))
        out.append(a)
    return out


def run(args: list[str], env: dict[str, str], process: bool = False) -> Ran:
    """The command in-process (CliRunner, stdout and stderr apart) or as a real process."""
    if process:
        done = subprocess.run(
            [sys.executable, "-m", "govloop", *args],
            env={k: v for k, v in os.environ.items() if not k.startswith("GOVLOOP_")} | env,
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
        )
        return Ran(done.returncode, done.stdout, done.stderr)
    result = CliRunner().invoke(app, args, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: the bug this test is for
    return Ran(result.exit_code, result.stdout, result.stderr)


def assert_one_error_line(ran: Ran, names: str, code: int = 2) -> None:
    """Exactly one ``error: ...`` line on stderr naming ``names``, exit ``code``, no trace."""
    lines = ran.stderr.splitlines()
    assert "Traceback" not in ran.stderr + ran.stdout, ran.stderr
    assert len(lines) == 1, ran.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert names in lines[0], lines[0]
    assert ran.code == code, (ran.code, ran.stderr)
    assert PASSWORD not in ran.stdout + ran.stderr


def case(row_name: str, case_id: str) -> Any:
    """A pytest param, xfail (strict) when the row says the case fails today."""
    reason = COMMANDS[row_name].xfail.get(case_id)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(row_name, case_id, id=f"{row_name}-{case_id}", marks=marks)


# --- the tests ------------------------------------------------------------------------------


def test_every_command_has_a_row() -> None:
    assert command_paths() == sorted(COMMANDS)


@pytest.mark.parametrize("name", [n for n, r in COMMANDS.items() if not r.process])
def test_the_valid_call_of_each_row_works(
    name: str, base_env: dict[str, str], tmp_path: Path
) -> None:
    row = COMMANDS[name]
    # the database exists, as after `govloop up`: the commands that only read refuse a missing one
    init_db(create_engine_for(Settings(db_url=base_env["GOVLOOP_DB_URL"])))  # type: ignore[arg-type]
    ran = run(argv(row, good_files(tmp_path)), base_env)
    assert ran.code in row.ok_codes, (ran.code, ran.stdout, ran.stderr)
    assert "Traceback" not in ran.stderr


@pytest.mark.parametrize("name", command_paths())
def test_an_unknown_option_is_one_line(name: str, base_env: dict[str, str]) -> None:
    ran = run([*name.split(), "--no-such-option"], base_env)
    assert_one_error_line(ran, "No such option: --no-such-option")


@pytest.mark.parametrize(
    ("name", "case_id"),
    [
        case(n, c)
        for n, r in COMMANDS.items()
        if r.settings
        for c, _, _ in BAD_SETTINGS
        if not r.process or c == "window-abc"
    ],
)
def test_an_invalid_setting_is_one_line_naming_the_variable(
    name: str, case_id: str, base_env: dict[str, str], tmp_path: Path
) -> None:
    row = COMMANDS[name]
    _, env, variable = next(b for b in BAD_SETTINGS if b[0] == case_id)
    ran = run(argv(row, good_files(tmp_path)), base_env | env, process=row.process)
    assert_one_error_line(ran, variable)


@pytest.mark.parametrize(
    ("name", "case_id"),
    [case(n, c) for n, r in COMMANDS.items() for c, s, _, _ in DOWN if s in r.services],
)
def test_a_service_that_is_not_there_is_one_line(
    name: str, case_id: str, base_env: dict[str, str], tmp_path: Path
) -> None:
    row = COMMANDS[name]
    _, service, env, names = next(d for d in DOWN if d[0] == case_id)
    blocker = _write(tmp_path / "a-file", b"x")
    env = {k: v.replace("{file}", str(blocker)) for k, v in env.items()}
    # kafka-python leaks the sockets of a client whose constructor finds no broker: a
    # process of its own keeps them out of this one (where they would fail a later test)
    process = row.process or service == "kafka"
    ran = run(argv(row, good_files(tmp_path)), base_env | env, process=process)
    if row.reports_down:
        assert ran.code == 0, ran.stderr
        assert "Traceback" not in ran.stderr
        assert PASSWORD not in ran.stdout + ran.stderr
        assert "down" in ran.stdout
        return
    assert_one_error_line(ran, names)


@pytest.mark.parametrize(
    ("name", "placeholder", "case_id"),
    [
        pytest.param(
            n,
            p,
            c,
            id=f"{n}-{p}-{c}",
            marks=[pytest.mark.xfail(strict=True, reason=r.xfail[f"{p}-{c}"])]
            if f"{p}-{c}" in r.xfail
            else [],
        )
        for n, r in COMMANDS.items()
        for p, kind in r.files.items()
        for c in (BAD_OUTDIRS if kind == "outdir" else BAD_FILES)
    ],
)
def test_a_bad_file_is_one_line_naming_it(
    name: str, placeholder: str, case_id: str, base_env: dict[str, str], tmp_path: Path
) -> None:
    row = COMMANDS[name]
    files = good_files(tmp_path)
    kind = row.files[placeholder]
    make = BAD_OUTDIRS[case_id] if kind == "outdir" else lambda d: BAD_FILES[case_id](d, kind)
    bad = make(tmp_path)
    files[placeholder] = bad
    ran = run(argv(row, files), base_env)
    assert_one_error_line(ran, bad.name)


@pytest.mark.parametrize(
    "args",
    [
        ["gate", "validate", "{dir}/missing.yaml"],
        ["schemas", "export", "{dir}/a-file/sub"],
        ["baseline", "show", "base@x"],
        ["metrics", "show", "--window", "hourly"],
    ],
    ids=["missing-policy", "export-under-a-file", "bad-ref", "bad-window"],
)
def test_a_real_process_gives_one_line_too(
    args: list[str], base_env: dict[str, str], tmp_path: Path
) -> None:
    _write(tmp_path / "a-file", b"x")
    ran = run([a.replace("{dir}", str(tmp_path)) for a in args], base_env, process=True)
    assert_one_error_line(ran, "")


def test_a_real_process_names_the_invalid_variable(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    ran = run(["models"], base_env | {"GOVLOOP_WINDOW_SECONDS": "abc"}, process=True)
    assert_one_error_line(ran, "GOVLOOP_WINDOW_SECONDS: Input should be a valid number")
    assert "abc" not in ran.stderr  # a value is never echoed: it may be a secret


@pytest.mark.parametrize(
    "command",
    [
        "models",
        "audit log",
    ],
)
def test_a_real_process_hides_the_database_password(
    command: str, base_env: dict[str, str], tmp_path: Path
) -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test?password={PASSWORD}"
    ran = run(command.split(), base_env | {"GOVLOOP_DB_URL": url}, process=True)
    assert_one_error_line(ran, "postgresql://postgres:***@127.0.0.1:1/test")


def test_version_is_the_installed_package_version() -> None:
    from importlib.metadata import version

    ran = run(["--version"], {})
    assert ran.code == 0
    assert ran.stdout.strip() == f"govloop {version('govloop')}"


def test_the_safety_net_makes_a_govloop_error_one_line_and_leaves_a_bug_a_bug() -> None:
    from govloop.cli import OneLineErrors
    from govloop.errors import PolicyError

    probe = typer.Typer(cls=OneLineErrors)

    @probe.command("mapped")
    def mapped() -> None:
        raise PolicyError("policy p: rule r has no metric\nsecond line")

    @probe.command("bug")
    def bug() -> None:
        raise KeyError("a bug")

    result = CliRunner().invoke(probe, ["mapped"])
    assert result.exit_code == 2
    assert result.stderr == "error: policy p: rule r has no metric\\nsecond line\n"
    crashed = CliRunner().invoke(probe, ["bug"])
    assert isinstance(crashed.exception, KeyError)  # not hidden: a traceback to fix


def test_a_read_only_session_refuses_a_missing_sqlite_file(tmp_path: Path) -> None:
    import typer as typer_module

    from govloop.cli.output import open_session

    settings = Settings(home=tmp_path, db_url=f"sqlite:///{tmp_path / 'typo.db'}")  # type: ignore[arg-type]
    with pytest.raises(typer_module.Exit) as exited, open_session(settings, must_exist=True):
        pass
    assert exited.value.exit_code == 2
    assert not (tmp_path / "typo.db").exists()
    with open_session(settings):  # a command that writes creates it, as before
        pass
    assert (tmp_path / "typo.db").exists()


def typed_options() -> list[tuple[str, str]]:
    """Every (command, option) whose value must be a number or a time: walked from the app."""
    from datetime import datetime

    found = []
    root = typer.main.get_command(app)
    for name in command_paths():
        cmd = root
        for word in name.split():
            cmd = cmd.get_command(None, word)  # type: ignore[attr-defined]
        for param in cmd.params:
            annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
            if param.param_type_name != "option" or getattr(param, "is_flag", False):
                continue
            if annotation in (int, float, datetime, int | None, float | None, datetime | None):
                found.append((name, param.opts[0]))
    return found


@pytest.mark.parametrize(("name", "option"), typed_options())
def test_an_option_value_of_the_wrong_type_is_one_line(
    name: str, option: str, base_env: dict[str, str], tmp_path: Path
) -> None:
    ran = run([*argv(COMMANDS[name], good_files(tmp_path)), option, "zz"], base_env)
    assert_one_error_line(ran, option)


def test_options_of_the_wrong_type_are_found() -> None:
    assert {("gate log", "--limit"), ("up", "--workers"), ("baseline set", "--since")} <= set(
        typed_options()
    )
