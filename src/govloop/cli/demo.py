"""``govloop demo``: the whole loop against a simulated production service, live.

Starts what ``govloop up`` starts (under a fresh topic prefix, so earlier runs
never mix in), runs one stream worker, and replays fourteen minutes of a real
scikit-learn classifier's traffic at high speed through the SDK, with the
inputs drifting from minute seven.  The table fills in as the worker publishes
each window's metrics and the gate's verdict.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from govloop.cli.output import console, fail, redact_url, shown
from govloop.cli.services import prepare_stores, stop_processes
from govloop.cli.settings import environment_settings

#: How a broken rule reads: ``accuracy 0.788 < 0.85`` for a rule ``accuracy >= 0.85``.
VIOLATED = {">=": "<", "<=": ">", ">": "<=", "<": ">=", "==": "!=", "!=": "=="}
OUTCOME_STYLE = {
    "pass": "bold green",
    "warn": "bold yellow",
    "fail": "bold red",
    "inconclusive": "dim",
}


@dataclass
class Board:
    """What the demo has seen so far, one row per window."""

    start: datetime
    drift_minute: int
    model: str = "cancer-screen 2.3.0"
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    emitted: int = 0
    feedback: int = 0
    dropped: int = 0
    last_snapshot: float = 0.0  # monotonic time the newest snapshot arrived

    def minute_of(self, when: datetime) -> int:
        return int((when - self.start).total_seconds() // 60)

    def add_snapshot(self, snap: Any) -> None:
        if snap.window != "tumbling" or snap.segment or snap.variant is not None:
            return  # the table shows each minute's overall snapshot
        self.rows.setdefault(self.minute_of(snap.window_start), {})["snap"] = snap
        self.last_snapshot = time.monotonic()

    def add_gate(self, gate: Any) -> None:
        """The gates topic carries changes of the gate's state (hysteresis)."""
        if gate.window_start is not None:
            self.rows.setdefault(self.minute_of(gate.window_start), {})["gate"] = gate

    def state_at(self, minute: int) -> str | None:
        """The gate's state after the window of ``minute``: its latest change up to there."""
        changes = [m for m, r in self.rows.items() if "gate" in r and m <= minute]
        return self.rows[max(changes)]["gate"].outcome if changes else None

    def complete(self, minutes: int) -> bool:
        """Every window has its snapshot, and a moment has passed for the gate to judge it."""
        snaps = sum(1 for r in self.rows.values() if "snap" in r)
        return snaps >= minutes and time.monotonic() - self.last_snapshot > 2.0

    def add_drift(self, alert: Any) -> None:
        # a streaming detector's alert is stamped with the event that raised it (it has
        # details); a windowed one with its window's end
        minute = self.minute_of(alert.ts) - (alert.details is None)
        self.rows.setdefault(minute, {}).setdefault("drift", []).append(alert)

    def drift_alerts(self) -> list[tuple[int, Any]]:
        return sorted(
            ((m, a) for m, r in self.rows.items() for a in r.get("drift", [])),
            key=lambda item: (item[0], item[1].feature),
        )

    def gates(self) -> list[tuple[int, str]]:
        """The gate's changes of state: (minute, new outcome)."""
        return sorted((m, r["gate"].outcome) for m, r in self.rows.items() if "gate" in r)

    def table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"{self.model} — one row per 1-minute window", title_justify="left")
        for name in (
            "min",
            "inputs",
            "preds",
            "labelled",
            "accuracy",
            "feedback",
            "p95 ms",
            "drift",
            "gate",
        ):
            table.add_column(name, justify="left" if name == "inputs" else "right", no_wrap=True)
        table.add_column("why", justify="left", overflow="fold")
        for minute in sorted(self.rows):
            row = self.rows[minute]
            snap, gate = row.get("snap"), row.get("gate")
            if snap is None:
                continue
            drifting = minute >= self.drift_minute
            why = (
                ""
                if gate is None
                else ", ".join(
                    f"{r.metric} {r.observed:.3g} {VIOLATED[r.op]} {r.threshold:g}"
                    for r in gate.rules
                    if r.outcome != "pass" and r.observed is not None
                )
            )
            table.add_row(
                str(minute),
                "[yellow]drifting[/]" if drifting else "normal",
                str(snap.count),
                str(snap.labelled_count),
                "-" if snap.accuracy is None else f"{snap.accuracy:.3f}",
                "-" if snap.feedback_rate is None else f"{snap.feedback_rate:.0%}",
                "-" if snap.latency_p95_ms is None else f"{snap.latency_p95_ms:.0f}",
                _drift_cell(row.get("drift", [])),
                _gate_cell(gate, self.state_at(minute)),
                why,
            )
        return table


def _gate_cell(change: Any, state: str | None) -> str:
    """A change of the gate's state in bold with an arrow; otherwise the state it is in, dim."""
    if change is not None:
        return f"[{OUTCOME_STYLE[change.outcome]}]→ {change.outcome}[/]"
    return "…" if state is None else f"[dim]{state}[/]"


def _drift_cell(alerts: list[Any]) -> str:
    """New drift alerts of a window: how many features started drifting."""
    started = [a for a in alerts if a.state == "drift"]
    n = len(started)
    return f"[bold magenta]+{n} feature{'s' if n > 1 else ''}[/]" if started else ""


def _await_detectors(settings: Any, service: Any, timeout: float = 90.0) -> None:
    """Wait until the worker has calibrated the version's drift detectors (it does so when
    the reference is stored: a simulation per feature, seconds each), so that the demo's
    pace does not outrun them."""
    import redis

    from govloop.stores.redis import keys

    assert settings.redis_url is not None
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    key = keys.calibrations(
        settings.redis_prefix, f"{service.model_name}\x1f{service.model_version}"
    )
    deadline = time.monotonic() + timeout
    try:
        while not client.hlen(key) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        client.close()


def _emit_traffic(
    client: Any,
    service: Any,
    board: Board,
    pace: float,
    errors: list[BaseException],
    calibrated: Any = None,
) -> None:
    try:
        for tick in service.ticks():
            if tick.drifted and calibrated is not None:
                calibrated()  # the drift detectors are ready before the drift begins
                calibrated = None
            began = time.monotonic()
            for kwargs in tick.predictions:
                client.emit_prediction(**kwargs)
            for kwargs in tick.feedback:
                client.emit_feedback(**kwargs)
            client.flush(10.0)
            board.emitted += len(tick.predictions)
            board.feedback += len(tick.feedback)
            time.sleep(max(0.0, pace - (time.monotonic() - began)))
    except BaseException as exc:  # reported by the main thread
        errors.append(exc)


#: Requests the simulated service answers per simulated minute.
REQUESTS_PER_MINUTE = 150


def demo(
    minutes: Annotated[int, typer.Option(help="Simulated minutes of traffic.", min=4)] = 14,
    drift_minute: Annotated[int, typer.Option(help="Minute the inputs start drifting.")] = 7,
    pace: Annotated[float, typer.Option(help="Wall seconds per simulated minute.")] = 2.0,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 110.0,
) -> None:
    """Run the whole loop against a simulated production service, live."""
    from govloop.demo import POLICY_FILE
    from govloop.runtime import LocalStack
    from govloop.stores.redis.windows import clear_state

    began = time.monotonic()
    console.rule("[bold]govloop demo")
    console.print(
        "A scikit-learn classifier serves traffic through the govloop SDK. govloop joins\n"
        "each prediction with its late feedback, publishes per-minute metrics, and a\n"
        f"quality gate ([cyan]{POLICY_FILE.name}[/]: accuracy >= 0.85, warn on drift) judges\n"
        "every window.  The gate's state changes at once for the worse, and for the better\n"
        "only after two good windows.\n"
        f"From minute {drift_minute} the inputs drift. Watch the gate.\n"
    )
    settings = environment_settings().model_copy(
        update={
            "topic_prefix": f"demo{uuid.uuid4().hex[:8]}.",
            "window_seconds": 60.0,
            "window_grace_seconds": 2.0,
            "idle_close_seconds": 3.0,
            "join_horizon_seconds": 900.0,
            "policies": str(POLICY_FILE),
            # the reference: the traffic of the minutes before the drift but one (its
            # window's close stores it, and the drift detectors start the minute after)
            "reference_events": max(100, (drift_minute - 2) * REQUESTS_PER_MINUTE),
            # one partition: each streaming drift detector sees all of the traffic
            "partitions": 1,
        }
    )
    stack = LocalStack(settings, write_runtime_file=False, prepare=prepare_stores)
    worker = None
    try:
        with console.status("starting broker, Redis and SQLite..."):
            settings = stack.start()
        info = stack.describe()
        console.print(f"[green]✓[/] Kafka  {shown(info['kafka'])} ({info['kafka_source']})")
        redis_where = shown(redact_url(info["redis_url"]))
        console.print(f"[green]✓[/] Redis  {redis_where} ({info['redis_source']})")
        console.print(f"[green]✓[/] SQL    {shown(redact_url(settings.database_url))}")
        worker = _start_worker(settings)
        console.print(
            f"[green]✓[/] stream worker pid {worker.pid} (log: {settings.home / 'demo-worker.log'})"
        )
        board, service = _prepare(settings, minutes, drift_minute)
        ok = _run(settings, board, service, pace, minutes, began + timeout)
        _summary(settings, board, service, time.monotonic() - began)
    finally:
        if worker is not None:
            stop_processes([worker])
        if settings.redis_url is not None:
            clear_state(settings.redis_url.get_secret_value(), settings.redis_prefix)
        stack.stop()
    if not ok:
        fail("the gate did not go from pass to fail; see the worker log", code=1)


def _start_worker(settings: Any) -> Any:
    import os
    import subprocess
    import sys

    log = open(settings.home / "demo-worker.log", "wb")  # noqa: SIM115 - child keeps it
    with log:
        return subprocess.Popen(
            [sys.executable, "-m", "govloop", "worker"],
            env=os.environ | settings.as_env(),
            stdout=log,
            stderr=log,
        )


def _prepare(settings: Any, minutes: int, drift_minute: int) -> tuple[Board, Any]:
    from govloop.demo import SimulatedService

    with console.status("training the classifier (scikit-learn breast-cancer data)..."):
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        start = now - timedelta(minutes=minutes + 1)
        # each run is a new build of the model: its drift and gate state start afresh,
        # whatever an earlier run left in the SQL store
        build = settings.topic_prefix.removeprefix("demo").rstrip(".")
        service = SimulatedService(
            start,
            minutes=minutes,
            drift_minute=drift_minute,
            requests_per_minute=REQUESTS_PER_MINUTE,
            model_version=f"2.3.0+{build}",
        )
    console.print(
        f"[green]✓[/] model {service.model_name} {service.model_version} trained: "
        f"hold-out accuracy {service.holdout_accuracy:.3f}\n"
    )
    return Board(
        start=start,
        drift_minute=drift_minute,
        model=f"{service.model_name} {service.model_version}",
    ), service


def _run(
    settings: Any, board: Board, service: Any, pace: float, minutes: int, deadline: float
) -> bool:
    from kafka import KafkaConsumer
    from rich.live import Live

    from govloop.client import Govloop
    from govloop.schemas import decode

    consumer = KafkaConsumer(
        settings.topic("metrics"),
        settings.topic("gates"),
        settings.topic("drift"),
        bootstrap_servers=settings.kafka,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    client = Govloop.connect(settings)
    errors: list[BaseException] = []
    sender = threading.Thread(
        target=_emit_traffic,
        args=(client, service, board, pace, errors, lambda: _await_detectors(settings, service)),
        daemon=True,
    )
    sender.start()
    short = {settings.topic(n): n for n in ("metrics", "gates", "drift")}
    # a live table on a terminal; one line per window when the output is a log
    live = (
        Live(board.table(), console=console, refresh_per_second=4)
        if console.is_terminal
        else contextlib.nullcontext()
    )
    printed: set[int] = set()
    try:
        with live:
            while time.monotonic() < deadline and not errors:
                for batch in consumer.poll(timeout_ms=250).values():
                    for message in batch:
                        event = decode(short[message.topic], message.value)
                        kind = short[message.topic]
                        if kind == "metrics":
                            board.add_snapshot(event)
                        elif kind == "gates":
                            board.add_gate(event)
                        else:
                            board.add_drift(event)
                if isinstance(live, Live):
                    live.update(board.table())
                else:
                    printed |= _print_new(board, printed)
                if board.complete(minutes):
                    if not isinstance(live, Live):
                        _print_new(board, printed, final=True)
                    break
    finally:
        consumer.close()
        client.close()
        board.dropped = client.stats.dropped
    if errors:
        raise errors[0]
    outcomes = [o for _, o in board.gates()]
    return "pass" in outcomes and "fail" in outcomes[outcomes.index("pass") :]


def _print_new(board: Board, printed: set[int], final: bool = False) -> set[int]:
    """One line per window, once three later windows' snapshots show it has been judged."""
    snapped = {m for m, r in board.rows.items() if "snap" in r}
    done = snapped if final else {m for m in snapped if m + 3 in snapped}
    for minute in sorted(done - printed):
        snap = board.rows[minute]["snap"]
        acc = "-" if snap.accuracy is None else f"{snap.accuracy:.3f}"
        drift = _drift_cell(board.rows[minute].get("drift", []))
        gate = _gate_cell(board.rows[minute].get("gate"), board.state_at(minute))
        console.print(
            f"minute {minute:2d}: {snap.count} predictions, accuracy {acc}, "
            f"gate {gate}" + (f", drift {drift}" if drift else "")
        )
    return done


def _summary(settings: Any, board: Board, service: Any, elapsed: float) -> None:
    from rich.panel import Panel

    judged = _judged(settings, board)
    changes = board.gates()
    first_fail = next((m for m, o in changes if o == "fail"), None)
    lines = [
        f"emitted {board.emitted} predictions and {board.feedback} feedback events "
        f"({board.dropped} dropped) in {elapsed:.0f} s",
        f"{len(judged)} windows judged: "
        + ", ".join(f"{judged.count(o)} {o}" for o in OUTCOME_STYLE if o in judged)
        + "; the gate changed state "
        f"{len(changes)} times: " + ", ".join(f"{o} at minute {m}" for m, o in changes),
        f"inputs began drifting at minute {board.drift_minute}; "
        + (
            f"the gate failed first at minute {first_fail}"
            if first_fail is not None
            else "the gate never failed"
        ),
        f"gate changes are in the [cyan]{settings.topic('gates')}[/] topic; every result, "
        f"its manifest and the audit ledger in SQL ({shown(redact_url(settings.database_url))})",
    ]
    started = [(m, a) for m, a in board.drift_alerts() if a.state == "drift"]
    outcomes = ("error_rate", "negative_feedback_rate")  # concept drift, on the join outcomes
    data = [(m, a) for m, a in started if a.feature not in outcomes]
    concept = [(m, a) for m, a in started if a.feature in outcomes]
    if data:
        by_strength = sorted(data, key=lambda ma: (ma[1].p_value is None, ma[1].p_value or 0.0))
        worst = [a for _, a in by_strength[:3]]
        lines.insert(
            3,
            f"data drift: {len(data)} features, the first at minute {data[0][0]} "
            f"(strongest: {', '.join(a.feature for a in worst)})"
            + "".join(f"; concept drift: {a.feature} at minute {m}" for m, a in concept)
            + "; see [cyan]govloop drift status[/]",
        )
    failed = next(
        (
            r["gate"]
            for _, r in sorted(board.rows.items())
            if "gate" in r and r["gate"].outcome == "fail"
        ),
        None,
    )
    if failed is not None:
        lines += _verify_decision(settings, failed.event_id)
    console.print(Panel("\n".join(lines), title="summary", expand=False))


def _judged(settings: Any, board: Board) -> list[str]:
    """Every window's gate outcome, from SQL (the topic carries only the changes)."""
    from sqlmodel import Session, col, select

    from govloop.stores.sql import GateResultRow, create_engine_for

    snapshots = [r["snap"].event_id for r in board.rows.values() if "snap" in r]
    with Session(create_engine_for(settings)) as session:
        rows = session.exec(
            select(GateResultRow).where(col(GateResultRow.trigger_event_id).in_(snapshots))
        )
        return [r.outcome for r in rows]


def _verify_decision(settings: Any, result_id: str) -> list[str]:
    """Replay the failing decision from its manifest and check the audit ledger, now,
    while the broker still holds the inputs."""
    from sqlmodel import Session

    from govloop.audit import verify
    from govloop.repro import replay
    from govloop.stores.sql import create_engine_for

    with Session(create_engine_for(settings)) as session:
        again = replay(session, result_id, settings)
        ledger = verify(session)
    read = [line.split(":")[0] for line in again.inputs if "sha256" in line]
    lines = [
        f"the failing decision {result_id[:12]} recomputed from its manifest "
        f"({'; '.join(read)}, digests checked): "
        + (
            "[green]identical[/]"
            if again.match
            else "[red]differs: " + shown("; ".join(again.differences)) + "[/]"
        )
    ]
    lines.append(
        ("[green]audit ledger intact[/]" if ledger.ok else "[red]audit ledger broken[/]")
        + f": {ledger.entries} entries, head {ledger.head_hash[:12]}; "
        f"[cyan]govloop repro verify {result_id}[/], [cyan]govloop audit verify[/]"
    )
    return lines
