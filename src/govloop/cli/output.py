"""What the CLI's command groups share: one rich console, errors to stderr with a
clear exit code, the ``--json`` option, a session on the configured database, and
:func:`shown`, through which every user string passes on its way to the terminal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from govloop.config import Settings
from govloop.redact import redact_url, scrub, secrets_in
from govloop.schemas.base import as_utc

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlmodel import Session

__all__ = [
    "JsonOption",
    "as_utc",
    "console",
    "fail",
    "missing_sqlite_file",
    "open_session",
    "redact_url",
    "shown",
    "stderr",
]

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

console = Console()
stderr = Console(stderr=True)


def shown(text: object) -> str:
    """``text`` as the terminal must show it: literally.

    A model name, version, policy name or reason comes from whoever sent the
    event or wrote the file; rich markup in it (``[bold]``) is escaped and
    control characters (ANSI escapes, newlines) are written as their Python
    escapes (``\\x1b``, ``\\n``), so no user string can restyle the output,
    move the cursor or forge an extra line.

    >>> from rich.text import Text
    >>> print(Text.from_markup(shown("[bold]m[/]\\x1b[31m\\nv")).plain)
    [bold]m[/]\\x1b[31m\\nv
    """
    literal = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return escape(literal)


def fail(message: str, code: int = 2) -> NoReturn:
    """``error: message`` on stderr as one line (never wrapped, never read as markup); exit
    with ``code``."""
    stderr.print(f"[bold red]error:[/] {shown(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _engine(settings: Settings) -> Engine:
    """The engine of ``settings``, or a one-line error naming what is wrong with the URL."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from govloop.stores.sql import create_engine_for

    try:
        return create_engine_for(settings)
    except OSError as exc:  # a SQLite file whose directory cannot be made
        fail(f"database {redact_url(settings.database_url)}: {exc.strerror or exc}")
    except (NoSuchModuleError, ImportError) as exc:  # NoSuchModuleError is an ArgumentError
        scheme = settings.database_url.partition(":")[0]
        fail(f"GOVLOOP_DB_URL: no database driver for {scheme!r} ({_first_line(exc)})")
    except ArgumentError:
        fail(
            "GOVLOOP_DB_URL is not a database URL "
            "(expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB)"
        )


def _first_line(exc: BaseException) -> str:
    """A database error's own message: the driver's first line, without SQLAlchemy's
    background link."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def _unsecret(exc: BaseException, settings: Settings) -> str:
    """The error's first line, with the URL's secrets masked should a driver echo them."""
    url = settings.database_url
    return redact_url(scrub(_first_line(exc), secrets_in(url)))


def missing_sqlite_file(settings: Settings) -> Path | None:
    """The SQLite file of ``settings`` when it does not exist (connecting would create it)."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    url = settings.database_url
    if not url.startswith("sqlite"):
        return None
    try:
        path = make_url(url).database
    except ArgumentError:
        return None
    if not path or path == ":memory:" or Path(path).exists():
        return None
    return Path(path)


@contextmanager
def open_session(settings: Settings, must_exist: bool = False) -> Iterator[Session]:
    """A session on the database of ``settings``, its tables created; the engine disposed after.

    A database that cannot be reached or used (a bad URL, no server, a locked
    or unreadable file) ends the command with one line naming it, its
    password left out.  With ``must_exist``, so does a SQLite file that is
    not there: a command that only reads (``audit verify``) on a mistyped
    path must not report on a database it has just created empty.
    """
    # here, not at the top: `govloop --help` loads no SQL library (tests/test_cli.py)
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session

    from govloop.stores.sql import init_db

    missing = missing_sqlite_file(settings) if must_exist else None
    if missing is not None:
        fail(f"no database at {missing} (GOVLOOP_DB_URL, or GOVLOOP_HOME for the default)")
    engine = _engine(settings)
    try:
        init_db(engine)
        with Session(engine) as session:
            yield session
    except SQLAlchemyError as exc:
        fail(f"database {redact_url(settings.database_url)}: {_unsecret(exc, settings)}")
    finally:
        engine.dispose()
