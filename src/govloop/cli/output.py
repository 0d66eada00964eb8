"""What the CLI's command groups share: one rich console, errors to stderr with a
clear exit code, the ``--json`` option, a session on the configured database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from govloop.config import Settings
from govloop.schemas.base import as_utc

if TYPE_CHECKING:
    from sqlmodel import Session

__all__ = ["JsonOption", "as_utc", "console", "fail", "open_session", "stderr"]

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

console = Console()
stderr = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """``error: message`` on stderr as one line (never wrapped, never read as markup); exit
    with ``code``."""
    stderr.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def open_session(settings: Settings) -> Iterator[Session]:
    """A session on the database of ``settings``, its tables created; the engine disposed after."""
    # here, not at the top: `govloop --help` loads no SQL library (tests/test_cli.py)
    from sqlmodel import Session

    from govloop.stores.sql import create_engine_for, init_db

    engine = create_engine_for(settings)
    try:
        init_db(engine)
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()
