"""Online gate hysteresis: the pure rule, and the gate state kept in SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlmodel import Session

from govloop.config import Settings
from govloop.gates.hysteresis import GateState, replay_states, settle
from govloop.schemas import GateResult
from govloop.stores.sql import GateStateRow, advance_gate, create_engine_for, init_db


def test_worse_at_once_better_after_recover_windows() -> None:
    flapping = ["pass", "fail", "pass", "fail", "pass", "fail", "pass", "pass"]
    assert replay_states(flapping) == [
        "pass",
        "fail",
        "fail",
        "fail",
        "fail",
        "fail",
        "fail",
        "pass",
    ]
    # with recover=1 the state follows every outcome
    assert replay_states(flapping, recover=1) == flapping
    assert replay_states(["pass", "warn", "pass", "pass", "pass"], recover=3) == [
        "pass",
        "warn",
        "warn",
        "warn",
        "pass",
    ]


def test_recovery_to_a_partial_improvement() -> None:
    # fail -> warn needs recover windows better than fail; the state becomes the latest
    states = replay_states(["fail", "warn", "inconclusive", "pass"])
    assert states == ["fail", "fail", "inconclusive", "inconclusive"]
    # inconclusive ranks above warn (govloop.gates.outcomes): it takes effect at once
    assert replay_states(["warn", "inconclusive", "warn"]) == [
        "warn",
        "inconclusive",
        "inconclusive",
    ]


def test_changes_are_reported_once() -> None:
    state, changes = GateState(None), []
    for o in ["pass", "pass", "fail", "fail", "pass", "pass", "pass"]:
        state, changed = settle(state, o)  # type: ignore[arg-type]
        changes.append(changed)
    assert changes == [True, False, True, False, False, True, False]


def test_recover_must_be_positive() -> None:
    with pytest.raises(ValueError, match="recover must be at least 1"):
        settle(GateState(None), "pass", recover=0)


T0 = datetime(2030, 1, 1, tzinfo=UTC)


def result(minute: int, outcome: str) -> GateResult:
    start = T0 + timedelta(minutes=minute)
    return GateResult(
        event_id=f"r{minute}",
        policy="acc",
        policy_hash="h",
        model="m",
        model_version="1",
        outcome=outcome,
        rules=[],  # type: ignore[arg-type]
        window_start=start,
        window_end=start + timedelta(minutes=1),
    )


def test_gate_state_in_sql_publishes_changes_only(db_url: str) -> None:
    engine = create_engine_for(Settings(db_url=SecretStr(db_url)))
    init_db(engine)
    model = f"m-{id(engine)}-{datetime.now(UTC).timestamp()}"  # PostgreSQL is shared
    published = []
    with Session(engine) as session:
        for minute, outcome in enumerate(["pass", "fail", "pass", "fail", "pass", "pass"]):
            r = result(minute, outcome).model_copy(update={"model": model})
            change = advance_gate(session, r, recover=2)
            session.commit()
            if change is not None:
                published.append((minute, change.outcome, change.previous_outcome))
        assert published == [(0, "pass", None), (1, "fail", "pass"), (5, "pass", "fail")]
        # a redelivered result changes nothing; the one that changed the state is re-sent
        again = advance_gate(
            session, result(5, "pass").model_copy(update={"model": model}), 2, new=False
        )
        assert again is not None and (again.outcome, again.previous_outcome) == ("pass", "fail")
        assert (
            advance_gate(
                session, result(4, "pass").model_copy(update={"model": model}), 2, new=False
            )
            is None
        )
        row = session.get(GateStateRow, ("acc", model, "1"))
        assert row is not None and row.outcome == "pass" and row.changed_by == "r5"
    engine.dispose()
