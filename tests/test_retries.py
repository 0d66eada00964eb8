"""Retries that keep a worker going: SQL writes across a lock held longer than the busy
timeout (a real SQLite file), result events re-sent until acknowledged."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from govloop.stores.sql.retry import in_session, transient
from govloop.streams.publish import Results


def test_a_write_waits_out_a_lock_held_past_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    holder = sqlite3.connect(path, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the file
    released = threading.Event()

    def release_later() -> None:
        time.sleep(1.0)  # twenty busy timeouts
        holder.rollback()
        holder.close()
        released.set()

    threading.Thread(target=release_later).start()
    in_session(engine, lambda s: s.execute(text("INSERT INTO t VALUES (1)")))
    assert released.is_set()  # it could only succeed once the lock was gone
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1


def test_a_write_gives_up_after_its_attempts_and_other_errors_are_raised_at_once(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    calls: list[int] = []

    def locked(_session: Any) -> None:
        calls.append(1)
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    with pytest.raises(OperationalError):
        in_session(engine, locked, attempts=2)
    assert len(calls) == 2

    def duplicate(_session: Any) -> None:
        calls.append(1)
        raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))

    with pytest.raises(IntegrityError):
        in_session(engine, duplicate)
    assert len(calls) == 3
    assert not transient(IntegrityError("INSERT", {}, Exception("x")))


class FlakyTopic:
    """A topic whose first ``failures`` deliveries fail (what a producer reports when the
    broker does not acknowledge)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.delivered: list[bytes] = []

    async def send(self, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failures > 0:
            self.failures -= 1
            ack.set_exception(ConnectionError("broker did not acknowledge"))
        else:
            self.delivered.append(value)
            ack.set_result(None)
        return ack


def test_results_are_sent_again_until_acknowledged() -> None:
    topic = FlakyTopic(failures=3)
    results = Results({"metrics": topic})

    async def run() -> None:
        for i in range(2):
            await results.send("metrics", None, b"snapshot %d" % i)
        await results.delivered()

    asyncio.run(run())
    assert sorted(topic.delivered) == [b"snapshot 0", b"snapshot 1"]
    assert topic.failures == 0
