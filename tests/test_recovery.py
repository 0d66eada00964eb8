"""Crash recovery and scale-out: a SIGKILLed worker's replacement counts every event exactly once,
and two workers sharing one consumer group split the partitions and still count exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaAdminClient, KafkaProducer

from govloop.config import Settings
from govloop.schemas import Feedback, MetricSnapshot, Prediction
from tests.kafka_helpers import TopicTail, WorkerProcess, produce_located, wait_until

pytestmark = pytest.mark.integration

WINDOW = 60.0


@dataclass(frozen=True)
class Counts:
    count: int = 0
    feedback_count: int = 0
    labelled_count: int = 0
    correct_count: int = 0
    judged_count: int = 0
    positive_count: int = 0

    @staticmethod
    def of(snap: MetricSnapshot) -> Counts:
        return Counts(
            snap.count,
            snap.feedback_count,
            snap.labelled_count,
            snap.correct_count,
            snap.judged_count,
            snap.positive_count,
        )


@dataclass
class Traffic:
    predictions: list[Prediction]
    feedback: list[Feedback]
    expected: dict[datetime, Counts]  # per window start


def traffic(model: str, start: datetime, sizes: list[int]) -> Traffic:
    """``sizes[w]`` predictions in window ``w``; prediction ``j``'s feedback by ``j % 10``.

    0-1: none; 2-5: the right label; 6-7: a wrong label; 8: thumbs up; 9: thumbs down.
    Events are in event-time order, as a service would send them.
    """
    preds: list[Prediction] = []
    fbs: list[Feedback] = []
    expected: dict[datetime, Counts] = {}
    for w, n in enumerate(sizes):
        w_start = start + timedelta(seconds=w * WINDOW)
        c = {"feedback": 0, "labelled": 0, "correct": 0, "judged": 0, "positive": 0}
        for j in range(n):
            ts = w_start + timedelta(seconds=0.5 + j * (WINDOW - 1) / n)
            rid = f"{model}-{w}-{j}"
            preds.append(
                Prediction(
                    model=model,
                    model_version="1",
                    request_id=rid,
                    prediction="a",
                    latency_ms=5 + j % 7,
                    ts=ts,
                )
            )
            kind = j % 10
            if kind <= 1:
                continue
            c["feedback"] += 1
            if kind <= 7:
                fbs.append(Feedback(request_id=rid, label="a" if kind <= 5 else "b", ts=ts))
                c["labelled"] += 1
                c["correct"] += kind <= 5
            else:
                fbs.append(Feedback(request_id=rid, positive=kind == 8, ts=ts))
                c["judged"] += 1
                c["positive"] += kind == 8
        expected[w_start] = Counts(
            n, c["feedback"], c["labelled"], c["correct"], c["judged"], c["positive"]
        )
    return Traffic(preds, fbs, expected)


def end_of_stream(s: Settings, after: datetime) -> dict[str, int]:
    """One prediction and feedback far later on every partition of both input topics.

    It moves every partition's event time past the real windows, so the watermark closes
    them all at once, without waiting for the idle timeout (which the tests keep long, so
    the gap while a worker restarts cannot close a window early).  Returns the highest
    offset per ``topic:partition`` once these are in.
    """
    ts = after + timedelta(hours=1)
    last: dict[str, int] = {}
    for p in range(s.partitions):
        pred = Prediction(
            model="end", model_version="1", request_id=f"end-{p}", prediction="a", ts=ts
        )
        fb = Feedback(request_id=f"end-{p}", label="a", ts=ts)
        for topic, event in (("predictions", pred), ("feedback", fb)):
            [(partition, offset)] = produce_located(s, topic, [event], partition=p)
            last[f"{s.topic(topic)}:{partition}"] = offset
    return last


def produce_traffic(s: Settings, t: Traffic) -> None:
    produce_located(s, "predictions", t.predictions)
    produce_located(s, "feedback", t.feedback)


def produce_live(s: Settings, t: Traffic, chunk: int = 250) -> None:
    """Produce the traffic as a live service would: predictions and their feedback advance together.

    (Feedback here carries its prediction's time.  Were all predictions sent before any
    feedback while a worker runs, the watermark would pass the first windows before any
    feedback partition had a record, and that feedback would rightly be counted late.)
    """
    producer = KafkaProducer(bootstrap_servers=s.kafka, acks="all", linger_ms=5)
    try:
        feedback = {f.request_id: f for f in t.feedback}
        for i in range(0, len(t.predictions), chunk):
            preds = t.predictions[i : i + chunk]
            for topic, events in (
                ("predictions", preds),
                ("feedback", [feedback[p.request_id] for p in preds if p.request_id in feedback]),
            ):
                for e in events:
                    producer.send(s.topic(topic), key=e.request_id.encode(), value=e.to_json())
            producer.flush()
    finally:
        producer.close()


def recovery_settings(settings: Settings) -> Settings:
    # idle close well beyond a restart's group join, so only the watermark closes windows
    return settings.model_copy(
        update={"idle_close_seconds": 30.0, "window_grace_seconds": 1.0, "policies": ""}
    )


def applied_offsets(r: redis.Redis, s: Settings) -> dict[str, int]:
    raw: dict[bytes, bytes] = r.hgetall(f"{s.redis_prefix}offsets")  # type: ignore[assignment]
    return {k.decode(): int(v) for k, v in raw.items()}


def snapshots(tail: TopicTail, model: str) -> dict[datetime, MetricSnapshot]:
    """The model's snapshots by window start; a re-published one must be identical."""
    out: dict[datetime, MetricSnapshot] = {}
    for e in tail.events:
        if isinstance(e, MetricSnapshot) and e.model == model:
            assert out.setdefault(e.window_start, e) == e, "a window published twice, differently"
    return out


def log_tail(*logs: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-2000:] for p in logs if p.exists())


@pytest.fixture
def rds(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


def test_sigkill_mid_stream_then_restart_counts_every_event_once(
    settings: Settings, tmp_path: Path, rds: redis.Redis
) -> None:
    s = recovery_settings(settings)
    start = datetime(2030, 7, 1, tzinfo=UTC)
    t = traffic("crash", start, [4000, 5000, 5000, 6000])
    produce_traffic(s, t)
    last = end_of_stream(s, start + timedelta(seconds=WINDOW * 4))
    total = sum(o + 1 for o in last.values())
    assert total == len(t.predictions) + len(t.feedback) + 2 * s.partitions

    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    first = WorkerProcess(s, logs[0]).start()
    try:
        # kill as soon as a few batches are in: far from the end at ~10k events/s
        assert wait_until(
            lambda: sum(o + 1 for o in applied_offsets(rds, s).values()) >= 3000,
            timeout=60,
            interval=0.01,
        ), log_tail(logs[0])
    finally:
        first.kill()
    at_kill = applied_offsets(rds, s)
    done_at_kill = sum(o + 1 for o in at_kill.values())
    assert 0 < done_at_kill < total, (at_kill, last)
    assert at_kill != last
    # and Kafka's committed offsets lag behind what Redis has applied: the next worker is
    # handed records again that were already counted, which it must skip
    committed = committed_offsets(s)
    assert any(committed.get(tp, 0) <= applied for tp, applied in at_kill.items()), committed

    with TopicTail(s, "metrics") as metrics, WorkerProcess(s, logs[1]):
        ok = metrics.wait_for(lambda _: len(snapshots(metrics, "crash")) == len(t.expected), 90)
        assert ok, (snapshots(metrics, "crash").keys(), applied_offsets(rds, s), log_tail(*logs))
        assert applied_offsets(rds, s) == last
        metrics.drain(1.0)
        got = {w: Counts.of(snap) for w, snap in snapshots(metrics, "crash").items()}
    assert got == t.expected, (done_at_kill, total)
    assert not rds.hgetall(f"{s.redis_prefix}late")


class _Admin(KafkaAdminClient):
    """kafka-python 3.0 maps a group's authorized operations to its ACL enum and fails on ones
    it does not know (Tansu answers 15, even when not asked); we do not need them."""

    def _process_acl_operations(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj.pop("authorized_operations", None)
        return obj


def committed_offsets(s: Settings) -> dict[str, int]:
    """The workers' group's committed offsets (next to read) per ``topic:partition``."""
    admin = _Admin(bootstrap_servers=s.kafka, request_timeout_ms=10000)
    try:
        group = s.topic_prefix.rstrip(".") + "-worker"
        offsets = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    return {f"{tp.topic}:{tp.partition}": meta.offset for tp, meta in offsets.items()}


def group_members(s: Settings) -> list[str]:
    """The member ids of the workers' consumer group once it is stable, from the broker.

    (Tansu reports no member assignments in DescribeGroups, so who holds which partition
    comes from each worker's own log: :func:`assigned`.)
    """
    admin = _Admin(bootstrap_servers=s.kafka, request_timeout_ms=10000)
    try:
        group = s.topic_prefix.rstrip(".") + "-worker"
        desc = admin.describe_groups([group])[group]
    finally:
        admin.close()
    if desc["error"] or desc["group_state"] != "Stable":
        return []
    return [m["member_id"] for m in desc["members"]]


ASSIGNED = re.compile(r"Setting newly assigned partitions\s*\n(.*?) for group", re.S)
ROW = re.compile(r"^\|\s*(\S+)\s*\|\s*\{([\d, ]*)\}\s*\|", re.M)


def assigned(log: Path) -> tuple[int, dict[str, set[int]]]:
    """How many assignments a worker (at log level info) has had, and its latest one."""
    tables = ASSIGNED.findall(log.read_text(errors="replace")) if log.exists() else []
    if not tables:
        return 0, {}
    latest = {
        topic: {int(p) for p in parts.split(",") if p.strip()}
        for topic, parts in ROW.findall(tables[-1])
    }
    return len(tables), latest


def test_two_workers_share_the_partitions_and_count_exactly(
    settings: Settings, tmp_path: Path, rds: redis.Redis
) -> None:
    s = recovery_settings(settings)
    start = datetime(2030, 8, 1, tzinfo=UTC)
    t = traffic("pair", start, [1500, 2000, 2500])
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    workers = [WorkerProcess(s, log, GOVLOOP_LOG_LEVEL="info") for log in logs]
    inputs = [s.topic("predictions"), s.topic("feedback")]

    def shares() -> list[dict[str, set[int]]]:
        return [assigned(log)[1] for log in logs]

    def split() -> bool:
        """Both workers in the group, each with its own non-empty share of every input topic."""
        if len(group_members(s)) != 2:
            return False
        a, b = shares()
        return all(
            a.get(topic)
            and b.get(topic)
            and a[topic] | b[topic] == set(range(s.partitions))
            and not a[topic] & b[topic]
            for topic in inputs
        )

    with workers[0], workers[1]:
        assert wait_until(split, timeout=45, interval=0.5), (
            group_members(s),
            shares(),
            log_tail(*logs),
        )
        rebalances = [assigned(log)[0] for log in logs]
        # only now the traffic, so each worker reads the share it holds
        produce_live(s, t)
        last = end_of_stream(s, start + timedelta(seconds=WINDOW * 3))
        with TopicTail(s, "metrics") as metrics:
            ok = metrics.wait_for(lambda _: len(snapshots(metrics, "pair")) == len(t.expected), 60)
            assert ok, (snapshots(metrics, "pair").keys(), applied_offsets(rds, s), log_tail(*logs))
            metrics.drain(1.0)
            got = {w: Counts.of(snap) for w, snap in snapshots(metrics, "pair").items()}
        assert applied_offsets(rds, s) == last
        assert [assigned(log)[0] for log in logs] == rebalances, "the group rebalanced meanwhile"
        assert len(group_members(s)) == 2
        for w in workers:
            assert w.proc is not None and w.proc.poll() is None, log_tail(*logs)
    assert got == t.expected
    assert not rds.hgetall(f"{s.redis_prefix}late")
