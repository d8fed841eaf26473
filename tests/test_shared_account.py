"""Issue 10, on the simulator: the account is shared. Each test is one of the
reproductions (or its rule) in a world where the attempt is not alone: a
position held before it, an operator trading by hand, REST views without a
timestamp, client ids unique only among open orders, look-ups that fail
without meaning "not found", native symbol spellings, a price grid.

The same reproductions run through the real ccxt classes in
``tests/test_ccxt_shared_*.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.port import Side
from adapters.simulated import (
    AckStyle,
    ClientIdScope,
    Fault,
    OperatorMove,
    SimConfig,
    SimMarket,
    SimulatedExchange,
    StreamMode,
)
from adapters.virtual_time import run_virtual
from fsm import Alert, MemoryJournal, OpenRequest, PositionOpener, State, client_ids
from fsm.request import BadRequest, OppositePosition
from tests.helpers import PRICE, SYMBOL, Outcome, request, run_attempt

F = Fault


def own_fills(o: Outcome) -> list[tuple[Side, float]]:
    return [(f.side, f.amount) for f in o.exchange.fills if f.actor == "client"]


def closes(o: Outcome) -> list[tuple[Side, float, bool]]:
    return [(x.side, x.amount, x.accepted) for x in o.exchange.log
            if x.kind == "market" and x.reduce_only]


# -- 1. exchange-native symbol ----------------------------------------------------------------


def test_a_native_symbol_is_resolved_before_anything_is_sent_and_ends_protected() -> None:
    o = run_attempt(req=request(symbol="AVLUSDT"), ack=AckStyle.MINIMAL,
                    stream=StreamMode.PRESENT, rest_timestamps=False)
    assert o.attempt.state is State.PROTECTED, [s.describe() for s in o.attempt.history]
    assert o.attempt.request.symbol == SYMBOL
    begin = o.journal.records[0]
    assert begin.kind == "begin" and begin.data["request"].symbol == SYMBOL
    (stop,) = o.exchange.resting_stops(SYMBOL)
    assert stop.amount == 43 and stop.side is Side.SELL


def test_an_unknown_symbol_is_refused_with_nothing_sent() -> None:
    ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}, strict_symbols=True))

    async def go() -> None:
        with pytest.raises(BadRequest, match="no market 'NOPEUSDT'"):
            await PositionOpener(ex).open(request(symbol="NOPEUSDT"))

    run_virtual(go())
    assert ex.log == [] and set(ex.calls) == {"market"}


# -- 2. a pre-existing position and a REST view without a timestamp ------------------------------


@pytest.mark.parametrize("stream", [StreamMode.ABSENT, StreamMode.PRESENT])
def test_a_rollback_closes_exactly_its_own_fill_never_the_position_held_before(
        stream: StreamMode) -> None:
    """Account long 10; buy 43; the stop is refused. REST is 4 s behind and,
    as ccxt reports it, carries no timestamp: it shows "long 10". The close
    is for the attempt's 43, and the 10 stay."""
    o = run_attempt(initial_positions={SYMBOL: 10.0}, stop_rejected=True, rest_timestamps=False,
                    rest_position_lag=4.0, ack=AckStyle.MINIMAL, stream=stream)
    assert o.attempt.state is State.CLOSE_VERIFIED, [s.describe() for s in o.attempt.history]
    assert closes(o) == [(Side.SELL, 43.0, True)]
    assert o.exchange.net_position(SYMBOL) == 10
    assert o.alerts == []


def test_a_same_side_position_is_allowed_and_the_stop_covers_only_the_attempts_fill() -> None:
    o = run_attempt(initial_positions={SYMBOL: 10.0}, ack=AckStyle.MINIMAL,
                    rest_timestamps=False)
    assert o.attempt.state is State.PROTECTED
    assert o.attempt.facts.baseline is not None and o.attempt.facts.baseline.size == 10
    assert [(s.side, s.amount) for s in o.exchange.resting_stops(SYMBOL)] == [(Side.SELL, 43)]
    assert o.exchange.net_position(SYMBOL) == 53


# -- 3. recovery acts only on current evidence ----------------------------------------------------


AID = "0123456789abcdef01234567"
ENTRY, STOP, CLOSE = client_ids(AID)


@pytest.mark.parametrize(("moves", "left"), [
    ((OperatorMove(1.0, SYMBOL, -43.0), OperatorMove(2.0, SYMBOL, 20.0)), 20.0),
    ((OperatorMove(1.0, SYMBOL, -43.0),), 0.0),
], ids=["closed by hand, then 20 of the operator's own", "closed by hand, account flat"])
def test_recovery_sends_nothing_when_someone_else_traded_since_the_fill(
        moves: tuple[OperatorMove, ...], left: float) -> None:
    """The process died mid-rollback with the attempt's 43 long. While it was
    down the operator closed them by hand (and, in one variant, opened 20 of
    their own). Recovery reads the executions since the fill, sees trades
    that are not the attempt's, and sends nothing: no close of the
    operator's 20, no stop resting on a flat account."""
    ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}, operator=moves))
    journal = MemoryJournal()
    alerts: list[Alert] = []

    async def go() -> list[Any]:
        journal.begin(AID, request(), ENTRY, 0.0)
        journal.intent(AID, "entry", ENTRY, 0.0, {"side": "buy", "amount": 43.0})
        await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=43, client_id=ENTRY,
                              reduce_only=False)
        journal.transition(AID, 0.1, {"trigger": "protect_failed", "dest": "ROLLING_BACK"})
        await asyncio.sleep(3.0)  # down; the operator trades
        return await PositionOpener(ex, journal=journal, alerts=alerts.append).recover()

    (a,) = run_virtual(go())
    assert a.state is State.ORPHANED, [s.describe() for s in a.history]
    assert [(x.kind, x.client_id) for x in ex.log] == [("market", ENTRY)]  # nothing sent
    assert ex.net_position(SYMBOL) == left and ex.resting_stops() == []
    (alert,) = alerts
    assert "not this attempt's" in alert.message


def test_recovery_without_foreign_trades_still_protects() -> None:
    ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE},
                                     operator=(OperatorMove(0.0, SYMBOL, 0.0),)))
    journal = MemoryJournal()

    async def go() -> list[Any]:
        journal.begin(AID, request(), ENTRY, 0.0)
        journal.intent(AID, "entry", ENTRY, 0.0, {"side": "buy", "amount": 43.0})
        await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=43, client_id=ENTRY,
                              reduce_only=False)
        return await PositionOpener(ex, journal=journal).recover()

    (a,) = run_virtual(go())
    assert a.state is State.PROTECTED
    assert ex.calls.get("fetch_fills") == 1


# -- 4. a failed look-up is not a miss -------------------------------------------------------------


@pytest.mark.parametrize("scope", list(ClientIdScope))
def test_a_close_whose_look_ups_fail_is_never_sent_again(scope: ClientIdScope) -> None:
    """The close executed but its reply was lost; its first two look-ups got
    503s. On Binance a second close under the same client id would execute
    (client ids are unique only among open orders) and sell the 10 held
    before the attempt. The engine keeps looking, finds its close, and the
    10 stay."""
    o = run_attempt(initial_positions={SYMBOL: 10.0}, stop_rejected=True, client_id_scope=scope,
                    faults={"close": (F.TIMEOUT_AFTER,),
                            "fetch_order": (F.UNAVAILABLE, F.UNAVAILABLE)})
    assert o.attempt.state is State.CLOSE_VERIFIED, [s.describe() for s in o.attempt.history]
    assert closes(o) == [(Side.SELL, 43.0, True)]
    assert o.exchange.net_position(SYMBOL) == 10


def test_a_close_lost_on_the_way_is_sent_again_only_after_the_receive_window() -> None:
    o = run_attempt(initial_positions={SYMBOL: 10.0}, stop_rejected=True,
                    client_id_scope=ClientIdScope.OPEN, faults={"close": (F.TIMEOUT_BEFORE,)})
    assert o.attempt.state is State.CLOSE_VERIFIED
    sends = [x for x in o.exchange.log if x.kind == "market" and x.reduce_only]
    assert [(x.amount, x.accepted) for x in sends] == [(43.0, True)]  # the lost one never arrived
    intents = [r for r in o.journal.records if r.kind == "intent" and r.data["action"] == "close"]
    assert len(intents) == 2
    window = o.exchange.config.receive_window
    assert window is not None and intents[1].at - intents[0].at >= window + 1.0
    assert o.exchange.net_position(SYMBOL) == 10


def test_a_delayed_close_that_arrives_within_the_window_is_found_not_doubled() -> None:
    o = run_attempt(initial_positions={SYMBOL: 10.0}, stop_rejected=True,
                    client_id_scope=ClientIdScope.OPEN, delayed_arrival=3.0,
                    faults={"close": (F.DELAYED,)})
    assert o.attempt.state is State.CLOSE_VERIFIED, [s.describe() for s in o.attempt.history]
    assert closes(o) == [(Side.SELL, 43.0, True)]
    assert o.exchange.net_position(SYMBOL) == 10


# -- 5. an opposite position is refused before anything is sent ------------------------------------


@pytest.mark.parametrize("held", [-10.0, -43.0])
def test_an_opposite_position_is_refused_with_nothing_sent(held: float) -> None:
    ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}, initial_positions={SYMBOL: held}))

    async def go() -> OppositePosition:
        with pytest.raises(OppositePosition, match="holds short") as info:
            await PositionOpener(ex).open(request())
        return info.value

    refused = run_virtual(go())
    assert refused.position.size == -held
    assert ex.log == [] and ex.net_position(SYMBOL) == held


# -- 6. a lost create is proven absent, not alerted --------------------------------------------


@pytest.mark.parametrize(("arrival", "expected", "net"), [
    (3.0, State.PROTECTED, 43.0),  # arrives within the window: executed, found, protected
    (5.5, State.REJECTED, 0.0),  # arrives after the 5 s window: refused unexecuted
    (60.0, State.REJECTED, 0.0),
])
def test_a_create_lost_on_the_way_ends_by_evidence_not_by_alarm(
        arrival: float, expected: State, net: float) -> None:
    o = run_attempt(delayed_arrival=arrival, faults={"create": (F.DELAYED,)})
    assert o.attempt.state is expected, [s.describe() for s in o.attempt.history]
    assert o.alerts == []
    assert o.exchange.net_position(SYMBOL) == net
    if expected is State.REJECTED:
        assert "receive window has passed" in o.attempt.history[-1].detail
        # and it stays that way: nothing can arrive any more
        assert o.ended >= 5.0 + 1.0


def test_without_a_receive_window_a_lost_create_stays_loud() -> None:
    o = run_attempt(receive_window=None, faults={"create": (F.TIMEOUT_BEFORE,)})
    assert o.attempt.state is State.ORPHANED and len(o.alerts) == 1


# -- 7. prices and amounts on the exchange's grid ------------------------------------------------


def test_a_stop_is_rounded_to_the_tick_away_from_the_market_before_the_check() -> None:
    """0.13426 rounded to the nearest tick is 0.1343, the market price: the
    exchange would refuse it and the entry would be rolled back at a fee.
    Rounded away from the market it is 0.1342, below the price."""
    o = run_attempt(prices={SYMBOL: 0.1343},
                    req=request(stop_loss=0.13426, reference_price=None))
    assert o.attempt.state is State.PROTECTED
    (stop,) = o.exchange.resting_stops(SYMBOL)
    assert stop.trigger_price == 0.1342
    assert o.attempt.request.stop_loss == 0.1342


def test_a_sell_stop_rounds_up() -> None:
    o = run_attempt(prices={SYMBOL: 0.1343},
                    req=request(side="sell", stop_loss=0.14001, reference_price=None))
    assert o.attempt.state is State.PROTECTED
    (stop,) = o.exchange.resting_stops(SYMBOL)
    assert stop.trigger_price == 0.1401 and stop.side is Side.BUY


@pytest.mark.parametrize(("kw", "match"), [
    (dict(amount=43.7), "not a multiple of AVL/USDT:USDT's lot step 1"),
    (dict(amount=0.4, round_amount=True), "below AVL/USDT:USDT's minimum 1"),
    (dict(stop_loss=0.13426, reference_price=0.13425), "must be below the entry price"),
])
def test_off_grid_input_is_refused_before_sending(kw: dict[str, Any], match: str) -> None:
    ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}))

    async def go() -> None:
        with pytest.raises(BadRequest, match=match):
            await PositionOpener(ex).open(request(**kw))

    run_virtual(go())
    assert ex.log == []


def test_an_amount_is_rounded_down_only_when_asked() -> None:
    o = run_attempt(req=request(amount=43.7, round_amount=True))
    assert o.attempt.state is State.PROTECTED
    assert own_fills(o) == [(Side.BUY, 43.0)]
    intent = next(r for r in o.journal.records if r.kind == "intent")
    assert intent.data["amount"] == 43.0


def test_a_notional_below_the_minimum_is_refused() -> None:
    ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE},
                                     markets={SYMBOL: SimMarket(price_step=0.0001,
                                                                amount_step=1.0,
                                                                min_notional=5.0)}))

    async def go() -> None:
        with pytest.raises(BadRequest,
                           match=r"notional 4\.074 \(30 x 0\.1358\) is below .* minimum 5"):
            await PositionOpener(ex).open(request(amount=30))
        assert (await PositionOpener(ex).open(request(amount=37))).state is State.PROTECTED

    run_virtual(go())
    assert [x.amount for x in ex.log if x.kind == "market"] == [37]


def test_an_open_request_cannot_be_built_with_a_non_bool_round_flag() -> None:
    with pytest.raises(TypeError):
        OpenRequest(symbol=SYMBOL, side="buy", amount=1, stop_loss=0.1, round_amount="yes")  # type: ignore[arg-type]  # the point


# -- the reads before the entry ---------------------------------------------------------------


def test_transient_failures_of_the_reads_before_the_entry_are_retried() -> None:
    o = run_attempt(req=request(reference_price=None),
                    faults={"market": (F.RATE_LIMIT, F.UNAVAILABLE),
                            "fetch_price": (F.UNAVAILABLE,),
                            "fetch_positions": (F.TIMEOUT_BEFORE,)})
    assert o.attempt.state is State.PROTECTED
    assert o.exchange.calls["market"] == 3 and o.exchange.calls["fetch_positions"] == 2


def test_an_account_that_cannot_be_read_is_not_traded() -> None:
    ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE},
                                     faults={"fetch_positions": (F.UNAVAILABLE,) * 500}))

    async def go() -> None:
        with pytest.raises(BadRequest, match=r"cannot read the account's .* position"):
            await PositionOpener(ex).open(request())

    run_virtual(go())
    assert ex.log == []


def test_recovery_from_a_journal_that_lost_the_close_places_no_stop() -> None:
    """The journal's disk filled after the entry's intent; the old process
    closed its 43 from memory, then died. The journal shows an entry only.
    Recovery must not protect a fill that its own lost close already undid
    (a reduce-only stop for 43 would, once triggered, sell the 10 held before
    the attempt): its own close shows among the executions since the fill,
    so it sends nothing and alerts."""
    ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}, initial_positions={SYMBOL: 10.0}))
    journal = MemoryJournal()
    alerts: list[Alert] = []

    async def go() -> list[Any]:
        journal.begin(AID, request(), ENTRY, 0.0)
        journal.intent(AID, "entry", ENTRY, 0.0, {"side": "buy", "amount": 43.0})
        await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=43, client_id=ENTRY,
                              reduce_only=False)
        await ex.create_order(symbol=SYMBOL, side=Side.SELL, amount=43, client_id=CLOSE,
                              reduce_only=True)
        return await PositionOpener(ex, journal=journal, alerts=alerts.append).recover()

    (a,) = run_virtual(go())
    assert a.state is State.ORPHANED, [s.describe() for s in a.history]
    assert [x.client_id for x in ex.log] == [ENTRY, CLOSE]  # nothing sent by recovery
    assert ex.resting_stops() == [] and ex.net_position(SYMBOL) == 10
    assert "the attempt's own close" in alerts[0].message
