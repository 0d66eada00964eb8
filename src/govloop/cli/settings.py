"""The settings a CLI command runs with: resolved once, at the command's edge."""

from __future__ import annotations

from govloop.config import Settings

__all__ = ["environment_settings", "resolved_settings"]


def environment_settings() -> Settings:
    """Settings from the environment alone: for ``up`` and ``demo``, which start what is
    not configured themselves (a running ``govloop up`` is not theirs to join)."""
    return Settings()


def resolved_settings() -> Settings:
    """Settings from the environment, completed by a running ``govloop up`` if any.

    Each command calls this once and passes the result down.
    """
    # here, not at the top: `govloop --help` loads no Redis client (tests/test_cli.py)
    from govloop.runtime import discover

    return discover(Settings())
