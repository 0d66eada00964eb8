"""The ``govloop`` command: one typer sub-app per command group.

Heavy imports (faust, numpy, scikit-learn) happen inside commands, so
``govloop --help`` is instant.
"""

from __future__ import annotations

import typer

from govloop.cli import audit, baseline, demo, drift, gate, repro, schemas, services

app = typer.Typer(
    name="govloop",
    help="The governance and feedback loop for models in production.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("up")(services.up)
app.command("worker")(services.worker)
app.command("demo")(demo.demo)
app.add_typer(services.topics_app, name="topics")
app.add_typer(schemas.app, name="schemas")
app.add_typer(drift.app, name="drift")
app.add_typer(drift.metrics_app, name="metrics")
app.add_typer(gate.app, name="gate")
app.add_typer(baseline.app, name="baseline")
app.add_typer(audit.app, name="audit")
app.add_typer(repro.app, name="repro")

__all__ = ["app", "main"]


def main() -> None:
    app()
