"""SDK cost per emit against a bare kafka-python ``KafkaProducer.send``, in the same run.

Starts its own embedded broker, creates the topics, then measures (median of
``--reps`` interleaved repetitions of ``--n`` events each):

a. bare kafka-python: ``producer.send(topic, key=..., value=...)`` of
   pre-serialized Prediction bytes, then ``producer.flush()``;
b. the SDK: ``emit_prediction(**fields)`` of the same predictions (validation
   and serialization included), then ``flush()``;
c. the SDK with the broker down (caller time only; buffer large enough to hold all);
d. the caller-side pieces alone, without threads: pydantic validation, JSON dump
   and the SDK's timestamp plausibility check;
e. for reference, no SDK: bare ``send`` with the same validation and JSON dump done
   inline in the caller (what a service validating its own events would pay).

Both producers use the SDK's producer settings (``PRODUCER_DEFAULTS``: acks=all,
idempotence, linger 5 ms).  "caller" is the wall time of the emit loop divided
by N; "end-to-end" adds the flush.  Run::

    .venv/bin/python benchmarks/sdk/bench_sdk.py [--n 20000] [--reps 7]
"""

from __future__ import annotations

import argparse
import gc
import logging
import platform
import resource
import statistics
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from govloop.client import PRODUCER_DEFAULTS, Govloop
from govloop.client._arguments import MAX_FUTURE_SECONDS, check_time
from govloop.config import Settings
from govloop.runtime import EmbeddedBroker, ensure_topics, free_port, wait_for_broker
from govloop.schemas import Prediction


def make_fields(n: int, run: str) -> list[dict[str, Any]]:
    """N realistic tabular predictions (about 350 bytes of JSON each)."""
    return [
        {
            "model": "churn",
            "model_version": "3",
            "request_id": f"{run}-{i:08d}",
            "subject_id": f"u-{i % 5000}",
            "segment": {"region": "eu" if i % 2 else "us"},
            "latency_ms": 12.3,
            "features": {"age": 20 + i % 50, "plan": "pro", "tenure": 12.5, "country": "DE"},
            "probabilities": {"yes": 0.8, "no": 0.2},
        }
        for i in range(n)
    ]


def cpu_seconds() -> float:
    """CPU time of this process, every thread (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(loop: Callable[[], None], finish: Callable[[], object]) -> tuple[float, float, float]:
    """(seconds in ``loop``, seconds in ``loop`` + ``finish``, CPU seconds of both)."""
    gc.collect()
    c0, t0 = cpu_seconds(), time.perf_counter()
    loop()
    t1 = time.perf_counter()
    finish()
    t2, c2 = time.perf_counter(), cpu_seconds()
    return t1 - t0, t2 - t0, c2 - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="events per repetition")
    parser.add_argument("--reps", type=int, default=7, help="repetitions (median reported)")
    args = parser.parse_args()
    n, reps = args.n, args.reps
    warnings.simplefilter("ignore", DeprecationWarning)  # kafka-python on Python 3.11+
    logging.getLogger("govloop.client").setLevel(logging.ERROR)  # (c) drops on purpose
    from kafka import KafkaProducer

    with EmbeddedBroker() as broker:
        wait_for_broker(broker.bootstrap)
        settings = Settings(
            kafka=broker.bootstrap,
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
            partitions=4,
            sdk_buffer=n + 1000,
        )
        ensure_topics(settings, ["predictions"])
        topic = settings.topic("predictions")

        bare = KafkaProducer(bootstrap_servers=broker.bootstrap, **PRODUCER_DEFAULTS)
        bare.send(topic, key=b"warm", value=b"{}").get(timeout=10)
        sdk = Govloop(settings)
        warm = make_fields(1, "warm")[0]
        sdk.emit_prediction(**warm)
        assert sdk.flush(10), "SDK did not connect"

        results: dict[str, list[tuple[float, float, float]]] = {
            "bare": [],
            "sdk": [],
            "down": [],
            "bare+validate": [],
        }
        for rep in range(reps):
            fields = make_fields(n, f"r{rep}")
            records = [(f["request_id"].encode(), Prediction(**f).to_json()) for f in fields]

            def bare_loop(records: list[tuple[bytes, bytes]] = records) -> None:
                send = bare.send
                for key, value in records:
                    send(topic, key=key, value=value)

            def sdk_loop(fields: list[dict[str, Any]] = fields) -> None:
                emit = sdk.emit_prediction
                for f in fields:
                    emit(**f)

            def validating_loop(fields: list[dict[str, Any]] = fields) -> None:
                send = bare.send
                for f in fields:
                    event = Prediction(**f)
                    send(topic, key=event.request_id.encode(), value=event.to_json())

            results["bare"].append(timed(bare_loop, bare.flush))
            results["sdk"].append(timed(sdk_loop, sdk.flush))
            results["bare+validate"].append(timed(validating_loop, bare.flush))

            down = Govloop(settings.model_copy(update={"kafka": f"127.0.0.1:{free_port()}"}))

            def down_loop(fields: list[dict[str, Any]] = fields, down: Govloop = down) -> None:
                emit = down.emit_prediction
                for f in fields:
                    emit(**f)

            results["down"].append(timed(down_loop, lambda: None))
            down.close(timeout=0)
            assert down.stats.dropped == n, down.stats

        stats = sdk.stats
        sdk.close()
        bare.close()
        assert stats.dropped == 0 and stats.errors == 0, stats

    fields = make_fields(n, "cpu")
    events = [Prediction(**f) for f in fields]

    def validate_loop() -> None:
        for f in fields:
            Prediction(**f)

    def dump_loop() -> None:
        for e in events:
            e.to_json()

    def time_check_loop(limit: timedelta = timedelta(seconds=MAX_FUTURE_SECONDS)) -> None:
        for e in events:
            check_time(e, limit)

    validate = statistics.median(timed(validate_loop, lambda: None)[0] for _ in range(reps))
    dump = statistics.median(timed(dump_loop, lambda: None)[0] for _ in range(reps))
    time_check = statistics.median(timed(time_check_loop, lambda: None)[0] for _ in range(reps))

    def us(seconds: float) -> float:
        return seconds / n * 1e6

    med = {
        k: tuple(statistics.median(run[i] for run in v) for i in range(3))
        for k, v in results.items()
    }
    size = len(Prediction(**fields[0]).to_json())
    print(
        f"python {platform.python_version()}, {n} events x {reps} reps, ~{size} B/event, "
        f"producer {', '.join(f'{k}={v}' for k, v in PRODUCER_DEFAULTS.items())}"
    )
    print()
    print(
        "| case | caller us/emit | end-to-end us/emit | CPU us/emit (all threads) "
        "| SDK/bare caller | SDK/bare end-to-end |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    bare_caller, bare_e2e, _ = med["bare"]
    rows = [
        ("a. bare KafkaProducer.send", "bare"),
        ("b. SDK emit_prediction", "sdk"),
        ("c. SDK, broker down", "down"),
        ("e. bare send + validate & dump in the caller (no SDK)", "bare+validate"),
    ]
    for label, key in rows:
        caller, e2e, cpu = med[key]
        down = key == "down"
        print(
            f"| {label} | {us(caller):.1f} | {'-' if down else f'{us(e2e):.1f}'} | "
            f"{'-' if down else f'{us(cpu):.1f}'} | {caller / bare_caller:.2f}x | "
            f"{'-' if down else f'{e2e / bare_e2e:.2f}x'} |"
        )
    print(f"| d1. pydantic validation alone | {us(validate):.1f} | - | - | - | - |")
    print(f"| d2. JSON dump alone | {us(dump):.1f} | - | - | - | - |")
    print(f"| d3. timestamp check alone | {us(time_check):.1f} | - | - | - | - |")
    print()
    for i, what in enumerate(("caller", "end-to-end")):
        print(
            f"per-rep {what} us/emit:",
            {k: [round(us(run[i]), 1) for run in v] for k, v in results.items()},
        )


if __name__ == "__main__":
    main()
