"""Workers: the long-running processes beside the stream worker that faust does not run.

The sample selector, the A/B analysis and the dataset builder each do one
unit of work per step (read a batch, decide, write) and share one bounded
run loop, :func:`~govloop.workers.loop.run_loop`: it stops after
``max_items``, after ``timeout``, on SIGTERM or SIGINT, or when a
``threading.Event`` is set, and always between two steps, never inside one.

Workers sit beside :mod:`govloop.streams`: they may import judging, repro,
audit, stores, gates, stats, schemas and config, never the CLI or the
streams package.
"""

from govloop.workers.loop import RunResult, Step, StopReason, idle_sleeps, run_loop

__all__ = ["RunResult", "Step", "StopReason", "idle_sleeps", "run_loop"]
