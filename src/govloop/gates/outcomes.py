"""The one ordering of gate outcomes: ``pass`` < ``warn`` < ``inconclusive`` < ``fail``.

A gate's outcome is its worst rule's (:func:`govloop.gates.combine`), a
pattern rule's is its worst check's, the CLI exits with the worst policy's,
and an online gate's state moves at once to a worse outcome
(:mod:`govloop.gates.hysteresis`): all of them read this order.
``inconclusive`` ranks above ``warn`` because a gate that could not judge
must not look like one that passed with a note.
"""

from __future__ import annotations

from collections.abc import Iterable

from govloop.schemas import Outcome

__all__ = ["OUTCOMES", "SEVERITY", "worst"]

#: Every outcome, best first.
OUTCOMES: tuple[Outcome, ...] = ("pass", "warn", "inconclusive", "fail")
#: How bad each outcome is (0: pass).
SEVERITY: dict[str, int] = {o: rank for rank, o in enumerate(OUTCOMES)}


def worst(outcomes: Iterable[Outcome]) -> Outcome:
    """The worst of ``outcomes`` (``pass`` when there are none).

    >>> worst(["pass", "warn", "inconclusive"]), worst(["warn", "fail"]), worst([])
    ('inconclusive', 'fail', 'pass')
    """
    return max(outcomes, key=SEVERITY.__getitem__, default="pass")
