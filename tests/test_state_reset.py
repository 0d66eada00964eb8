"""Clearing one model's window state in a real Redis (stores/redis/reset.py).

Two models (and two versions of one) are counted through the real window
scripts; a reset of one must remove its state and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from govloop.schemas import Feedback, Prediction
from govloop.stores.redis import keys
from govloop.stores.redis.records import record_of
from govloop.stores.redis.reset import (
    late_counts,
    model_state,
    open_windows,
    pending_references,
    reset_model,
)
from govloop.stores.redis.windows import WindowStore, clear_state

pytestmark = pytest.mark.integration

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    p = f"t{uuid.uuid4().hex[:12]}."
    yield p
    clear_state(redis_url, p)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def prediction(model: str, version: str, rid: str, minute: float) -> Prediction:
    return Prediction(
        model=model,
        model_version=version,
        request_id=rid,
        prediction="yes",
        ts=T0 + timedelta(minutes=minute),
        segment={"country": "fr"},
    )


def apply(redis_url: str, prefix: str, events: list[Any], start: int = 0) -> int:
    """Apply ``events`` as one batch on partition 0 from offset ``start``; how many were new."""

    async def main() -> int:
        c = aioredis.Redis.from_url(redis_url)
        try:
            store = WindowStore(c, prefix, 60.0, 0.0, 3600.0, 3600.0, sliding_windows=3)
            records = [record_of(e, "in", 0, start + i) for i, e in enumerate(events)]
            applied = await store.apply(records)
            claimed = await store.claim_closed()
            await store.acknowledge(claimed.windows)
            return applied.events
        finally:
            await c.aclose()

    return asyncio.run(main())


def populate(redis_url: str, prefix: str, client: redis.Redis) -> None:
    """State for m 1, m 2 and mx 1: closed, open and late windows, join outcomes, drift keys."""
    events: list[Any] = []
    for model, version in (("m", "1"), ("m", "2"), ("mx", "1")):
        events += [prediction(model, version, f"{model}{version}-{i}", i) for i in range(3)]
    apply(redis_url, prefix, events)
    # predictions at minute 10 close windows 0-2 (m 2 has no open window left); then one
    # late prediction each
    fb = [
        Feedback(request_id=f"{m}{v}-0", label="no", ts=T0 + timedelta(minutes=0.5))
        for m, v in (("m", "1"), ("m", "2"), ("mx", "1"))
    ]
    ends = [prediction(m, v, f"end{m}{v}", 10) for m, v in (("m", "1"), ("mx", "1"))]
    apply(redis_url, prefix, [*fb, *ends], start=100)
    apply(
        redis_url,
        prefix,
        [prediction(m, v, f"late{m}{v}", 0.2) for m, v in (("m", "1"), ("m", "2"), ("mx", "1"))],
        start=200,
    )
    for m, v in (("m", "1"), ("m", "2"), ("mx", "1")):
        client.hset(keys.drift_state(prefix, f"{m}\x1f{v}"), "f", "{}")
        client.set(keys.autoref(prefix, f"{m}\x1f{v}"), json.dumps({"n": 7}))
        client.set(keys.concept(prefix, m, v, "error"), "{}")
        client.zadd(f"{prefix}outcomes", {json.dumps([m, v, "error", 1, 1.0, f"e{m}{v}"]): 1.0})


def snapshot(client: redis.Redis, prefix: str) -> dict[bytes, Any]:
    """Every key under ``prefix`` with its content, to compare before and after."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        kind = client.type(key)
        if kind == b"hash":
            out[key] = client.hgetall(key)
        elif kind == b"zset":
            out[key] = set(client.zrange(key, 0, -1))
        elif kind == b"set":
            out[key] = client.smembers(key)
        else:
            out[key] = client.get(key)
    return out


def owner(name: bytes) -> tuple[str, str] | None:
    """The (model, version) a key, member or field is named after, if any."""
    text = name.decode()
    if text.startswith("["):
        found = json.loads(text)
        return found[0], found[1]
    parts = text.split(":", 1)[-1].split("\x1f")
    return (parts[0], parts[1]) if len(parts) >= 2 else None


def test_a_reset_removes_one_versions_state_and_nothing_else(
    redis_url: str, prefix: str, client: redis.Redis
) -> None:
    populate(redis_url, prefix, client)
    before = snapshot(client, prefix)
    seen_before = {k for k in before if keys.family_of(k.decode(), prefix) == "seen:"}
    state = model_state(client, prefix, "m", "1")
    assert not state.empty
    counts = state.counts()
    assert {
        "win:",
        "recent:",
        "dstate:",
        "autoref:",
        "concept:",
        "open",
        "outcomes",
        "late",
    } <= set(counts)

    removed = reset_model(client, prefix, "m", "1")

    assert removed == counts
    after = snapshot(client, prefix)
    assert model_state(client, prefix, "m", "1").empty
    for key, value in before.items():
        family = keys.family_of(key.decode(), prefix)
        if family in ("open", "closing", "outcomes", "late"):
            kept = value if family != "late" else set(value)
            ours = {n for n in kept if owner(n) == ("m", "1")}
            now = after.get(key, set() if family != "late" else {})
            assert set(now) == set(kept) - ours, family
        elif family in (
            "win:",
            "closing:",
            "slices:",
            "recent:",
            "dprof:",
            "dstate:",
            "autoref:",
            "concept:",
        ) and owner(key) == ("m", "1"):
            assert key not in after, key
        else:  # m 2, mx 1, offsets, the duplicate filter, joins, closed markers: as they were
            assert after.get(key) == value, key
    assert seen_before and seen_before <= set(after)


def test_a_reset_without_a_version_takes_every_version_and_no_other_model(
    redis_url: str, prefix: str, client: redis.Redis
) -> None:
    populate(redis_url, prefix, client)
    reset_model(client, prefix, "m")
    assert model_state(client, prefix, "m").empty
    assert not model_state(client, prefix, "mx").empty
    assert set(late_counts(client, prefix)) == {("mx", "1")}
    assert pending_references(client, prefix) == {("mx", "1"): 7}
    assert {(w.model, w.model_version) for w in open_windows(client, prefix)} == {("mx", "1")}


def test_glob_characters_in_a_model_name_match_only_that_name(
    redis_url: str, prefix: str, client: redis.Redis
) -> None:
    apply(redis_url, prefix, [prediction("m*", "1", "a", 0), prediction("mx", "1", "b", 0)])
    reset_model(client, prefix, "m*")
    assert model_state(client, prefix, "m*").empty
    assert [(w.model, w.count) for w in open_windows(client, prefix) if not w.slice] == [("mx", 1)]


def test_after_a_reset_nothing_is_counted_twice_and_new_events_count(
    redis_url: str, prefix: str, client: redis.Redis
) -> None:
    batch = [prediction("m", "1", f"r{i}", 0.1) for i in range(4)]
    assert apply(redis_url, prefix, batch) == 4
    reset_model(client, prefix, "m", "1")
    assert apply(redis_url, prefix, batch) == 0  # redelivered: the applied offsets were kept
    assert apply(redis_url, prefix, [prediction("m", "1", "new", 0.3)], start=10) == 1
    overall = [w for w in open_windows(client, prefix) if not w.slice]
    assert [(w.model, w.model_version, w.count) for w in overall] == [("m", "1", 1)]
