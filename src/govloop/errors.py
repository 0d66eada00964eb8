"""govloop's one error tree.

    GovloopError
    ├── ConfigError          settings that cannot work (bad URL, missing file)
    ├── EventError           an event that fails its contract (-> dead-letter topic)
    ├── PolicyError          a gate policy that cannot be loaded or evaluated
    └── RuntimeUnavailable   a broker, Redis or database that does not answer

Third-party errors are mapped to the most specific of these where they enter
govloop (``raise ... from exc``); none is swallowed.
"""

from __future__ import annotations

__all__ = ["ConfigError", "EventError", "GovloopError", "PolicyError", "RuntimeUnavailable"]


class GovloopError(Exception):
    """Root of every error govloop raises on purpose."""


class ConfigError(GovloopError):
    """A setting or file that govloop cannot work with."""


class EventError(GovloopError, ValueError):
    """An event that does not satisfy its schema; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PolicyError(GovloopError, ValueError):
    """A gate policy that cannot be loaded or evaluated."""


class RuntimeUnavailable(GovloopError):
    """A service govloop needs (broker, Redis, database) did not answer."""
