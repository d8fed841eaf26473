"""The table, the machine built from it, and its named errors."""

from __future__ import annotations

import pytest

from adapters.port import OrderSnapshot, OrderStatus, Side, Source
from fsm import Attempt, GuardsFailed, InvalidTransition, State, Trigger
from fsm.attempt import Recorder
from fsm.evidence import Facts
from fsm.table import TABLE, TERMINAL, TERMINAL_MEANING, rows_for
from tests.helpers import request


def test_state_members_are_exactly_the_contract() -> None:
    assert [s.name for s in State] == [
        "NEW", "PLACED", "FETCHED", "VERIFIED", "PROTECTED", "ROLLING_BACK",
        "CLOSE_VERIFIED", "ORPHANED", "REJECTED",
    ]
    assert {s.name for s in TERMINAL} == {"PROTECTED", "CLOSE_VERIFIED", "ORPHANED", "REJECTED"}
    assert set(TERMINAL_MEANING) == set(TERMINAL)


def test_terminal_states_have_no_way_out() -> None:
    for row in TABLE:
        assert not (row.sources & TERMINAL), row


def test_every_state_is_reachable_from_new_and_every_non_terminal_can_end() -> None:
    edges: dict[State, set[State]] = {}
    for row in TABLE:
        for s in row.sources:
            edges.setdefault(s, set()).add(row.dest)
    seen, todo = {State.NEW}, [State.NEW]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(State)
    for s in set(State) - TERMINAL:
        assert edges.get(s, set()) - {s}, f"{s} has no way forward"


def test_every_guard_named_in_the_table_exists() -> None:
    from fsm.guards import GUARDS

    named = {g for row in TABLE for g in row.guards}
    assert named == set(GUARDS)


def _attempt() -> Attempt:
    return Attempt("0" * 24, request(), "sp" + "0" * 24 + "e", 0.0)


def test_invalid_trigger_is_a_named_error_with_state_and_trigger() -> None:
    rec = Recorder()
    a = _attempt()
    rec.track(a)
    with pytest.raises(InvalidTransition) as err:
        rec.fire(a, Trigger.PROTECTED, a.facts, evidence=None, detail="")
    assert err.value.state is State.NEW and err.value.trigger is Trigger.PROTECTED
    assert "'protected'" in str(err.value) and "NEW" in str(err.value)
    assert a.state is State.NEW and a.history == ()


def test_guards_that_do_not_hold_refuse_the_trigger() -> None:
    rec = Recorder()
    a = _attempt()
    rec.track(a)
    with pytest.raises(GuardsFailed) as err:
        rec.fire(a, Trigger.SUBMIT, a.facts, evidence=None, detail="")
    assert err.value.results == {"entry_may_exist": False}
    assert "entry_may_exist" in str(err.value)
    assert a.state is State.NEW


def test_terminal_state_refuses_every_trigger() -> None:
    rec = Recorder()
    a = _attempt()
    rec.track(a)
    refused = Facts(request=a.request, now=1.0, create_error="insufficient margin")
    rec.fire(a, Trigger.REJECT, refused, evidence=Source.ACK, detail="refused")
    assert a.state is State.REJECTED
    for trig in Trigger:
        with pytest.raises(InvalidTransition, match="terminal"):
            rec.fire(a, trig, refused, evidence=None, detail="")


def test_fire_records_time_trigger_guards_and_evidence() -> None:
    rec = Recorder()
    a = _attempt()
    rec.track(a)
    ack = OrderSnapshot(symbol=a.request.symbol, order_id="1", client_id=a.client_id)
    facts = Facts(request=a.request, now=2.5, ack=ack)
    step = rec.fire(a, Trigger.SUBMIT, facts, evidence=Source.ACK, detail="acked")
    assert (step.at, step.trigger, step.source, step.dest) == (
        2.5, Trigger.SUBMIT, State.NEW, State.PLACED)
    assert step.guards == (("entry_may_exist", True),)
    assert step.evidence is Source.ACK and a.history == (step,)
    assert a.facts is facts


def test_rows_sharing_a_trigger_are_tried_in_table_order() -> None:
    rows = rows_for(State.PLACED, Trigger.FETCH_FAILED)
    assert [r.guards for r in rows] == [("side_contradicted",), ("fetch_deadline_passed",)]
    rec = Recorder()
    a = _attempt()
    rec.track(a)
    ack = OrderSnapshot(symbol=a.request.symbol, order_id="1", client_id=a.client_id)
    rec.fire(a, Trigger.SUBMIT, Facts(request=a.request, now=0, ack=ack), evidence=None,
             detail="")
    wrong = OrderSnapshot(symbol=a.request.symbol, order_id="1", client_id=a.client_id,
                          side=Side.SELL, filled=43.0, amount=43.0, status=OrderStatus.CLOSED)
    step = rec.fire(a, Trigger.FETCH_FAILED,
                    Facts(request=a.request, now=1, ack=ack, entry=wrong, fetch_deadline=99),
                    evidence=Source.ORDER, detail="")
    assert step.guards == (("side_contradicted", True),)
    assert a.state is State.ROLLING_BACK


def test_a_machine_built_from_a_table_without_a_row_refuses_that_transition() -> None:
    """The runtime machine really is built from the table it is given."""
    table = tuple(r for r in TABLE if r.trigger is not Trigger.REJECT)
    rec = Recorder(table)
    a = _attempt()
    rec.track(a)
    with pytest.raises(InvalidTransition):
        rec.fire(a, Trigger.REJECT, Facts(request=a.request, now=0, create_error="x"),
                 evidence=None, detail="")
