"""Session-wide real services: one embedded broker, one Redis, SQLite and PostgreSQL.

Each test gets its own uuid-named topic prefix (so its own topics, consumer
groups and Redis keys) through the ``settings`` fixture.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from govloop.config import Settings
from govloop.runtime import EmbeddedBroker, LocalRedis, answers, ensure_topics, wait_for_broker


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        wait_for_broker(b.bootstrap)
        yield b


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with LocalRedis() as r:
        yield r.url


POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _db_params() -> list[str]:
    params = ["sqlite"]
    if answers("127.0.0.1", 5432):
        params.append("postgresql")
    return params


@pytest.fixture(params=_db_params())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite always; PostgreSQL too when one answers on 127.0.0.1:5432."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'govloop.db'}"
    return POSTGRES_URL


@pytest.fixture
def own_db_url(db_url: str) -> Iterator[str]:
    """``db_url``, and on PostgreSQL a fresh schema of its own, dropped afterwards.

    For tests that read whole tables (the audit ledger, its chain): the
    PostgreSQL database is shared by every test and by earlier runs.
    """
    if not db_url.startswith("postgresql"):
        yield db_url
        return
    from sqlalchemy import create_engine

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine("postgresql+psycopg://" + db_url.removeprefix("postgresql://"))
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{db_url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def settings(broker: EmbeddedBroker, redis_url: str, tmp_path: Path) -> Settings:
    """Settings of an isolated deployment: own topics, groups, Redis keys and SQLite file."""
    prefix = f"t{uuid.uuid4().hex[:12]}."
    s = Settings(
        kafka=broker.bootstrap,
        redis_url=SecretStr(redis_url),
        db_url=SecretStr(f"sqlite:///{tmp_path / 'govloop.db'}"),
        home=tmp_path / ".govloop",
        topic_prefix=prefix,
        partitions=2,
        session_timeout_seconds=6.0,
        sliding_windows=1,  # tests that want sliding snapshots ask for them
        max_future_seconds=0,  # test events carry fixed times in 2030
    )
    ensure_topics(s)
    return s
