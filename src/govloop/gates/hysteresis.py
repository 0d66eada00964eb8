"""Hysteresis for online gates: a gate's state moves on evidence, not on every window.

An online gate is judged on every window.  Around a threshold the raw
outcome flaps (pass, fail, pass, fail...); deploy systems and people want
the *state*, and a message when it changes.  The rule:

* a worse outcome takes effect at once (``fail`` > ``inconclusive`` > ``warn``
  > ``pass``, :mod:`govloop.gates.outcomes`): a real failure is never delayed;
* a better outcome takes effect only after ``recover`` consecutive windows
  better than the current state, and the state becomes the latest outcome.

So a gate that fails and then passes every other window stays failed, and
publishes one ``fail`` and, once it has passed ``recover`` windows in a row,
one ``pass``.  Pure: plain values in, plain values out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from govloop.gates.outcomes import SEVERITY
from govloop.schemas import Outcome

__all__ = ["GateState", "replay_states", "settle"]


class GateState(NamedTuple):
    """A gate's stable outcome and the latest raw outcomes (newest last, at most ``recover``)."""

    outcome: Outcome | None
    recent: tuple[Outcome, ...] = ()


def settle(state: GateState, outcome: Outcome, recover: int = 2) -> tuple[GateState, bool]:
    """Add one raw outcome; return the new state and whether the stable outcome changed.

    >>> s, changed = settle(GateState(None), "pass")
    >>> s.outcome, changed
    ('pass', True)
    >>> s, changed = settle(s, "fail")          # worse: at once
    >>> s.outcome, changed
    ('fail', True)
    >>> s, changed = settle(s, "pass")          # better: not yet
    >>> s.outcome, changed
    ('fail', False)
    >>> s, changed = settle(s, "fail")
    >>> s, changed = settle(s, "pass")
    >>> s.outcome, changed
    ('fail', False)
    >>> s, changed = settle(s, "pass")          # two better windows in a row
    >>> s.outcome, changed
    ('pass', True)
    """
    if recover < 1:
        raise ValueError(f"recover must be at least 1, not {recover}")
    recent = (*state.recent, outcome)[-recover:]
    current = state.outcome
    if current is None or SEVERITY[outcome] >= SEVERITY[current]:
        new: Outcome | None = outcome
    elif len(recent) == recover and all(_better(o, current) for o in recent):
        new = outcome
    else:
        new = current
    return GateState(new, recent), new != current


def _better(outcome: Outcome, than: Outcome) -> bool:
    return SEVERITY[outcome] < SEVERITY[than]


def replay_states(outcomes: Sequence[Outcome], recover: int = 2) -> list[Outcome | None]:
    """The stable outcome after each raw outcome, from a fresh gate.

    >>> replay_states(["pass", "fail", "pass", "fail", "pass", "pass"])
    ['pass', 'fail', 'fail', 'fail', 'fail', 'pass']
    """
    state, out = GateState(None), []
    for o in outcomes:
        state, _ = settle(state, o, recover)
        out.append(state.outcome)
    return out
