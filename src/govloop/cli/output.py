"""Shared CLI output: one rich console, errors to stderr with a clear exit code."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

__all__ = ["console", "fail", "stderr"]

console = Console()
stderr = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    stderr.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)
