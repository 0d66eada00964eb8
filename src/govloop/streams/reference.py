"""Reference profiles from a dataset file (JSONL or Parquet) or a time range of the stream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from govloop.config import Settings
from govloop.errors import ConfigError, EventError
from govloop.judging.features import observed_features
from govloop.schemas import Prediction, decode, describe_validation_error
from govloop.stats.profile import Profile, Row

__all__ = ["profile_from_file", "profile_from_records", "profile_from_stream"]


def _row(record: dict[str, Any], model: str, version: str, where: str) -> Row:
    """Features of one record: a prediction event, or a flat row of feature values."""
    if "request_id" in record and "model" in record:
        try:
            return observed_features(Prediction.model_validate(record))
        except ValidationError as exc:
            raise ConfigError(f"{where}: {describe_validation_error(exc)}") from exc
    features = {k: v for k, v in record.items() if isinstance(v, str | int | float | bool)}
    p = Prediction(
        model=model, model_version=version, request_id="reference", features=features, score=0.0
    )
    numeric, categorical = observed_features(p)
    numeric.pop("output.score", None)
    return numeric, categorical


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ConfigError("reading Parquet needs pyarrow: pip install pyarrow") from exc
        for i, record in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path}:row {i + 1}", record
        return
    with path.open() as lines:
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{i}: not JSON: {exc}") from exc
            if not isinstance(record, dict):
                raise ConfigError(f"{path}:{i}: expected a JSON object")
            yield f"{path}:{i}", record


def profile_from_records(
    records: Iterator[tuple[str, dict[str, Any]]], model: str, version: str
) -> Profile:
    profile = Profile()
    batch: list[Row] = []
    for where, record in records:
        batch.append(_row(record, model, version, where))
        if len(batch) >= 10000:
            profile.update_many(batch)
            batch = []
    profile.update_many(batch)
    return profile


def profile_from_file(path: Path, model: str, version: str) -> Profile:
    """The profile of every record in a JSONL or Parquet file; errors name the line."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    profile = profile_from_records(_records(path), model, version)
    if profile.n == 0:
        raise ConfigError(f"{path}: no records")
    return profile


def profile_from_stream(
    settings: Settings,
    model: str,
    version: str,
    since: datetime,
    until: datetime,
    idle: float = 2.0,
    timeout: float = 300.0,
) -> Profile:
    """The profile of a model version's predictions with ``since <= ts < until``.

    Reads the predictions topic from the start of what the broker retains until
    nothing new arrives for ``idle`` seconds, keeping the version's events whose
    own timestamp lies in the range (record timestamps are when they were
    produced, which need not be when they happened).  Invalid records are
    skipped: the stream worker has sent them to the dead-letter topic.
    """
    from kafka import KafkaConsumer, TopicPartition

    if settings.kafka is None:
        raise ConfigError("no broker configured: set GOVLOOP_KAFKA or run `govloop up`")
    topic = settings.topic("predictions")
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ConfigError(f"topic {topic} does not exist")
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        profile = Profile()
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle:
            if time.monotonic() > deadline:
                raise ConfigError(f"reading {topic} took longer than {timeout:.0f}s")
            batch: list[Row] = []
            for records in consumer.poll(timeout_ms=200, max_records=5000).values():
                quiet_since = time.monotonic()
                for record in records:
                    try:
                        event = decode("predictions", record.value)
                    except EventError:
                        continue
                    if (
                        isinstance(event, Prediction)
                        and event.model == model
                        and event.model_version == version
                        and since <= event.ts < until
                    ):
                        batch.append(observed_features(event))
            profile.update_many(batch)
        return profile
    finally:
        consumer.close()
