"""The table spec: the runtime machine does exactly what the table says.

A :class:`~hypothesis.stateful.RuleBasedStateMachine` fires random triggers,
over random evidence, at the runtime :class:`fsm.attempt.Recorder` (the
``transitions`` machine built from the table) and compares every result, the
new state and step or the named error, with an oracle that reads the table's
rows and evaluates their guards and nothing else: no ``transitions``, no
``rows_for`` index, no driver.

``test_the_table_spec_catches_a_machine_missing_a_guard`` proves the spec
bites: a runtime machine built from a copy of the table with one guard
removed must be caught.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import HealthCheck, Phase, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from adapters.port import (
    OrderSnapshot,
    OrderStatus,
    PositionSide,
    PositionSnapshot,
    Side,
    Source,
    StopSnapshot,
)
from fsm.attempt import Attempt, Recorder
from fsm.evidence import CloseIntent, Facts, StopIntent
from fsm.guards import GUARDS
from fsm.request import OpenRequest
from fsm.table import TABLE, GuardsFailed, InvalidTransition, Row, State, Trigger

# -- the oracle: the table's data, read directly -------------------------------------------


@attrs.frozen
class Expected:
    dest: State | None  # None: an error is expected
    error: type[Exception] | None
    row: Row | None


def oracle(table: tuple[Row, ...], state: State, trigger: Trigger, facts: Facts) -> Expected:
    """What the table says ``trigger`` does from ``state`` over ``facts``: the
    first row, in table order, whose guards all hold; ``GuardsFailed`` if rows
    exist but none holds; ``InvalidTransition`` if no row exists."""
    rows = [r for r in table if r.trigger is trigger and state in r.sources]
    if not rows:
        return Expected(None, InvalidTransition, None)
    for row in rows:
        if all(GUARDS[g](facts) for g in row.guards):
            return Expected(row.dest, None, row)
    return Expected(None, GuardsFailed, None)


# -- evidence: small domains, about half of it "good" for the request (the happy
# -- path, drawn first so that it is also what shrinking heads for), so guards flip ------------

SYM = "AVL/USDT:USDT"
_times = st.sampled_from([0.0, 5.0, 10.0, 20.0])
_opt_times = st.one_of(st.none(), _times)
_qty = st.sampled_from([0.0, 4.0, 10.0, 12.0])


def _order(request: OpenRequest, *, reduce: bool) -> st.SearchStrategy[OrderSnapshot]:
    good_side = request.side.closing_side if reduce else request.side
    good = st.builds(
        OrderSnapshot, symbol=st.just(SYM), order_id=st.just("o1"), client_id=st.just("c1"),
        side=st.just(good_side), amount=st.just(request.amount),
        filled=st.just(request.amount),
        status=st.sampled_from([OrderStatus.CLOSED, OrderStatus.CANCELED]),
        reduce_only=st.just(reduce), timestamp=st.just(5.0))
    anything = st.builds(
        OrderSnapshot, symbol=st.just(SYM), order_id=st.sampled_from([None, "o1"]),
        client_id=st.sampled_from([None, "c1"]), side=st.sampled_from([None, *Side]),
        amount=st.one_of(st.none(), _qty), filled=st.one_of(st.none(), _qty),
        status=st.sampled_from([None, *OrderStatus]),
        reduce_only=st.sampled_from([None, True, False]), timestamp=_opt_times)
    return st.one_of(good, anything)


def _position(request: OpenRequest) -> st.SearchStrategy[PositionSnapshot]:
    def make(side: PositionSide | None, size: float, source: Source,
             as_of: float | None) -> PositionSnapshot:
        if size == 0:
            side = None
        elif side is None:
            side = request.side.opens
        return PositionSnapshot(symbol=SYM, side=side, size=size, source=source,
                                received_at=0.0, as_of=as_of)

    return st.builds(make, st.sampled_from([None, request.side.opens, *PositionSide]),
                     st.sampled_from([0.0, 4.0, request.amount, 12.0]),
                     st.sampled_from(Source), _opt_times)


def _stop_parts(request: OpenRequest) -> st.SearchStrategy[tuple[StopIntent, StopSnapshot]]:
    def make(side: Side, amount: float, reduce_only: bool, echo_side: Side | None,
             echo_amount: float | None, echo_reduce: bool | None, oid: str | None,
             status: OrderStatus | None) -> tuple[StopIntent, StopSnapshot]:
        intent = StopIntent(side=side, amount=amount, trigger_price=0.1, client_id="s1",
                            reduce_only=reduce_only)
        snap = StopSnapshot(symbol=SYM, order_id=oid, client_id=None, side=echo_side,
                            amount=echo_amount, trigger_price=0.1, reduce_only=echo_reduce,
                            status=status)
        return intent, snap

    opp = request.side.closing_side
    good = st.builds(
        make, st.just(opp), st.just(request.amount), st.just(True),
        st.sampled_from([opp, None]), st.sampled_from([request.amount, None]),
        st.sampled_from([True, None]), st.just("st1"),
        st.sampled_from([OrderStatus.OPEN, None]))
    return good | st.builds(
        make,
        st.sampled_from([opp, opp, request.side]),
        st.sampled_from([request.amount, 4.0]),
        st.sampled_from([True, True, False]),
        st.sampled_from([opp, None, request.side]),
        st.sampled_from([request.amount, None, 4.0]),
        st.sampled_from([True, None, False]),
        st.sampled_from(["st1", None]),
        st.sampled_from([None, OrderStatus.OPEN, OrderStatus.CANCELED]),
    )


@functools.cache
def facts_for(request: OpenRequest) -> st.SearchStrategy[Facts]:
    """Random evidence for ``request``. Built once per request: constructing
    strategies costs far more than drawing from them."""
    opt = st.booleans()
    stop_parts = st.one_of(_stop_parts(request), st.none())
    orders = st.one_of(_order(request, reduce=False), st.none())
    closes = st.one_of(_order(request, reduce=True), st.none())
    positions = st.one_of(_position(request), st.none())
    close_intents = st.one_of(st.builds(
        CloseIntent, side=st.sampled_from([request.side.closing_side, request.side]),
        amount=st.sampled_from([request.amount, 4.0]), client_id=st.just("c2")), st.none())
    sources = st.sampled_from([None, *Source])
    errors = st.sampled_from([None, "refused"])
    stop_errors = st.sampled_from([None, None, "refused"])
    foreign = st.sampled_from([None, None, "the operator sold 5"])

    @st.composite
    def build(draw: st.DrawFn) -> Facts:
        stop = draw(stop_parts)
        stop_intent, stop_snap = stop if stop is not None else (None, None)
        if stop is not None and draw(opt):
            stop_snap = None  # intent sent, no reply yet
        return Facts(
            request=request,
            now=draw(_times),
            ack=draw(orders),
            create_error=draw(errors),
            create_ambiguous=draw(opt),
            entry=draw(orders),
            entry_source=draw(sources),
            fetch_deadline=draw(_opt_times),
            position=draw(positions),
            verify_deadline=draw(_opt_times),
            stop_intent=stop_intent,
            stop=stop_snap,
            stop_error=draw(stop_errors),
            protect_deadline=draw(_opt_times),
            close_basis=draw(positions),
            close_intent=draw(close_intents),
            close_order=draw(closes),
            close_error=draw(errors),
            close_deadline=draw(_opt_times),
            entry_missing=draw(opt),
            fills_checked=draw(opt),
            foreign_fill=draw(foreign),
            close_missing=draw(opt),
        )

    return build()


REQUESTS = [OpenRequest(SYM, "buy", 10, 0.1, reference_price=0.2),
            OpenRequest(SYM, "sell", 10, 0.3, reference_price=0.2)]


@functools.cache
def _trigger_choices(state: State) -> st.SearchStrategy[Trigger]:
    defined = sorted({r.trigger for r in TABLE if state in r.sources}, key=lambda t: t.value)
    anything = st.sampled_from(Trigger)
    return st.one_of(anything, st.sampled_from(defined)) if defined else anything


# -- the state machine ------------------------------------------------------------------------


class TableMachine(RuleBasedStateMachine):
    """Fires triggers at the runtime machine and at the oracle, side by side."""

    #: The table the runtime machine is built from (the bite test swaps it);
    #: the oracle always reads the real TABLE.
    runtime_table: ClassVar[tuple[Row, ...]] = TABLE

    def __init__(self) -> None:
        super().__init__()
        self.recorder = Recorder(self.runtime_table)
        self.request = REQUESTS[0]
        self.attempt = self._new_attempt(State.NEW)
        self.expected_state = State.NEW
        self.expected_steps = 0

    def _new_attempt(self, state: State) -> Attempt:
        a = Attempt("t1", self.request, "c1", 0.0)
        self.recorder.track(a, state)
        return a

    @rule(state=st.sampled_from(State), request=st.sampled_from(REQUESTS))
    def resume_in(self, state: State, request: OpenRequest) -> None:
        """Start over from any state, as recovery does from the journal."""
        self.recorder.untrack(self.attempt)
        self.request = request
        self.attempt = self._new_attempt(state)
        self.expected_state = state
        self.expected_steps = 0

    @rule(row=st.sampled_from(TABLE), data=st.data())
    def fire_a_row(self, row: Row, data: Any) -> None:
        """Resume in one of a row's sources and fire its trigger: every row,
        and every guard on it, is exercised, not only the ones near NEW."""
        state = data.draw(st.sampled_from(sorted(row.sources, key=lambda s: s.value)),
                          label="source")
        self.resume_in(state, data.draw(st.sampled_from(REQUESTS), label="request"))
        self._fire(row.trigger, data.draw(facts_for(self.request), label="facts"))

    @rule(data=st.data())
    def fire(self, data: Any) -> None:
        """Any trigger, or (as often) one the table defines from the current
        state, so that deep states and their guards are reached."""
        trigger = data.draw(_trigger_choices(self.attempt.state), label="trigger")
        self._fire(trigger, data.draw(facts_for(self.request), label="facts"))

    def _fire(self, trigger: Trigger, facts: Facts) -> None:
        source = self.attempt.state
        want = oracle(TABLE, source, trigger, facts)
        before = self.attempt.history
        try:
            step = self.recorder.fire(self.attempt, trigger, facts, evidence=None,
                                      detail="spec")
        except (InvalidTransition, GuardsFailed) as exc:
            event(f"{source.value} --{trigger.value}--> {type(exc).__name__}")
            note(f"{source.value} --{trigger.value}--> {type(exc).__name__}: {exc}")
            assert want.error is type(exc), (
                f"machine raised {type(exc).__name__}, table says {want}")
            assert exc.state is source and exc.trigger is trigger
            assert self.attempt.state is source, "a refused trigger moved the attempt"
            assert self.attempt.history == before, "a refused trigger was recorded"
            return
        event(f"{source.value} --{trigger.value}--> {step.dest.value}")
        note(f"{step.describe()}")
        assert want.error is None, f"machine moved to {step.dest}, table says {want.error}"
        assert want.row is not None
        assert step.source is source and step.trigger is trigger
        assert step.dest is want.dest and self.attempt.state is want.dest
        assert tuple(g for g, _ in step.guards) == want.row.guards
        assert all(ok for _, ok in step.guards)
        assert step.at == facts.now
        assert self.attempt.history == (*before, step)
        assert self.attempt.facts is facts
        self.expected_state = want.dest

    @invariant()
    def state_is_the_tables(self) -> None:
        assert self.attempt.state is self.expected_state


_STATEFUL = settings(
    max_examples=max(20, settings().max_examples // 2),
    stateful_step_count=30,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TestTheRuntimeMachineIsTheTable = TableMachine.TestCase
TestTheRuntimeMachineIsTheTable.settings = _STATEFUL


def _without_guard(trigger: Trigger, dest: State, guard: str) -> tuple[Row, ...]:
    out = []
    for row in TABLE:
        if row.trigger is trigger and row.dest is dest and guard in row.guards:
            row = attrs.evolve(row, guards=tuple(g for g in row.guards if g != guard))
        out.append(row)
    assert out != list(TABLE), "the mutation changed nothing"
    return tuple(out)


@pytest.mark.parametrize(("trigger", "dest", "guard"), [
    (Trigger.FETCHED, State.FETCHED, "side_matches_request"),
    (Trigger.PROTECTED, State.PROTECTED, "stop_covers_size"),
    (Trigger.CLOSE_SENDING, State.ROLLING_BACK, "close_side_derivable"),
])
def test_the_table_spec_catches_a_machine_missing_a_guard(
    trigger: Trigger, dest: State, guard: str
) -> None:
    """The table spec bites: a runtime machine built from a table copy with one
    guard removed is caught (the spec fails with a counterexample)."""

    class Mutant(TableMachine):
        runtime_table = _without_guard(trigger, dest, guard)

    with pytest.raises(AssertionError) as caught:
        run_state_machine_as_test(Mutant, settings=settings(
            _STATEFUL, max_examples=2000, database=None, print_blob=False,
            report_multiple_bugs=False, phases=[Phase.generate]))
    assert caught.value is not None
