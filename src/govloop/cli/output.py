"""What the CLI's command groups share: one rich console, errors to stderr with a
clear exit code, the ``--json`` option, a session on the configured database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from govloop.schemas.base import as_utc

__all__ = ["JsonOption", "as_utc", "console", "fail", "open_session", "stderr"]

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

console = Console()
stderr = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    stderr.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@contextmanager
def open_session() -> Iterator[Any]:
    """A session on the configured database, its tables created; the engine disposed after."""
    from sqlmodel import Session

    from govloop.cli.services import resolved_settings
    from govloop.stores.sql import create_engine_for, init_db

    engine = create_engine_for(resolved_settings())
    try:
        init_db(engine)
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()
