"""The recorder's quiet machine decides exactly as the stock ``transitions``
machine built from the same table, and refuses to be built with a callback
it would skip."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transitions import Machine, MachineError

from fsm.attempt import _Machine, build_machine
from fsm.table import TABLE, State, Trigger

GUARDS = sorted({g for row in TABLE for g in row.guards})

Outcome = tuple[str, bool, str, tuple[str, ...]]


class _Reads(dict[str, bool]):
    """Guard results that remember which were read, in order: the machine
    tries a trigger's rows in table order and stops at the first that
    holds, so the reads show which rows it judged."""

    def __init__(self, results: dict[str, bool]) -> None:
        super().__init__(results)
        self.read: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        self.read.append(key)
        return super().get(key, default)


def _fire(built: Any, state: State, trigger: Trigger, results: dict[str, bool]) -> Outcome:
    """What the machine does with ``trigger`` from ``state`` over ``results``:
    refused (``MachineError``), or whether it moved, where it stands, and
    which guard results it read on the way."""
    _machine, cursor, events = built
    cursor.state = state.name
    reads = _Reads(results)
    event = events.get(trigger)
    if event is None:
        return ("no such trigger", False, cursor.state, ())
    try:
        moved = event.trigger(cursor, reads)
    except MachineError:
        return ("refused", False, cursor.state, tuple(reads.read))
    return ("fired", bool(moved), cursor.state, tuple(reads.read))


QUIET = build_machine(TABLE)
STOCK = build_machine(TABLE, Machine)


@pytest.mark.parametrize("row", TABLE, ids=lambda r: f"{r.trigger.value}-{'&'.join(r.guards)}")
def test_each_row_holding_moves_both_machines_to_its_destination(row: Any) -> None:
    """Every row, from each of its sources, with its guards alone holding."""
    results = dict.fromkeys(row.guards, True)
    for source in row.sources:
        quiet = _fire(QUIET, source, row.trigger, results)
        assert quiet == _fire(STOCK, source, row.trigger, results)
        # The first row of this trigger from this source whose guards hold is
        # the one the machine takes; with only this row's guards holding, an
        # earlier row of the same trigger could hold only if its guards are a
        # subset of this one's.
        first = next(r for r in TABLE if r.trigger is row.trigger and source in r.sources
                     and all(results.get(g, False) for g in r.guards))
        assert quiet[:3] == ("fired", True, first.dest.name)


@settings(max_examples=400, deadline=None)
@given(state=st.sampled_from(State), trigger=st.sampled_from(Trigger),
       results=st.dictionaries(st.sampled_from(GUARDS), st.booleans()))
def test_the_quiet_machine_decides_as_the_stock_one(
    state: State, trigger: Trigger, results: dict[str, bool],
) -> None:
    """Any state, any trigger, any guard results (a missing one did not
    hold): the same refusal, the same move, the same state, the same rows
    judged."""
    assert _fire(QUIET, state, trigger, results) == _fire(STOCK, state, trigger, results)


def _machine_callback(m: Machine) -> None:
    m.before_state_change = [lambda event: None]


def _state_callback(m: Machine) -> None:
    m.get_state(State.VERIFIED.name).add_callback("enter", lambda event: None)


def _transition_callback(m: Machine) -> None:
    m.events[Trigger.PROTECTED.value].add_callback("after", lambda event: None)


def _with(base: type[Machine], add: Callable[[Machine], None]) -> type[Machine]:
    class WithCallback(base):  # type: ignore[misc,valid-type]  # a base class passed in
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            add(self)

    return WithCallback


@pytest.mark.parametrize("add", [_machine_callback, _state_callback, _transition_callback])
def test_a_callback_the_quiet_machine_would_skip_refuses_the_build(
    add: Callable[[Machine], None],
) -> None:
    with pytest.raises(RuntimeError, match="must hold no callbacks"):
        build_machine(TABLE, _with(_Machine, add))
    build_machine(TABLE, _with(Machine, add))  # the stock machine runs them: allowed
