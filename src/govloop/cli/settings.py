"""The settings a CLI command runs with: resolved once, at the command's edge.

A ``GOVLOOP_*`` variable that does not hold a valid value ends the command
with one line naming the variable and what is wrong, never its value (it
may be a secret).
"""

from __future__ import annotations

from pydantic import ValidationError

from govloop.cli.output import fail
from govloop.config import Settings

__all__ = ["environment_settings", "resolved_settings", "setting_error"]


def setting_error(exc: ValidationError) -> str:
    """One line for the invalid variables: ``GOVLOOP_WINDOW_SECONDS: Input should be ...``."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    line = f"GOVLOOP_{field.upper()}: {first['msg']}" if field else first["msg"]
    return line + (f" (and {len(errors) - 1} more invalid settings)" if len(errors) > 1 else "")


def environment_settings() -> Settings:
    """Settings from the environment alone: for ``up`` and ``demo``, which start what is
    not configured themselves (a running ``govloop up`` is not theirs to join)."""
    try:
        return Settings()
    except ValidationError as exc:
        fail(setting_error(exc))


def resolved_settings() -> Settings:
    """Settings from the environment, completed by a running ``govloop up`` if any.

    Each command calls this once and passes the result down.
    """
    # here, not at the top: `govloop --help` loads no Redis client (tests/test_cli.py)
    from govloop.runtime import discover

    return discover(environment_settings())
