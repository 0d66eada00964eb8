"""The ``govloop`` command: one typer sub-app per command group.

Heavy imports (faust, numpy, scikit-learn) happen inside commands, so
``govloop --help`` is instant.  Every user error is one ``error: ...`` line on
stderr with exit code 2 (:class:`OneLineErrors`); an exception that is not a
:class:`~govloop.errors.GovloopError` is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from govloop.cli import (
    audit,
    baseline,
    deadletter,
    demo,
    drift,
    gate,
    gate_log,
    repro,
    schemas,
    services,
    state,
    status,
)
from govloop.cli.output import fail
from govloop.errors import GovloopError


class OneLineErrors(TyperGroup):
    """The root command: usage errors and govloop's own errors as one line, exit code 2.

    typer prints a usage error as a framed panel over several lines; scripts
    and CI logs want the one line every other govloop error is.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.TyperException as exc:  # typer's usage errors (its own click's)
            if type(exc).__name__ == "NoArgsIsHelpError":
                code = 2  # the help was printed: `govloop` alone asks for it
            else:
                code = _one_line(exc.format_message(), exc.exit_code)
        except typer.Abort:
            code = _one_line("aborted", 1)
        except GovloopError as exc:  # a command that did not map it: still one line
            code = _one_line(str(exc), 2)
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            raise SystemExit(code)
        return code


def _one_line(message: str, code: int) -> int:
    """Print ``error: message`` and return ``code`` (the exit that :func:`fail` raises)."""
    try:
        fail(message, code)
    except typer.Exit as exit_:
        return exit_.exit_code


app = typer.Typer(
    name="govloop",
    cls=OneLineErrors,
    help="The governance and feedback loop for models in production.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"govloop {version('govloop')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """The governance and feedback loop for models in production."""


app.command("up")(services.up)
app.command("worker")(services.worker)
app.command("demo")(demo.demo)
app.command("status")(status.status)
app.command("models")(status.models)
app.add_typer(services.topics_app, name="topics")
app.add_typer(schemas.app, name="schemas")
app.add_typer(drift.app, name="drift")
app.add_typer(drift.metrics_app, name="metrics")
gate.app.command("log")(gate_log.log)
app.add_typer(gate.app, name="gate")
app.add_typer(baseline.app, name="baseline")
app.add_typer(audit.app, name="audit")
app.add_typer(repro.app, name="repro")
app.add_typer(deadletter.app, name="deadletter")
app.add_typer(state.app, name="state")

__all__ = ["OneLineErrors", "app", "main"]


def main() -> None:
    app()
