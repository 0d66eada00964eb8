"""The window scripts (stores/redis/lua) in-process, against a real Redis, one script at a time.

Each test has its own key prefix.  They drive :class:`WindowStore` directly
(no broker, no worker process), so a failure points at a script.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from govloop.schemas import Feedback, Prediction
from govloop.stores.redis import keys
from govloop.stores.redis.records import record_of, skip_record
from govloop.stores.redis.windows import UNKNOWN, Claimed, Outcome, WindowStore, clear_state

pytestmark = pytest.mark.integration

T0 = datetime(2030, 1, 1, tzinfo=UTC)
SIZE = 60.0


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    p = f"t{uuid.uuid4().hex[:12]}."
    yield p
    clear_state(redis_url, p)


def prediction(rid: str, minute: float, label: str = "yes", event_id: str | None = None) -> Any:
    kw = {} if event_id is None else {"event_id": event_id}
    return Prediction(
        model="m",
        model_version="1",
        request_id=rid,
        prediction=label,
        ts=T0 + timedelta(minutes=minute),
        **kw,
    )


def feedback(rid: str, minute: float, label: str = "yes") -> Any:
    return Feedback(request_id=rid, label=label, ts=T0 + timedelta(minutes=minute))


class Store:
    """A WindowStore on its own prefix, with synchronous helpers for the tests."""

    def __init__(self, redis_url: str, prefix: str, **kw: Any) -> None:
        self.url, self.prefix, self.kw = redis_url, prefix, kw
        self.released: list[Outcome] = []  # every outcome released so far, in order

    def run(self, fn: Any) -> Any:
        async def main() -> Any:
            client = aioredis.Redis.from_url(self.url)
            try:
                store = WindowStore(
                    client,
                    prefix=self.prefix,
                    window_seconds=SIZE,
                    **({"grace_seconds": 0.0, "idle_close_seconds": 3600.0} | self.kw),
                    horizon_seconds=3600.0,
                )
                return await fn(store)
            finally:
                await client.aclose()

        return asyncio.run(main())

    def apply(self, events: list[tuple[Any, int]], partition: int = 0) -> int:
        """Apply a batch; return how many events were new (its released outcomes are kept)."""
        records = [record_of(e, "in", partition, offset) for e, offset in events]
        applied = self.run(lambda s: s.apply(records))
        self.released.extend(applied.outcomes)
        return applied.events  # type: ignore[no-any-return]

    def claim(self) -> Claimed:
        claimed: Claimed = self.run(lambda s: s.claim_closed())
        self.released.extend(claimed.outcomes)
        return claimed

    def acknowledge(self, claimed: Claimed) -> None:
        self.run(lambda s: s.acknowledge(claimed.windows))

    def windows(self) -> dict[float, dict[str, int]]:
        """Claim, acknowledge, and return the overall windows' counters by minute."""
        claimed = self.claim()
        self.acknowledge(claimed)
        return {(w.start - T0.timestamp()) / 60: w.counters for w in claimed.windows if not w.slice}


def test_apply_counts_a_batch_once_even_when_it_is_redelivered(redis_url: str, prefix: str) -> None:
    store = Store(redis_url, prefix)
    batch = [(prediction(f"r{i}", 0.1 * i), i) for i in range(5)]
    assert store.apply(batch) == 5
    assert store.apply(batch) == 0  # redelivered after a crash: every offset applied already
    assert store.apply(batch[3:]) == 0  # part of it, too
    store.apply([(prediction("end", 5), 5)])  # moves the watermark past minute 0
    assert store.windows()[0]["count"] == 5


def test_older_offsets_after_newer_ones_are_skipped(redis_url: str, prefix: str) -> None:
    store = Store(redis_url, prefix)
    assert store.apply([(prediction("new", 0.5), 10)]) == 1
    # out of order: offsets 3..5 arrive after offset 10 was applied (a rewound consumer)
    assert store.apply([(prediction(f"old{i}", 0.2), i) for i in (3, 4, 5)]) == 0
    # other partitions keep their own offsets
    assert store.apply([(prediction("p1", 0.3), 3)], partition=1) == 1
    store.apply([(prediction("end", 5), 11), (prediction("end1", 5), 4)], partition=0)
    store.apply([(prediction("end2", 5), 4)], partition=1)
    assert store.windows()[0]["count"] == 2


def test_a_duplicate_event_id_counts_once(redis_url: str, prefix: str) -> None:
    store = Store(redis_url, prefix)
    twice = prediction("r1", 0.1, event_id="same-event")
    assert store.apply([(twice, 0), (twice, 1)]) == 1  # within one batch
    assert store.apply([(twice, 7)], partition=1) == 0  # across partitions and batches
    store.apply([(prediction("end", 5), 2)])
    store.apply([(prediction("end1", 5), 8)], partition=1)
    assert store.windows()[0]["count"] == 1


def test_feedback_before_its_prediction_is_joined_when_the_prediction_comes(
    redis_url: str, prefix: str
) -> None:
    store = Store(redis_url, prefix)
    assert store.apply([(feedback("r1", 0.2, "no"), 0), (feedback("r2", 0.3, "yes"), 1)]) == 2
    assert store.apply([(prediction("r1", 0.1, "yes"), 0), (prediction("r2", 0.1, "yes"), 1)], 1)
    store.apply([(prediction("end", 5), 2)])
    store.apply([(prediction("end1", 5), 2)], partition=1)
    counters = store.windows()[0]
    assert (counters["count"], counters["labelled"], counters.get("correct", 0)) == (2, 2, 1)
    # the join outcomes: r1 wrong, r2 right, released in event-time order
    errors = [(o.value, o.ts) for o in store.released if o.stream == "error"]
    assert [v for v, _ in errors] == [1, 0]
    assert [t for _, t in errors] == sorted(t for _, t in errors)


def test_outcomes_are_released_in_event_time_order_across_partitions(
    redis_url: str, prefix: str
) -> None:
    store = Store(redis_url, prefix)
    minutes = [0.9, 0.1, 0.5, 0.3, 0.7]
    for i, minute in enumerate(minutes):
        store.apply([(prediction(f"r{i}", minute), i)], partition=i % 2)
    # feedback read partition by partition: one partition's backlog first, then the other's
    for partition in (1, 0):
        batch = [
            (feedback(f"r{i}", minute + 0.01, "no"), 100 + i)
            for i, minute in enumerate(minutes)
            if i % 2 == partition
        ]
        store.apply(batch, partition=partition)
    for partition in (0, 1):
        store.apply([(prediction(f"end{partition}", 5), 1000)], partition=partition)
    store.claim()
    times = [o.ts for o in store.released if o.stream == "error"]
    assert len(times) == 5 and times == sorted(times)


def test_an_event_for_a_closed_window_is_counted_late_not_in_the_window(
    redis_url: str, prefix: str
) -> None:
    store = Store(redis_url, prefix)
    store.apply([(prediction("r1", 0.1), 0), (prediction("end", 5), 1)])
    assert store.windows()[0]["count"] == 1
    assert store.apply([(prediction("late", 0.2), 2)]) == 1  # new, but its window is closed
    store.apply([(prediction("end2", 10), 3)])
    assert 0 not in store.windows()
    late = redis.Redis.from_url(redis_url).hgetall(keys.late(prefix))
    # counted per window (lateness 0: no amendment)
    assert {k.decode(): int(v) for k, v in late.items()} == {f"m\x1f1\x1f{T0.timestamp():.3f}": 1}


def test_a_claim_not_acknowledged_is_claimed_again(redis_url: str, prefix: str) -> None:
    store = Store(redis_url, prefix, retry_seconds=0.0)
    store.apply([(prediction("r1", 0.1), 0), (prediction("end", 5), 1)])
    first = store.claim()
    assert [w.counters["count"] for w in first.windows if not w.slice] == [1]
    again = store.claim()  # the closer crashed before acknowledging: the window comes back
    assert [w.member for w in again.windows] == [w.member for w in first.windows]
    store.acknowledge(again)
    assert store.claim().windows == []


def test_a_claim_within_its_retry_time_is_not_handed_out_twice(redis_url: str, prefix: str) -> None:
    store = Store(redis_url, prefix, retry_seconds=600.0)
    store.apply([(prediction("r1", 0.1), 0), (prediction("end", 5), 1)])
    assert store.claim().windows
    assert store.claim().windows == []  # another closer, meanwhile: nothing to take


def test_every_key_belongs_to_a_family_of_keys_py(redis_url: str, prefix: str) -> None:
    store = Store(redis_url, prefix, sliding_windows=3)
    store.apply([(prediction(f"r{i}", i), i) for i in range(3)])
    store.apply([(feedback("r0", 0.5), 10), (feedback("nobody", 0.6), 11)])
    store.apply([(feedback("r1", 1.5), 12)], partition=1)
    store.apply([(prediction("end", 9), 20)])
    store.windows()
    store.apply([(prediction("late", 0.2), 21), (prediction("end2", 20), 22)])
    store.apply([(prediction("end3", 20), 13)], partition=1)
    claimed = store.claim()  # minute 9, left claimed: the closing keys stay
    assert claimed.windows
    client = redis.Redis.from_url(redis_url)
    found = [k.decode() for k in client.scan_iter(match=f"{prefix}*", count=1000)]
    assert found
    families = {k: keys.family_of(k, prefix) for k in found}
    assert [k for k, f in families.items() if f is None] == []
    # the scripts wrote most families, not just a few
    assert {"offsets", "ptime", "seen:", "join:", "win:", "open", "closed:", "late"} <= set(
        families.values()
    )


def quiet_store(redis_url: str, prefix: str) -> Store:
    """Window 0 has events on partitions 0 and 1; partition 0 has moved on to minute 5; then
    both are quiet for longer than the idle close (1 s of wall time)."""
    store = Store(redis_url, prefix, idle_close_seconds=1.0)
    store.apply([(prediction(f"a{i}", 0.1 * i), i) for i in range(3)], partition=0)
    store.apply([(prediction(f"b{i}", 0.1 * i), i) for i in range(3)], partition=1)
    store.apply([(prediction("later", 5), 3)], partition=0)
    time.sleep(2.2)  # Redis TIME has whole seconds
    return store


def claim_with(store: Store, progress: Any) -> list[float]:
    claimed: Claimed = store.run(lambda s: s.claim_closed(progress))
    store.acknowledge(claimed)
    return sorted((w.start - T0.timestamp()) / 60 for w in claimed.windows if not w.slice)


def test_a_partition_with_unread_records_holds_its_windows_however_long_it_was_quiet(
    redis_url: str, prefix: str
) -> None:
    store = quiet_store(redis_url, prefix)
    # partition 1 has records 3..9 in Kafka that no worker applied yet (a stalled worker)
    assert claim_with(store, {"in:0": 4, "in:1": 10}) == []
    assert claim_with(store, UNKNOWN) == []  # the broker does not answer: event time only
    # once they are applied (here: a batch of dead letters) the input is idle: all close
    store.run(lambda s: s.apply([skip_record("in:1", o) for o in range(3, 10)]))
    assert claim_with(store, {"in:0": 4, "in:1": 10}) == []  # it just delivered
    time.sleep(2.2)
    assert claim_with(store, {"in:0": 4, "in:1": 10}) == [0.0, 5.0]


def test_without_progress_quiet_partitions_count_as_idle(redis_url: str, prefix: str) -> None:
    # what an in-process caller with no Kafka gets: wall-clock idle closes everything
    assert claim_with(quiet_store(redis_url, prefix), None) == [0.0, 5.0]


def test_a_partition_with_records_but_no_event_time_yet_holds_every_window(
    redis_url: str, prefix: str
) -> None:
    store = quiet_store(redis_url, prefix)
    # partition 2 has records in Kafka but has delivered none: nothing may close
    assert claim_with(store, {"in:0": 4, "in:1": 3, "in:2": 1}) == []
    assert claim_with(store, {"in:0": 4, "in:1": 3, "in:2": 0}) == [0.0, 5.0]


def test_a_late_event_amends_its_window_within_the_lateness_and_is_counted_late_after(
    redis_url: str, prefix: str
) -> None:
    store = Store(redis_url, prefix, lateness_seconds=300.0)
    store.apply([(prediction(f"r{i}", 0.1 * i), i) for i in range(5)])
    store.apply([(prediction("later", 5), 5)])  # event time at minute 5: window 0 is due
    assert store.windows() == {0.0: {"count": 5}}

    def close_revised(s: WindowStore) -> Any:
        async def run() -> list[Any]:
            revised = await s.revise((await s.claim_closed()).windows)
            await s.acknowledge(revised)
            return [w for w in revised if not w.slice]

        return run()

    # 4 minutes past window 0's end: within the lateness, the window opens again
    assert store.apply([(prediction("late1", 0.5), 6), (prediction("late2", 0.7), 7)]) == 2
    [amended] = store.run(close_revised)
    assert (amended.start - T0.timestamp(), amended.revision) == (0.0, 1)
    assert amended.counters == {"count": 7, "late": 2}
    # and again: revisions add up
    store.apply([(prediction("late3", 0.9), 8)])
    [again] = store.run(close_revised)
    assert (again.revision, again.counters) == (2, {"count": 8, "late": 3})

    # once event time is 9 minutes past the window's end, a late event only counts as late
    store.apply([(prediction("much-later", 10), 9)])
    records = [record_of(prediction("too-late", 0.2), "in", 0, 10)]
    applied = store.run(lambda s: s.apply(records))
    assert (applied.events, applied.late) == (1, 1)
    late = redis.Redis.from_url(redis_url).hgetall(keys.late(prefix))
    assert late == {f"m\x1f1\x1f{T0.timestamp():.3f}".encode(): b"1"}
    assert 0.0 not in store.windows()


def confident(rid: str, minute: float, label: str, p: float) -> Any:
    """A prediction of ``label`` with probability ``p`` (confidence bin ``confidence_bin(p)``)."""
    other = "no" if label == "yes" else "yes"
    return Prediction(
        model="m",
        model_version="1",
        request_id=rid,
        prediction=label,
        probabilities={label: p, other: round(1 - p, 6)},
        ts=T0 + timedelta(minutes=minute),
    )


def test_confidence_bins_count_predictions_and_their_labels_either_order(
    redis_url: str, prefix: str
) -> None:
    from govloop.stats.binning import confidence_bin

    store = Store(redis_url, prefix)
    low, high = confidence_bin(0.55), confidence_bin(0.97)
    # r1 (bin low) labelled after its prediction, r2 and r3 (bin high) before theirs
    store.apply([(feedback("r2", 0.2, "yes"), 0), (feedback("r3", 0.3, "no"), 1)])
    store.apply(
        [
            (confident("r1", 0.1, "yes", 0.55), 2),
            (confident("r2", 0.1, "yes", 0.97), 3),
            (confident("r3", 0.1, "yes", 0.97), 4),
            (confident("r4", 0.1, "no", 0.97), 5),
        ]
    )
    store.apply([(feedback("r1", 0.4, "yes"), 6)])
    store.apply([(prediction("end", 5), 7)])
    counters = store.windows()[0]
    bins = {k: v for k, v in counters.items() if k[:3] in ("cb:", "cl:", "cc:")}
    assert bins == {f"cb:{low}": 1, f"cb:{high}": 3, f"cl:{low}": 1, f"cc:{low}": 1,
                    f"cl:{high}": 2, f"cc:{high}": 1}  # fmt: skip
    assert (counters["count"], counters["labelled"], counters["correct"]) == (4, 3, 2)


def test_a_prediction_waiting_from_before_bins_still_joins(redis_url: str, prefix: str) -> None:
    """A join value written by the script before it kept bins (four slots) joins as before,
    counting no bin."""
    import json

    client = redis.Redis.from_url(redis_url)
    client.set(f"{prefix}join:old", "p" + json.dumps(["m", "1", "yes", []]), ex=3600)
    store = Store(redis_url, prefix)
    store.apply([(feedback("old", 0.2, "yes"), 0), (prediction("end", 5), 1)])
    counters = store.windows()[0]
    assert (counters["labelled"], counters["correct"]) == (1, 1)
    assert not [k for k in counters if k[:3] in ("cl:", "cc:")]
