"""Create govloop's topics explicitly (auto-created topics get the broker's defaults)."""

from __future__ import annotations

import contextlib
import time

from govloop.config import Settings
from govloop.errors import RuntimeUnavailable
from govloop.schemas.registry import TOPICS

__all__ = ["ensure_topics", "wait_for_broker"]


def wait_for_broker(bootstrap: str, timeout: float = 30.0) -> None:
    """Block until the broker answers a metadata request, or raise RuntimeUnavailable."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
            admin.list_topics()
            admin.close()
            return
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(0.2)
    raise RuntimeUnavailable(f"Kafka at {bootstrap} did not answer within {timeout:.0f}s: {last}")


def ensure_topics(settings: Settings, names: list[str] | None = None) -> list[str]:
    """Create the registry's topics (or ``names``) that do not exist yet; return those created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    if settings.kafka is None:
        raise RuntimeUnavailable("no Kafka configured (GOVLOOP_KAFKA) and none started")
    wanted = [settings.topic(n) for n in (names or list(TOPICS))]
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka, request_timeout_ms=10000)
    except KafkaError as exc:
        raise RuntimeUnavailable(f"Kafka at {settings.kafka}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            new = [NewTopic(t, settings.partitions, settings.replication) for t in missing]
            # another process creating them at the same moment is what we wanted anyway
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
        return missing
    finally:
        admin.close()
