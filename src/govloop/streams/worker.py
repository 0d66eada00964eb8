"""Run one stream worker process: ``run_worker(settings)`` blocks until a signal."""

from __future__ import annotations

from govloop.config import Settings

__all__ = ["run_worker"]


def run_worker(settings: Settings) -> None:
    """Run the faust worker for ``settings`` until SIGINT/SIGTERM; exit non-zero on a crash."""
    import faust

    from govloop.streams.app import create_app

    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
