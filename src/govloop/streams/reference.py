"""Reference profiles from a dataset file (JSONL or Parquet)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from govloop.errors import ConfigError
from govloop.schemas import Prediction, describe_validation_error
from govloop.stats.profile import Profile, Row
from govloop.streams.features import observed_features

__all__ = ["profile_from_file", "profile_from_records"]


def _row(record: dict[str, Any], model: str, version: str, where: str) -> Row:
    """Features of one record: a prediction event, or a flat row of feature values."""
    if "request_id" in record and "model" in record:
        try:
            return observed_features(Prediction.model_validate(record))
        except ValidationError as exc:
            raise ConfigError(f"{where}: {describe_validation_error(exc)}") from exc
    features = {k: v for k, v in record.items() if isinstance(v, str | int | float | bool)}
    p = Prediction(model=model, model_version=version, request_id="reference",
                   features=features, score=0.0)
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


def profile_from_records(records: Iterator[tuple[str, dict[str, Any]]], model: str,
                         version: str) -> Profile:
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
