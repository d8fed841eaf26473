"""The step function decides without I/O: which row fires, in table order, or
which evidence to get first. No event loop anywhere in this file."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from adapters.port import OrderSnapshot, OrderStatus, PositionSnapshot, Side, Source, StopSnapshot
from fsm import guards as G
from fsm.attempt import Attempt, Recorder
from fsm.evidence import CloseIntent, Facts, StopIntent
from fsm.step import Context, Fire, Look, LookUp, Send, evolve, next_step, rows_from
from fsm.table import TABLE, GuardsFailed, State, Trigger
from tests.helpers import SYMBOL, request

CID, CLOSE = "sp" + "0" * 24 + "e", "sp" + "0" * 24 + "c"


def ctx(**kw: object) -> Context:
    return Context(client_id=CID, close_id=CLOSE, verify_timeout=5.0, close_timeout=30.0,
                   **kw)  # type: ignore[arg-type]


def order(side: Side | None = Side.BUY, filled: float | None = 43.0,
          status: OrderStatus | None = OrderStatus.CLOSED, oid: str = "1",
          ts: float | None = 10.0) -> OrderSnapshot:
    return OrderSnapshot(symbol=SYMBOL, order_id=oid, client_id=CID, side=side, amount=43.0,
                         filled=filled, status=status, timestamp=ts)


def facts(**kw: object) -> Facts:
    return evolve(Facts(request=request(), now=1.0), **kw)


def first_holding_row(state: State, f: Facts) -> Trigger | None:
    """The oracle: the first row leaving ``state``, in table order, whose
    guards all hold over ``f``."""
    for row in rows_from(state):
        if all(G.GUARDS[g](f) for g in row.guards):
            return row.trigger
    return None


# -- priority comes from the table ---------------------------------------------------------


def test_a_side_the_exchange_contradicts_outranks_a_fill_and_the_table_says_so() -> None:
    """The ack reports a sell for our buy, the fetched entry a filled buy:
    both ``fetch_failed`` (side_contradicted) and ``fetched`` hold. The
    attempt must not trade on an anomaly, and the table, not the driver,
    says which row wins."""
    f = facts(ack=order(side=Side.SELL, status=None, filled=None), entry=order(),
              entry_source=Source.ORDER, fetch_deadline=5.0)
    assert G.side_contradicted(f) and G.order_terminal(f) and G.side_matches_request(f)
    assert first_holding_row(State.PLACED, f) is Trigger.FETCH_FAILED
    step = next_step(State.PLACED, f, ctx())
    assert isinstance(step, Fire)
    assert step.trigger is Trigger.FETCH_FAILED and step.row.guards == ("side_contradicted",)
    assert "anomaly" in step.detail


def test_a_passed_deadline_outranks_a_close_in_rollback() -> None:
    """Past the close deadline nothing is sent, even with a position that
    would make a close derivable."""
    pos = PositionSnapshot(symbol=SYMBOL, side=Side.BUY.opens, size=43.0, source=Source.REST,
                           received_at=0.5)
    f = facts(entry=order(), position=pos, fills_checked=True, close_deadline=0.5)
    step = next_step(State.ROLLING_BACK, f, ctx())
    assert isinstance(step, Fire) and step.trigger is Trigger.CLOSE_UNVERIFIED
    assert step.row.guards == ("close_deadline_passed",) and step.close is None


def _spread() -> list[Facts]:
    """Evidence of every kind, each field absent or present, deadlines
    passed or not: where rows of a state share guards."""
    pos_ours = PositionSnapshot(symbol=SYMBOL, side=Side.BUY.opens, size=43.0,
                                source=Source.STREAM, received_at=0.5, as_of=11.0)
    flat_proof = PositionSnapshot(symbol=SYMBOL, side=None, size=0.0, source=Source.STREAM,
                                  received_at=0.5, as_of=11.0)
    flat_rest = PositionSnapshot(symbol=SYMBOL, side=None, size=0.0, source=Source.REST,
                                 received_at=0.5)
    stop = StopSnapshot(symbol=SYMBOL, order_id="s", client_id="x", side=Side.SELL,
                        amount=43.0, trigger_price=0.129, reduce_only=True)
    intent = StopIntent(side=Side.SELL, amount=43.0, trigger_price=0.129, client_id="x")
    close = CloseIntent(side=Side.SELL, amount=43.0, client_id=CLOSE)
    out: list[Facts] = []
    for entry in (None, order(), order(filled=0.0), order(side=Side.SELL)):
        for position in (None, pos_ours, flat_proof, flat_rest):
            for late in (False, True):
                for closing in (None, close):
                    out.append(facts(
                        entry=entry, position=position, stop=stop if late else None,
                        stop_intent=intent, fills_checked=late, close_intent=closing,
                        close_order=order(side=Side.SELL, oid="c") if closing and late
                        else None,
                        fetch_deadline=0.5 if late else 5.0,
                        verify_deadline=0.5 if late else 5.0,
                        protect_deadline=0.5 if late else 5.0,
                        close_deadline=0.5 if late else 5.0))
    return out


@pytest.mark.parametrize("state", [s for s in State if not s.terminal and s is not State.NEW])
def test_whenever_a_row_fires_it_is_the_first_in_table_order_that_holds(state: State) -> None:
    """Over a spread of evidence, a fired row is the first holding one,
    unless a gate asked for evidence first (then nothing fires)."""
    fired = 0
    for f in _spread():
        step = next_step(state, f, ctx(stop_lookup=True))
        if isinstance(step, Fire):
            fired += 1
            assert step.trigger is first_holding_row(state, step.facts), (state, f)
            assert all(step.results[g] for g in step.row.guards)
    assert fired


# -- evidence first -----------------------------------------------------------------------


def test_new_sends_the_entry_once_then_judges_its_outcome() -> None:
    f = facts()
    assert next_step(State.NEW, f, ctx()) == Send("entry", f)
    acked = facts(ack=order(status=None, filled=None))
    step = next_step(State.NEW, acked, ctx(said=(Source.ACK, "acknowledged")))
    assert isinstance(step, Fire) and step.trigger is Trigger.SUBMIT
    assert (step.evidence, step.detail) == (Source.ACK, "acknowledged")
    refused = facts(create_error="no")
    step = next_step(State.NEW, refused, ctx(said=(Source.ACK, "create refused: no")))
    assert isinstance(step, Fire) and step.trigger is Trigger.REJECT


def test_an_ack_that_names_no_order_is_refused_loudly() -> None:
    nameless = facts(ack=OrderSnapshot(symbol=SYMBOL, order_id=None, client_id=None))
    with pytest.raises(GuardsFailed):
        next_step(State.NEW, nameless, ctx(said=(Source.ACK, "acknowledged")))


def test_placed_without_a_terminal_entry_looks_it_up() -> None:
    f = facts(ack=order(status=None, filled=None), fetch_deadline=5.0)
    assert next_step(State.PLACED, f, ctx()) == LookUp(Look.ENTRY, f)


def test_a_recovered_attempt_reads_the_executions_before_any_stop() -> None:
    f = facts(entry=order(), recovered=True, protect_deadline=5.0,
              stop_intent=StopIntent(side=Side.SELL, amount=43.0, trigger_price=0.129,
                                     client_id="x"))
    assert next_step(State.VERIFIED, f, ctx()) == LookUp(Look.FILLS, f)
    checked = evolve(f, fills_checked=True)
    assert next_step(State.VERIFIED, checked, ctx()) == Send("stop", checked)
    assert next_step(State.VERIFIED, checked, ctx(stop_lookup=True)) == LookUp(
        Look.STOP, checked)


def test_a_stop_that_does_not_match_is_refused_in_words() -> None:
    wrong = StopSnapshot(symbol=SYMBOL, order_id="s", client_id="x", side=Side.SELL,
                         amount=40.0, trigger_price=0.129, reduce_only=True)
    f = facts(entry=order(), protect_deadline=5.0, stop=wrong,
              stop_intent=StopIntent(side=Side.SELL, amount=43.0, trigger_price=0.129,
                                     client_id="x"))
    step = next_step(State.VERIFIED, f, ctx())
    assert isinstance(step, Fire) and step.trigger is Trigger.PROTECT_FAILED
    assert step.detail == "stop does not match what was asked"
    assert step.evidence is Source.STOP and step.facts.stop_error == step.detail


def test_rollback_checks_executions_then_sends_the_close_for_our_fill_only() -> None:
    pos = PositionSnapshot(symbol=SYMBOL, side=Side.BUY.opens, size=100.0,
                           source=Source.REST, received_at=0.5)
    f = facts(entry=order(), position=pos, close_deadline=5.0)
    assert next_step(State.ROLLING_BACK, f, ctx()) == LookUp(Look.FILLS, f)
    checked = evolve(f, fills_checked=True)
    step = next_step(State.ROLLING_BACK, checked, ctx())
    assert isinstance(step, Fire) and step.trigger is Trigger.CLOSE_SENDING
    assert step.close == CloseIntent(side=Side.SELL, amount=43.0, client_id=CLOSE)
    assert step.facts.close_basis == pos


def test_with_a_stream_a_foreign_execution_waits_for_a_view_until_the_deadline() -> None:
    f = facts(entry=order(), fills_checked=True, foreign_fill="someone traded",
              close_deadline=5.0)
    assert next_step(State.ROLLING_BACK, f, ctx(stream=True)) == LookUp(Look.POSITION, f)
    step = next_step(State.ROLLING_BACK, f, ctx(stream=False))
    assert isinstance(step, Fire) and step.row.guards == ("exposure_unattributable",)


# -- guards once per decision, none in the recorder ---------------------------------------------


def count_guard_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count every evaluation of every guard, by name, for this test (the
    step function reads ``G.GUARDS`` per decision)."""
    calls: Counter[str] = Counter()

    def counted(name: str, g: Callable[[Facts], bool]) -> Callable[[Facts], bool]:
        def run(f: Facts) -> bool:
            calls[name] += 1
            return g(f)
        return run

    for name, g in list(G.GUARDS.items()):
        monkeypatch.setitem(G.GUARDS, name, counted(name, g))
    return calls


def test_each_guard_runs_at_most_once_per_decision_and_not_again_when_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = count_guard_calls(monkeypatch)
    f = facts(ack=order(status=None, filled=None), entry=order(), entry_source=Source.ORDER,
              fetch_deadline=5.0, verify_deadline=5.0)
    step = next_step(State.PLACED, f, ctx())
    assert isinstance(step, Fire) and step.trigger is Trigger.FETCHED
    assert calls and max(calls.values()) == 1, calls
    decided = dict(calls)
    a = Attempt("0" * 24, request(), CID, 0.0)
    rec = Recorder()
    rec.track(a, State.PLACED)
    taken = rec.take(a, step)
    assert dict(calls) == decided, "the recorder ran guard code again"
    assert a.state is State.FETCHED and taken.guards == tuple(
        (g, True) for g in step.row.guards)
    assert a.history == (taken,)


def test_the_machine_still_refuses_a_decision_the_table_does_not_allow() -> None:
    """A decision forged for the wrong state is refused by the machine."""
    f = facts(entry=order(), verify_deadline=5.0)
    step = next_step(State.FETCHED, f, ctx())
    assert isinstance(step, Fire) and step.trigger is Trigger.VERIFIED
    a = Attempt("0" * 24, request(), CID, 0.0)
    rec = Recorder()
    rec.track(a, State.PLACED)
    with pytest.raises(Exception) as err:
        rec.take(a, step)
    assert type(err.value).__name__ in ("InvalidTransition", "GuardsFailed")
    assert a.state is State.PLACED and a.history == ()


def test_every_row_has_words() -> None:
    assert {r.trigger for r in TABLE} == set(Trigger)


# -- the stop attached to the entry ------------------------------------------------------------

ATT = StopIntent(side=Side.SELL, amount=43.0, trigger_price=0.129, client_id="sp" + "0" * 24 + "a")


def attached_stop(**kw: object) -> StopSnapshot:
    base: dict[str, object] = dict(symbol=SYMBOL, order_id="a1", client_id=ATT.client_id,
                                   side=Side.SELL, amount=43.0, trigger_price=0.129,
                                   reduce_only=True, status=OrderStatus.OPEN)
    base.update(kw)
    return StopSnapshot(**base)  # type: ignore[arg-type]


def test_while_the_attached_stop_is_relied_on_nothing_is_sent_it_is_read_back() -> None:
    f = facts(entry=order(), stop_attached=True, stop_intent=ATT, attached_deadline=5.0)
    step = next_step(State.VERIFIED, f, ctx())
    assert isinstance(step, LookUp) and step.what is Look.ATTACHED


def test_an_attached_stop_shown_in_full_protects_in_the_exchanges_words() -> None:
    f = facts(entry=order(), stop_attached=True, stop_intent=ATT, attached_deadline=5.0,
              stop=attached_stop())
    step = next_step(State.VERIFIED, f, ctx())
    assert isinstance(step, Fire) and step.trigger is Trigger.PROTECTED
    assert "attached to the entry" in step.detail


@pytest.mark.parametrize("stop", [attached_stop(status=OrderStatus.REJECTED),
                                  attached_stop(amount=86.0)], ids=["refused", "wrong-size"])
def test_an_attached_stop_refused_or_wrong_takes_the_fall_back_row(stop: StopSnapshot) -> None:
    f = facts(entry=order(), stop_attached=True, stop_intent=ATT, attached_deadline=5.0,
              stop=stop)
    step = next_step(State.VERIFIED, f, ctx())
    assert isinstance(step, Fire) and step.trigger is Trigger.FALL_BACK
    assert step.facts.stop_error is None  # the stop_refused row was not judged


def test_after_the_fall_back_the_separate_stop_is_sent() -> None:
    f = facts(entry=order(), stop_attached=True, attached_failed="refused at the fill",
              stop_intent=StopIntent(side=Side.SELL, amount=43.0, trigger_price=0.129,
                                     client_id="s"), protect_deadline=5.0)
    step = next_step(State.VERIFIED, f, ctx())
    assert isinstance(step, Send) and step.what == "stop"


def test_a_recovered_attempt_relying_on_its_attached_stop_reads_it_back_not_the_fills() -> None:
    """Found by the crash spec: a recovered attempt asked for the symbol's
    executions before a stop it would never place, with no deadline of its
    own (protect_deadline is unset while the attached stop is relied on), so
    once its look-ups ran out of time it asked again without end. Nothing is
    placed here, so nothing is read first."""
    f = facts(entry=order(), stop_attached=True, stop_intent=ATT, attached_deadline=5.0,
              recovered=True, now=9.0)
    step = next_step(State.VERIFIED, f, ctx())
    assert isinstance(step, Fire) and step.trigger is Trigger.FALL_BACK  # its deadline passed
    step = next_step(State.VERIFIED, evolve(f, now=1.0), ctx())
    assert isinstance(step, LookUp) and step.what is Look.ATTACHED


# -- rules that mutation testing found undefended -------------------------------------------


@pytest.mark.parametrize("state", [s for s in State if not s.terminal and s is not State.NEW])
def test_no_guard_runs_twice_in_one_decision_even_where_rows_share_it(
    state: State, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Guards run once per decision: a guard two rows share (order_filled,
    close_deadline_passed, ...) is evaluated for the first and its result
    reused for the second."""
    calls = count_guard_calls(monkeypatch)
    shared = Counter(g for r in rows_from(state) for g in set(r.guards))
    reused = 0
    for f in _spread():
        calls.clear()
        step = next_step(state, f, ctx(stop_lookup=True))
        # A gate may derive new facts (then the guards are judged afresh,
        # once more at most); over the facts given, still at most twice.
        limit = 2 if isinstance(step, Fire) and step.facts is not f else 1
        assert max(calls.values(), default=0) <= limit, (state, dict(calls))
        reused += sum(1 for g, n in shared.items() if n > 1 and calls[g] == 1)
    if any(n > 1 for n in shared.values()):
        assert reused, f"no decision in {state.value} judged a shared guard: spread too thin"


def test_every_rollback_look_up_while_the_close_may_execute_reads_the_position_too() -> None:
    """While our close may still execute (and while the entry's fill is not
    known), each look-up reads the position in the same round: a flat view
    is the other proof the rollback ends on, and the close deadline does not
    wait for a second round trip."""
    close = CloseIntent(side=Side.SELL, amount=43.0, client_id=CLOSE)
    in_flight = facts(entry=order(), close_intent=close, fills_checked=True,
                      close_deadline=5.0)
    assert in_flight.close_in_flight
    assert next_step(State.ROLLING_BACK, in_flight, ctx()) == LookUp(
        Look.CLOSE, in_flight, with_position=True)
    unknown = facts(entry=order(status=OrderStatus.OPEN, filled=None), close_deadline=5.0)
    assert next_step(State.ROLLING_BACK, unknown, ctx()) == LookUp(
        Look.ENTRY, unknown, with_position=True)
    done = facts(entry=order(), close_intent=close, fills_checked=True, close_deadline=5.0,
                 close_order=order(side=Side.SELL, oid="c", filled=43.0))
    step = next_step(State.ROLLING_BACK, done, ctx())
    assert not done.close_in_flight and isinstance(step, (Fire, LookUp))
    if isinstance(step, LookUp):
        assert step.what is Look.POSITION


def test_an_ack_that_names_no_order_is_refused_naming_the_guard() -> None:
    nameless = facts(ack=OrderSnapshot(symbol=SYMBOL, order_id=None, client_id=None))
    with pytest.raises(GuardsFailed) as err:
        next_step(State.NEW, nameless, ctx(said=(Source.ACK, "acknowledged")))
    assert err.value.results == {"entry_may_exist": False}
    assert "entry_may_exist" in str(err.value)


def test_each_gate_is_bound_to_the_row_it_names() -> None:
    """The gates are bound to rows by (state, trigger, first guard), once at
    import: the look-up must find exactly that row, or fail loudly."""
    from fsm.step import _row

    for state in State:
        for row in rows_from(state):
            if row.guards:
                assert _row(state, row.trigger, row.guards[0]) is row
    found = _row(State.VERIFIED, Trigger.PROTECT_FAILED, "stop_refused")
    assert found.trigger is Trigger.PROTECT_FAILED and found.guards[0] == "stop_refused"
    assert State.VERIFIED in found.sources
    with pytest.raises(StopIteration):
        _row(State.VERIFIED, Trigger.PROTECTED, "stop_refused")
    with pytest.raises(StopIteration):
        _row(State.PLACED, Trigger.PROTECT_FAILED, "stop_refused")


def test_fetched_without_a_terminal_fill_waits_for_the_position() -> None:
    """A recovered attempt in FETCHED whose entry was not read back yet: no
    row holds before the verify deadline, and the position is what it waits
    for (a view on the other side would contradict; absence proves nothing)."""
    f = facts(verify_deadline=5.0)
    assert next_step(State.FETCHED, f, ctx()) == LookUp(Look.POSITION, f)


def test_a_view_on_the_other_side_is_an_anomaly_in_the_exchange_s_words() -> None:
    short = PositionSnapshot(symbol=SYMBOL, side=Side.SELL.opens, size=43.0,
                             source=Source.REST, received_at=0.5)
    f = facts(entry=order(), position=short, verify_deadline=5.0)
    step = next_step(State.FETCHED, f, ctx())
    assert isinstance(step, Fire) and step.row.guards == ("position_contradicted",)
    assert (step.evidence, step.detail) == (Source.REST,
                                            "rest shows short 43 (rest) for a buy: anomaly")


def test_a_rollback_never_closes_against_a_fresh_view_on_the_other_side() -> None:
    """The close side derives from the exchange's view; a view showing the
    other side (and no execution to explain it) stops the rollback with
    nothing sent, saying what the exchange showed."""
    short = PositionSnapshot(symbol=SYMBOL, side=Side.SELL.opens, size=43.0,
                             source=Source.STREAM, received_at=0.5)
    f = facts(entry=order(), position=short, fills_checked=True, close_deadline=5.0)
    step = next_step(State.ROLLING_BACK, f, ctx())
    assert isinstance(step, Fire) and step.row.guards == ("close_side_contradicted",)
    assert step.close is None and step.facts.close_basis == short
    assert (step.evidence, step.detail) == (
        Source.STREAM, "exchange shows short 43 (stream) but we asked to buy: close side not "
                       "derivable, nothing sent")


def test_once_the_entry_filled_anything_the_rollback_reads_the_position_not_the_entry() -> None:
    """Still open but partly filled: that fill is what the rollback closes,
    so the position is read (the entry's fate no longer decides); with a
    close in flight, the close is."""
    open_part = order(status=OrderStatus.OPEN, filled=20.0)
    f = facts(entry=open_part, fills_checked=True, close_deadline=5.0)
    step = next_step(State.ROLLING_BACK, f, ctx())
    assert step == LookUp(Look.POSITION, f)
    close = CloseIntent(side=Side.SELL, amount=20.0, client_id=CLOSE)
    g = facts(entry=open_part, close_intent=close, fills_checked=True, close_deadline=5.0)
    assert next_step(State.ROLLING_BACK, g, ctx()) == LookUp(Look.CLOSE, g, with_position=True)


def test_a_flat_lagging_view_does_not_confirm_it_is_the_fill_that_does() -> None:
    """Absence in a lagging view proves nothing: with a flat REST view the
    confirmation is credited to the order's fill, in its words."""
    flat = PositionSnapshot(symbol=SYMBOL, side=None, size=0.0, source=Source.REST,
                            received_at=0.5)
    f = facts(entry=order(), position=flat, verify_deadline=5.0)
    step = next_step(State.FETCHED, f, ctx())
    assert isinstance(step, Fire) and step.trigger is Trigger.VERIFIED
    assert (step.evidence, step.detail) == (Source.ORDER, "position confirmed: entry filled 43")
    ours = PositionSnapshot(symbol=SYMBOL, side=Side.BUY.opens, size=43.0,
                            source=Source.STREAM, received_at=0.5)
    step = next_step(State.FETCHED, evolve(f, position=ours), ctx())
    assert isinstance(step, Fire)
    assert (step.evidence, step.detail) == (Source.STREAM,
                                            "position confirmed: long 43 (stream)")


STOP_INTENT = StopIntent(side=Side.SELL, amount=43.0, trigger_price=0.129, client_id="x")


def test_reads_before_a_stop_end_at_the_protect_deadline_itself() -> None:
    """A deadline has passed at its own instant (``now >= deadline``): a
    recovered attempt reads the executions, and an ids-only stop reply is
    read back, strictly before it, never at it."""
    rec = facts(entry=order(), recovered=True, protect_deadline=5.0, stop_intent=STOP_INTENT,
                now=4.999)
    assert next_step(State.VERIFIED, rec, ctx()) == LookUp(Look.FILLS, rec)
    at_deadline = evolve(rec, now=5.0)
    step = next_step(State.VERIFIED, at_deadline, ctx())
    assert not (isinstance(step, LookUp) and step.what is Look.FILLS), step

    ids_only = StopSnapshot(symbol=SYMBOL, order_id="s", client_id="x", side=None, amount=None,
                            trigger_price=0.129, reduce_only=None)
    f = facts(entry=order(), protect_deadline=5.0, stop_intent=STOP_INTENT, stop=ids_only,
              now=4.999)
    assert next_step(State.VERIFIED, f, ctx(stop_unread=True)) == LookUp(Look.STOP, f)
    step = next_step(State.VERIFIED, evolve(f, now=5.0), ctx(stop_unread=True))
    assert not isinstance(step, LookUp), step  # after it, the reply is all there is


def test_evolving_facts_with_a_field_they_do_not_have_names_it() -> None:
    f = facts()
    with pytest.raises(TypeError, match=r"Facts has no field \['stop_los'\]"):
        evolve(f, stop_los=1.0, now=2.0)
