"""Settings: one frozen object, read from ``GOVLOOP_*`` variables at the edge.

The CLI and the SDK build a :class:`Settings` once and pass it down; nothing
below them reads the environment.  Unset service addresses mean "start the
embedded one" (see :mod:`govloop.runtime`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Every knob govloop has; each maps to ``GOVLOOP_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="GOVLOOP_", frozen=True, extra="ignore")

    kafka: str | None = Field(
        default=None,
        description="Kafka bootstrap servers (host:port,...). Unset: start the embedded broker.",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis URL. Unset: use 127.0.0.1:6379 if it answers, else start a local one.",
    )
    db_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL of the system of record. Unset: SQLite under GOVLOOP_HOME.",
    )
    git_commit: str | None = Field(
        default=None,
        description="The commit recorded in manifests. Unset: the checkout's HEAD, if any.",
    )
    home: Path = Field(default=Path(".govloop"), description="Directory for local state.")
    topic_prefix: str = Field(default="govloop.", description="Prefix of every topic name.")
    partitions: int = Field(default=4, ge=1, description="Partitions of each created topic.")
    replication: int = Field(default=1, ge=1, description="Replication factor of created topics.")
    window_seconds: float = Field(default=60.0, gt=0, description="Tumbling metric window.")
    sliding_windows: int = Field(
        default=5,
        ge=1,
        description="Tumbling windows a sliding snapshot spans; one is published as each "
        "tumbling window closes (1: no sliding snapshots).",
    )
    segment_slices: int = Field(
        default=64,
        ge=0,
        description="Distinct segment values given their own snapshot per model version and "
        "window; the rest are counted as `<attribute>=__other__` (0: no segment snapshots).",
    )
    window_grace_seconds: float = Field(
        default=5.0, ge=0, description="Event-time lateness a window waits for before closing."
    )
    allowed_lateness_seconds: float = Field(
        default=300.0,
        ge=0,
        description="An event whose window has closed amends it (a new snapshot revision) "
        "while its partition's event time is at most this far past the window's end; "
        "later ones are counted late per window and in no snapshot.",
    )
    idle_close_seconds: float = Field(
        default=30.0, gt=0, description="Close open windows after this long with no input."
    )
    join_horizon_seconds: float = Field(
        default=86400.0, gt=0, description="How long a prediction waits for its feedback."
    )
    dedupe_seconds: float = Field(
        default=900.0, gt=0, description="How long an event_id is remembered to drop duplicates."
    )
    reference_events: int = Field(
        default=1000,
        ge=0,
        description="Without a stored reference, the first N events of a version become it "
        "(0: wait for `govloop drift reference set`).",
    )
    calibration_events: int = Field(
        default=1000,
        ge=0,
        description="The first N predictions of a version are its calibration period: the "
        "labels that arrive in their windows fit the map of estimated_accuracy "
        "(0: no calibration, estimated_accuracy stays None).",
    )
    calibration_min_labels: int = Field(
        default=30,
        ge=1,
        description="Labels a calibration map needs, in all and per block of confidence bins.",
    )
    drift_alpha: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="False-alarm budget per evaluation round, shared by every feature of "
        "every model (Holm: P(any false drift alert in a round) <= alpha).",
    )
    drift_budget: Literal["holm", "bh"] = Field(
        default="holm", description="How the budget is spent: holm (FWER) or bh (FDR)."
    )
    drift_recover_windows: int = Field(
        default=2, ge=1, description="Clean windows before a drifting feature recovers."
    )
    drift_min_count: int = Field(
        default=50, ge=1, description="Values a feature needs in a window to be tested."
    )
    drift_false_alarm_days: float = Field(
        default=30.0,
        gt=0,
        allow_inf_nan=False,
        description="Expected days between two false drift alerts of the streaming detectors, "
        "over the whole deployment. Shared equally by its N detectors (every watched feature "
        "of every model version, and each outcome stream): a detector that sees r values per "
        "second (event time) is calibrated to 1 / (days * 86400 * N * r) false alarms per "
        "value, rounded down to a power of two and recalibrated when N or r change it; "
        "assumes independent detectors and steady traffic.",
    )
    concept_reference_outcomes: int = Field(
        default=5000,
        ge=10,
        description="Join outcomes of a model version's stream (errors, negative feedback) "
        "whose rate is the concept-drift reference; nothing is alarmed before.",
    )
    policies: str = Field(
        default="", description="Gate policy files or directories, comma-separated."
    )
    gate_recover_windows: int = Field(
        default=2,
        ge=1,
        description="Consecutive better windows before an online gate's state improves "
        "(a worse outcome takes effect at once).",
    )
    session_timeout_seconds: float = Field(
        default=8.0, gt=0, description="Consumer-group session timeout (6-10 s suits Tansu)."
    )
    batch_size: int = Field(default=1000, ge=1, description="Input records per worker batch.")
    sdk_buffer: int = Field(default=10000, ge=1, description="Events the SDK buffers at most.")
    worker_web_port: int | None = Field(
        default=None, description="faust web port of a worker; unset disables its web server."
    )
    log_level: str = Field(default="warn", description="Worker log level.")
    max_event_age_seconds: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="An input event whose ts is further in the past is dead-lettered. "
        "Unset: the join horizon (0: no bound).",
    )
    max_future_seconds: float = Field(
        default=300.0,
        ge=0,
        allow_inf_nan=False,
        description="An input event whose ts is further in the future is dead-lettered "
        "(0: no bound).",
    )
    max_event_bytes: int = Field(
        default=1024 * 1024,
        ge=1,
        description="A record value larger than this is dead-lettered without being parsed.",
    )

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_a_topic_name(cls, value: str) -> str:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if not value or set(value) - allowed:
            raise ValueError("topic_prefix may hold only letters, digits, '.', '_' and '-'")
        return value

    def topic(self, name: str) -> str:
        """Full topic name of a registry entry: ``settings.topic("predictions")``."""
        return f"{self.topic_prefix}{name}"

    @property
    def worker_group(self) -> str:
        """The consumer group of the stream workers: ``govloop.`` gives ``govloop-worker``."""
        return self.topic_prefix.rstrip(".") + "-worker"

    @property
    def database_url(self) -> str:
        """The effective database URL (SQLite under ``home`` when unset)."""
        if self.db_url is not None:
            return self.db_url.get_secret_value()
        return f"sqlite:///{self.home / 'govloop.db'}"

    @property
    def redis_prefix(self) -> str:
        """Key prefix for Redis state, so two deployments on one Redis never mix."""
        return self.topic_prefix

    def as_env(self) -> dict[str, str]:
        """The ``GOVLOOP_*`` variables that reproduce these settings in a child process."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"GOVLOOP_{name.upper()}"] = str(value)
        return env
