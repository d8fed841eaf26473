"""The simulator's hostile venue, one betrayal at a time, against the engine.

Each betrayal is something a real venue does to a client; the engine must
notice it and act (DESIGN rules 4, 6, 7), never trust it."""

from __future__ import annotations

from typing import Any

from adapters.simulated import AckStyle, SimConfig
from fsm import State
from tests.helpers import PRICE, SYMBOL, run_attempt

CALM = SimConfig(prices={SYMBOL: PRICE})


def test_a_stop_made_without_reduce_only_never_protects() -> None:
    o = run_attempt(CALM, stop_drops_reduce_only=True)
    assert o.attempt.state is not State.PROTECTED
    assert o.attempt.state is State.CLOSE_VERIFIED and o.exchange.net_position(SYMBOL) == 0
    assert not o.exchange.resting_stops(SYMBOL), "the wrong stop was left resting"


def test_a_rollback_cancels_a_stop_the_venue_made_wrong_even_when_orphaned() -> None:
    """Found by the hostile venue: the close is refused, so the attempt ends
    ORPHANED; the stop the venue made without reduce-only (it could open a
    position) must not be left resting."""
    knobs: list[dict[str, Any]] = [dict(stop_drops_reduce_only=True), dict(stop_flips_side=True)]
    for knob in knobs:
        o = run_attempt(CALM, close_rejected=True, **knob)
        assert o.attempt.state is State.ORPHANED, knob
        assert not o.exchange.resting_stops(SYMBOL), knob


def test_a_stop_made_on_the_wrong_side_or_size_never_protects() -> None:
    for knob in (dict(stop_flips_side=True), dict(stop_amount_skew=1.0),
                 dict(stop_amount_skew=-1.0)):
        o = run_attempt(CALM, **knob)
        assert o.attempt.state is State.CLOSE_VERIFIED, knob
        assert not o.exchange.resting_stops(SYMBOL), knob


def test_a_silent_stop_reply_is_read_back_before_it_protects() -> None:
    """Rule 4 (found by the hostile venue): an ids-only reply (Bybit v5) says
    nothing about the flag the venue may have dropped; the stop is read back."""
    bad = run_attempt(CALM, stop_ack_ids_only=True, stop_drops_reduce_only=True)
    assert bad.attempt.state is not State.PROTECTED
    assert bad.exchange.calls.get("fetch_stops", 0) >= 1
    good = run_attempt(CALM, stop_ack_ids_only=True)
    assert good.attempt.state is State.PROTECTED
    assert good.exchange.calls.get("fetch_stops", 0) == 1
    assert len(good.exchange.resting_stops(SYMBOL)) == 1
    assert good.attempt.stop is not None and good.attempt.stop.reduce_only is True


def test_a_full_stop_reply_is_not_read_back() -> None:
    o = run_attempt(CALM)
    assert o.attempt.state is State.PROTECTED
    assert o.exchange.calls.get("fetch_stops", 0) == 0


def test_an_acknowledgement_with_one_id_of_two_still_protects() -> None:
    for only in ("order_id", "client_id"):
        for ack in AckStyle:
            o = run_attempt(CALM, ack=ack, ack_only=only)
            assert o.attempt.state is State.PROTECTED, (only, ack)
            assert o.exchange.net_position(SYMBOL) == 43


def test_a_close_larger_than_the_position_is_cut_and_reported_filled() -> None:
    """The venue's side of the betrayal: a reduce-only sell of 43 against a
    long of 20 is reported as an order of 20, filled in full; an honest venue
    reports 43 asked, 20 filled. Neither proves an exposure of 43 gone (the
    guard's side: tests/test_guards_boundaries.py)."""
    from adapters.simulated import SimulatedExchange
    from adapters.virtual_time import run_virtual
    from fsm.model import OrderStatus, Side

    def close(**knobs: object) -> tuple[float | None, float | None, OrderStatus | None]:
        ex = SimulatedExchange(CALM, initial_positions={SYMBOL: 20.0}, **knobs)
        o = run_virtual(ex.create_order(symbol=SYMBOL, side=Side.SELL, amount=43.0,
                                        client_id="c1", reduce_only=True))
        assert ex.net_position(SYMBOL) == 0
        return o.amount, o.filled, o.status

    assert close(close_cut_to_position=True) == (20.0, 20.0, OrderStatus.CLOSED)
    assert close() == (43.0, 20.0, OrderStatus.CANCELED)
