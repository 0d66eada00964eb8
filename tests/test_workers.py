"""The workers' run loop: its bounds, its stop requests and its back-off, timed for real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest

import govloop
from govloop.workers import RunResult, StopReason, run_loop

SRC = str(Path(govloop.__file__).resolve().parents[1])


def test_max_items_stops_after_the_step_that_reaches_it() -> None:
    calls = []

    def step() -> int:
        calls.append(time.monotonic())
        return 4

    result = run_loop(step, max_items=10)
    assert (result.reason, result.items, result.steps, len(calls)) == (
        StopReason.MAX_ITEMS,
        12,
        3,
        3,
    )
    assert result.signal is None


def test_max_items_zero_calls_no_step() -> None:
    def step() -> int:
        raise AssertionError("no step should run")

    assert run_loop(step, max_items=0) == RunResult(
        0, 0, pytest.approx(0, abs=0.05), StopReason.MAX_ITEMS
    )


def test_timeout_ends_an_idle_run_on_time() -> None:
    result = run_loop(lambda: 0, timeout=0.3, idle_sleep=0.2, max_idle_sleep=10.0)
    assert result.reason == StopReason.TIMEOUT and (result.items, result.steps) == (0, 2)
    # the second idle sleep (0.4 s) would end at 0.6 s; the loop cuts it at the timeout
    assert 0.3 <= result.elapsed < 0.4, result.elapsed


def test_timeout_ends_a_busy_run_between_steps() -> None:
    def step() -> int:
        time.sleep(0.02)
        return 1

    result = run_loop(step, timeout=0.2)
    assert result.reason == StopReason.TIMEOUT
    assert result.items == result.steps and 5 <= result.steps <= 11, result
    assert 0.2 <= result.elapsed < 0.3


def test_stop_event_from_another_thread_wakes_an_idle_sleep() -> None:
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    result = run_loop(lambda: 0, stop=stop, idle_sleep=30.0, max_idle_sleep=30.0)
    took = time.monotonic() - started
    assert result.reason == StopReason.STOP_EVENT and result.steps == 1
    assert 0.2 <= took < 0.4, took


def test_stop_event_stops_a_busy_run_and_no_step_follows() -> None:
    stop = threading.Event()
    after_stop = []

    def step() -> int:
        if stop.is_set():
            after_stop.append(1)
        time.sleep(0.01)
        return 3

    threading.Timer(0.1, stop.set).start()
    result = run_loop(step, stop=stop, timeout=5.0)
    assert result.reason == StopReason.STOP_EVENT
    assert result.items == 3 * result.steps and result.steps >= 3
    assert len(after_stop) <= 1  # at most the step the event was set during


def test_back_off_doubles_to_the_maximum_and_resets_on_work() -> None:
    returns = iter([0, 0, 0, 0, 0, 1, 0, 0])
    stop = threading.Event()
    calls: list[float] = []

    def step() -> int:
        calls.append(time.monotonic())
        handled = next(returns, None)
        if handled is None:
            stop.set()
            return 0
        return handled

    result = run_loop(step, stop=stop, idle_sleep=0.02, max_idle_sleep=0.08)
    assert result.reason == StopReason.STOP_EVENT and (result.items, result.steps) == (1, 9)
    gaps = [b - a for a, b in pairwise(calls)]
    expected = [0.02, 0.04, 0.08, 0.08, 0.08, 0.0, 0.02, 0.04]
    for gap, sleep in zip(gaps, expected, strict=True):
        assert sleep <= gap < sleep + 0.03, (gaps, expected)


def test_a_step_that_raises_propagates_and_restores_the_handlers() -> None:
    def mine(signum: int, frame: object) -> None:
        raise AssertionError("not expected")

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        seen = []

        def step() -> int:
            seen.append(signal.getsignal(signal.SIGTERM))
            raise RuntimeError("redis gone")

        with pytest.raises(RuntimeError, match="redis gone"):
            run_loop(step)
        assert seen[0] is not mine  # the loop's own handler during the run
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_loop_in_another_thread_installs_no_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stop = threading.Event()
    seen: list[object] = []
    results: list[RunResult] = []

    def step() -> int:
        seen.append((signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)))
        stop.set()
        return 1

    thread = threading.Thread(target=lambda: results.append(run_loop(step, stop=stop)))
    thread.start()
    thread.join(5)
    assert results == [RunResult(1, 1, pytest.approx(0, abs=0.5), StopReason.STOP_EVENT)]
    assert seen == [before]


def test_a_negative_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="not -1"):
        run_loop(lambda: -1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_items": -1},
        {"timeout": -0.1},
        {"idle_sleep": 0},
        {"idle_sleep": 2, "max_idle_sleep": 1},
    ],
)
def test_bad_bounds_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        run_loop(lambda: 0, **kwargs)  # type: ignore[arg-type]


CHILD = textwrap.dedent(
    """
    import dataclasses, json, sys, time
    from govloop.workers import run_loop

    step_seconds, idle_sleep = float(sys.argv[1]), float(sys.argv[2])

    def step():
        print("started", flush=True)
        time.sleep(step_seconds)
        print("finished", flush=True)
        return 2 if step_seconds else 0

    result = run_loop(step, timeout=60, idle_sleep=idle_sleep, max_idle_sleep=idle_sleep)
    print(json.dumps(dataclasses.asdict(result)), flush=True)
    """
)


def run_child_until_signal(signum: int, step_seconds: float, idle_sleep: float) -> list[str]:
    """Start a worker process, send ``signum`` during its first step, return its output lines."""
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(step_seconds), str(idle_sleep)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"
        proc.send_signal(signum)
        sent = time.monotonic()
        proc.wait(timeout=30)
        took = time.monotonic() - sent
        # read through the same buffered stream: readline may already hold "finished"
        out, err = proc.stdout.read(), (proc.stderr.read() if proc.stderr else "")
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert err == ""
    assert took < 5, took
    return ["started", *out.splitlines()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_lets_the_current_step_finish_then_the_process_exits_0(signum: int) -> None:
    lines = run_child_until_signal(signum, step_seconds=0.5, idle_sleep=0.01)
    assert lines[:2] == ["started", "finished"] and len(lines) == 3, lines
    result = json.loads(lines[2])
    assert result["reason"] == "signal" and result["signal"] == signal.Signals(signum).name
    assert (result["items"], result["steps"]) == (2, 1)


def test_a_signal_wakes_an_idle_sleep() -> None:
    started = time.monotonic()
    lines = run_child_until_signal(signal.SIGTERM, step_seconds=0, idle_sleep=30.0)
    assert time.monotonic() - started < 10  # not the 30 s idle sleep
    assert lines[:2] == ["started", "finished"] and len(lines) == 3, lines
    result = json.loads(lines[2])
    assert (result["reason"], result["items"], result["steps"]) == ("signal", 0, 1)


def test_workers_import_neither_cli_nor_streams() -> None:
    code = (
        "import sys\n"
        "import govloop.workers\n"
        "banned = {'govloop.cli', 'govloop.streams', 'faust', 'mode'}\n"
        "prefixes = {'.'.join(m.split('.')[:n]) for m in sys.modules for n in (1, 2)}\n"
        "print(','.join(sorted(prefixes & banned)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert out.stdout.strip() == "" and out.stderr == ""
