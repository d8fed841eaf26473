"""The engine end to end through the ccxt adapter and real ccxt classes.

``PositionOpener`` → ``CcxtAdapter`` → ``ccxt.async_support.bybit`` /
``binanceusdm`` (real signing, parsing, ``handle_errors``) → the fake venues
of ``tests/ccxt_fake.py``, in virtual time. The assertions are about what
reached the exchange (every request is recorded there) and where the
attempt ended, never about calls between our own objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from adapters.port import OrderStatus, Source
from fsm import OpenRequest, Policy, State
from tests import ccxt_fake as F
from tests.ccxt_runs import Run, only_entry_adds_exposure, run_on

AVL = "AVL/USDT:USDT"
BTC = "BTC/USDT:USDT"

#: The incident's order: 43 AVL long, stop at 0.1290. No reference price, so
#: the opener checks the stop against the exchange's ticker first.
AVL_LONG = OpenRequest(symbol=AVL, side="buy", amount=43, stop_loss=0.1290)
BTC_LONG = OpenRequest(symbol=BTC, side="buy", amount=0.01, stop_loss=90000)
SEPARATE = Policy(protection="separate")


def open_on(
    venue: F.FakeVenue,
    request: OpenRequest = AVL_LONG,
    *,
    pro: bool = False,
    policy: Policy | None = None,
    setup: Callable[[F.FakeVenue], Any] | None = None,
) -> Run:
    # These scenarios test the separate stop; tests/test_ccxt_attached.py
    # runs the stop attached to the entry (the default on Bybit and OKX).
    return run_on(venue, request, policy=policy or SEPARATE, pro=pro, setup=setup)


# ---------------------------------------------------------------------------
# (1) the incident, on Bybit
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("flat_entry", [False, True], ids=["empty-list", "flat-entry"])
def test_incident_on_bybit_ends_protected(flat_entry: bool) -> None:
    """Minimal create reply (ids only), /v5/position/list empty for the first
    4 s, the fill visible only in the order history: the engine must neither
    mistake the lagging REST view for "not opened" nor guess a side. Bybit may
    show "no position" as an empty list or as its one-way flat entry
    (size "0", side ""); neither may count."""
    venue = F.FakeBybit(position_lag=4.0, realtime_shows_closed=False, flat_entry=flat_entry)
    run = open_on(venue)

    assert run.attempt.state is State.PROTECTED, run.attempt.history
    assert run.path == ["submit", "fetched", "verified", "protected"]
    assert run.alerts == []
    assert run.duration < 1.0  # did not sit out the REST lag
    entry_cid, stop_cid, close_cid = run.ids

    only_entry_adds_exposure(run)
    [entry] = run.with_client_id(entry_cid)
    assert entry.params["side"] == "Buy" and entry.params["qty"] == "43"
    # The ack really was the bare one, and the fill came from order history
    # (realtime no longer lists it), looked up by the acknowledged id.
    order_id = entry.response["result"]["orderId"]
    assert entry.response["result"] == {"orderId": order_id, "orderLinkId": entry_cid}
    [realtime] = [
        r for r in venue.sent("GET", "/v5/order/realtime") if r.params.get("orderId") == order_id
    ]
    assert realtime.response["result"]["list"] == []
    history = venue.sent("GET", "/v5/order/history")
    assert history[-1].params["orderId"] == order_id
    [filled] = history[-1].response["result"]["list"]
    assert (filled["orderStatus"], filled["cumExecQty"]) == ("Filled", "43")
    for listing in venue.sent("GET", "/v5/position/list"):
        shown = listing.response["result"]["list"]
        assert all(p["size"] == "0" for p in shown)  # REST never showed it

    [stop] = run.with_client_id(stop_cid)
    assert stop.params["side"] == "Sell" and stop.params["qty"] == "43"
    assert stop.params["reduceOnly"] is True and stop.params["triggerDirection"] == 2
    assert stop.params["triggerPrice"] == "0.129"
    assert run.with_client_id(close_cid) == []

    # The exchange's own state: long 43, one resting reduce-only stop for 43.
    assert venue.book.position == {"AVLUSDT": 43.0}
    [resting] = [o for o in venue.book.orders.values() if o.conditional and o.open]
    assert (resting.side, resting.qty, resting.reduce_only) == ("sell", 43.0, True)


def test_incident_with_the_stream_running_is_protected_too() -> None:
    venue = F.FakeBybit(position_lag=4.0)
    run = open_on(venue, pro=True)
    assert run.attempt.state is State.PROTECTED
    only_entry_adds_exposure(run)
    assert run.duration < 1.0


# ---------------------------------------------------------------------------
# (2) the same, with the stop refused → reduce-only rollback
# ---------------------------------------------------------------------------


def test_incident_with_stop_refused_rolls_back_with_a_reduce_only_sell() -> None:
    venue = F.FakeBybit(position_lag=4.0)

    def crash_after_fill(v: F.FakeVenue) -> None:
        # The price falls through the stop level right after the fill, so
        # Bybit refuses the sell stop: 110093 "expect Falling".
        v.on_fill = lambda order: v.book.marks.update(AVLUSDT=0.1280)

    run = open_on(venue, setup=crash_after_fill)

    assert run.attempt.state is State.CLOSE_VERIFIED, run.attempt.history
    assert run.path == [
        "submit",
        "fetched",
        "verified",
        "protect_failed",
        "close_sending",
        "close_verified",
    ]
    assert run.alerts == []
    entry_cid, stop_cid, close_cid = run.ids
    only_entry_adds_exposure(run)

    [stop] = run.with_client_id(stop_cid)
    assert stop.outcome == "refused" and stop.response["retCode"] == 110093
    [close] = run.with_client_id(close_cid)
    assert close.params["side"] == "Sell" and close.params["reduceOnly"] is True
    assert close.params["qty"] == "43" and "triggerPrice" not in close.params
    # Never a second Buy (the incident's 86-contract failure).
    buys = [r for r in run.creates() if r.params.get("side") == "Buy"]
    assert buys == run.with_client_id(entry_cid)
    assert venue.book.position == {"AVLUSDT": 0.0}


def test_stop_refused_with_the_stream_running_closes_from_the_stream_view() -> None:
    """With ccxt pro's position stream, the rollback need not wait for REST:
    the streamed position (pushed by the venue through the real WebSocket
    client and handle_message) gives the close side within milliseconds."""
    venue = F.FakeBybit(position_lag=4.0)

    def crash_after_fill(v: F.FakeVenue) -> None:
        v.on_fill = lambda order: v.book.marks.update(AVLUSDT=0.1280)

    run = open_on(venue, pro=True, setup=crash_after_fill)
    assert run.attempt.state is State.CLOSE_VERIFIED, run.attempt.history
    sending = next(t for t in run.attempt.history if t.trigger.value == "close_sending")
    assert sending.evidence is Source.STREAM
    assert run.duration < 1.0
    [close] = run.with_client_id(run.ids[2])
    assert close.params["side"] == "Sell" and close.params["reduceOnly"] is True
    only_entry_adds_exposure(run)


def test_partial_fill_is_protected_for_exactly_the_filled_size() -> None:
    venue = F.FakeBybit(position_lag=1.0)
    venue.book.fill_ratios = [0.5]  # Bybit: PartiallyFilledCanceled, 22 of 43
    run = open_on(venue)
    assert run.attempt.state is State.PROTECTED, run.attempt.history
    [stop] = run.with_client_id(run.ids[1])
    assert stop.params["qty"] == "22" and stop.params["reduceOnly"] is True
    assert venue.book.position == {"AVLUSDT": 22.0}


def test_market_order_that_filled_nothing_is_rejected() -> None:
    venue = F.FakeBybit()
    venue.book.fill_ratios = [0.0]  # Bybit: Cancelled with cumExecQty 0
    run = open_on(venue)
    assert run.attempt.state is State.REJECTED, run.attempt.history
    assert run.path == ["submit", "not_filled"]
    assert len(run.creates()) == 1 and run.alerts == []


# ---------------------------------------------------------------------------
# (3) Binance: NEW/0 acknowledgement, FILLED on fetch
# ---------------------------------------------------------------------------


def test_binance_new_zero_ack_then_filled_is_protected_with_an_algo_stop() -> None:
    venue = F.FakeBinanceUsdm(fill_delay=0.3, position_lag=2.0)
    run = open_on(venue, BTC_LONG)

    assert run.attempt.state is State.PROTECTED, run.attempt.history
    entry_cid, stop_cid, _ = run.ids
    only_entry_adds_exposure(run)
    [entry] = run.with_client_id(entry_cid)
    assert entry.response["status"] == "NEW" and entry.response["executedQty"] == "0"
    assert run.attempt.entry is not None and run.attempt.entry.status is OrderStatus.CLOSED
    assert run.attempt.entry.filled == 0.01

    [stop] = run.with_client_id(stop_cid)
    assert stop.path == "/fapi/v1/algoOrder"
    assert stop.params["type"] == "STOP_MARKET" and stop.params["algoType"] == "CONDITIONAL"
    assert stop.params["reduceOnly"] == "true" and stop.params["side"] == "SELL"
    assert stop.params["quantity"] == "0.01" and stop.params["triggerPrice"] == "90000"
    assert venue.book.position == {"BTCUSDT": 0.01}


def test_binance_stop_on_the_wrong_side_rolls_back() -> None:
    venue = F.FakeBinanceUsdm(position_lag=0.5)

    def crash_after_fill(v: F.FakeVenue) -> None:
        v.on_fill = lambda order: v.book.marks.update(BTCUSDT=89000.0)

    run = open_on(venue, BTC_LONG, setup=crash_after_fill)
    assert run.attempt.state is State.CLOSE_VERIFIED, run.attempt.history
    _, stop_cid, close_cid = run.ids
    [stop] = run.with_client_id(stop_cid)
    assert stop.response == {"code": -2021, "msg": "Order would immediately trigger."}
    [close] = run.with_client_id(close_cid)
    assert close.path == "/fapi/v1/order" and close.params["reduceOnly"] == "true"
    assert close.params["side"] == "SELL"
    only_entry_adds_exposure(run)
    assert venue.book.position == {"BTCUSDT": 0.0}


# ---------------------------------------------------------------------------
# (4) ambiguous creates
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("exchange", ["bybit", "binance"])
def test_create_that_timed_out_but_exists_is_found_by_client_id_never_resent(
    exchange: str,
) -> None:
    if exchange == "bybit":
        venue: F.FakeVenue = F.FakeBybit(position_lag=4.0)
        path, request, lookup_key = "/v5/order/create", AVL_LONG, "orderLinkId"
    else:
        venue = F.FakeBinanceUsdm(position_lag=4.0)
        path, request, lookup_key = "/fapi/v1/order", BTC_LONG, "origClientOrderId"
    run = open_on(venue, request, setup=lambda v: v.fail("POST", path, "timeout_after"))

    assert run.attempt.state is State.PROTECTED, run.attempt.history
    entry_cid = run.ids[0]
    [entry] = run.with_client_id(entry_cid)
    assert entry.outcome == "timeout_after"
    only_entry_adds_exposure(run)
    lookups = [r for r in venue.requests if r.method == "GET" and lookup_key in r.params]
    assert lookups and all(r.params[lookup_key] == entry_cid for r in lookups)


@pytest.mark.parametrize("exchange", ["bybit", "binance"])
def test_create_that_timed_out_and_never_arrived(exchange: str) -> None:
    """The order does not exist. Whatever the engine concludes, it must not
    send it again nor send anything else that adds exposure. (Today it ends
    ORPHANED with one alert: no source ever showed a position, so none can
    prove it flat.)"""
    if exchange == "bybit":
        venue: F.FakeVenue = F.FakeBybit()
        path, request = "/v5/order/create", AVL_LONG
    else:
        venue = F.FakeBinanceUsdm()
        path, request = "/fapi/v1/order", BTC_LONG
    run = open_on(venue, request, setup=lambda v: v.fail("POST", path, "timeout_before"))

    assert run.attempt.terminal
    assert run.attempt.state in (State.ORPHANED, State.REJECTED, State.CLOSE_VERIFIED)
    assert len(run.creates()) == 1  # the lost create, and nothing after it
    only_entry_adds_exposure(run)
    if run.attempt.state is State.ORPHANED:
        assert len(run.alerts) == 1
    assert all(v == 0 for v in venue.book.position.values())


# ---------------------------------------------------------------------------
# (5) each error class → the engine's behaviour
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("venue_cls", "path", "error", "request_"),
    [
        (F.FakeBybit, "/v5/order/create", "insufficient_balance", AVL_LONG),  # 110007
        (F.FakeBybit, "/v5/order/create", "param_error", AVL_LONG),  # 10001
        (F.FakeBybit, "/v5/order/create", "rate_limit", AVL_LONG),  # 10006: refused, not placed
        (F.FakeBinanceUsdm, "/fapi/v1/order", "margin_insufficient", BTC_LONG),  # -2019
        (F.FakeBinanceUsdm, "/fapi/v1/order", "min_notional", BTC_LONG),  # -4164
        (F.FakeBinanceUsdm, "/fapi/v1/order", "too_many_requests", BTC_LONG),  # 429 / -1003
    ],
)
def test_definitive_refusals_of_the_entry_end_rejected(
    venue_cls: type[F.FakeVenue], path: str, error: str, request_: OpenRequest
) -> None:
    venue = venue_cls()
    run = open_on(venue, request_, setup=lambda v: v.fail("POST", path, "error", error))
    assert run.attempt.state is State.REJECTED, run.attempt.history
    assert run.path == ["reject"]
    assert len(run.creates()) == 1 and run.alerts == []
    assert venue.book.orders == {}


@pytest.mark.parametrize(
    ("venue_cls", "path", "error", "request_"),
    [
        (F.FakeBybit, "/v5/order/create", "system_error", AVL_LONG),  # 10016
        (F.FakeBinanceUsdm, "/fapi/v1/order", "backend_timeout", BTC_LONG),  # -1007
        (F.FakeBinanceUsdm, "/fapi/v1/order", "unknown_error", BTC_LONG),  # -1000
    ],
)
def test_execution_status_unknown_errors_are_looked_up_not_resent(
    venue_cls: type[F.FakeVenue], path: str, error: str, request_: OpenRequest
) -> None:
    """The exchange said "status unknown" but had in fact placed the order."""
    venue = venue_cls(position_lag=1.0)  # type: ignore[call-arg]
    run = open_on(venue, request_, setup=lambda v: v.fail("POST", path, "error_after", error))
    assert run.attempt.state is State.PROTECTED, run.attempt.history
    only_entry_adds_exposure(run)
    [entry] = run.with_client_id(run.ids[0])
    assert entry.outcome == "error_after"


def test_stop_whose_answer_was_lost_is_found_not_doubled() -> None:
    venue = F.FakeBybit(position_lag=4.0)

    def lose_stop_answer(v: F.FakeVenue) -> None:
        v.fail("POST", "/v5/order/create", "timeout_after", match=lambda p: "triggerPrice" in p)

    run = open_on(venue, setup=lose_stop_answer)
    assert run.attempt.state is State.PROTECTED, run.attempt.history
    _, stop_cid, _ = run.ids
    assert len(run.with_client_id(stop_cid)) == 1
    assert venue.sent("GET", "/v5/order/realtime")[-1].params.get("orderFilter") == "StopOrder"
    stops = [o for o in venue.book.orders.values() if o.conditional and o.open]
    assert len(stops) == 1


def test_rate_limited_stop_is_retried_under_the_same_client_id() -> None:
    venue = F.FakeBybit(position_lag=4.0)

    def limit_stop_once(v: F.FakeVenue) -> None:
        v.fail(
            "POST", "/v5/order/create", "error", "rate_limit", match=lambda p: "triggerPrice" in p
        )

    run = open_on(venue, setup=limit_stop_once)
    assert run.attempt.state is State.PROTECTED, run.attempt.history
    _, stop_cid, _ = run.ids
    first, second = run.with_client_id(stop_cid)
    assert (first.outcome, second.outcome) == ("error", "ok")
    only_entry_adds_exposure(run)


def test_transient_read_errors_do_not_derail_the_attempt() -> None:
    venue = F.FakeBybit(position_lag=4.0)

    def flaky_reads(v: F.FakeVenue) -> None:
        v.fail("GET", "/v5/order/realtime", "error", "rate_limit")
        v.fail("GET", "/v5/order/history", "timeout_before")
        v.fail("GET", "/v5/order/history", "error", "system_error")

    run = open_on(venue, setup=flaky_reads)
    assert run.attempt.state is State.PROTECTED, run.attempt.history
    assert all(f.times == 0 for f in venue.faults)  # every fault was hit
    only_entry_adds_exposure(run)


def test_rollback_close_whose_answer_was_lost_is_looked_up_not_doubled() -> None:
    venue = F.FakeBybit(position_lag=0.5)

    def refuse_stop_and_lose_close(v: F.FakeVenue) -> None:
        v.fail(
            "POST",
            "/v5/order/create",
            "error",
            "insufficient_balance",
            match=lambda p: "triggerPrice" in p,
        )
        v.fail(
            "POST",
            "/v5/order/create",
            "timeout_after",
            match=lambda p: p.get("reduceOnly") is True and "triggerPrice" not in p,
        )

    run = open_on(venue, setup=refuse_stop_and_lose_close)
    assert run.attempt.state is State.CLOSE_VERIFIED, run.attempt.history
    _, _, close_cid = run.ids
    [close] = run.with_client_id(close_cid)
    assert close.outcome == "timeout_after" and close.params["reduceOnly"] is True
    only_entry_adds_exposure(run)
    assert venue.book.position == {"AVLUSDT": 0.0}
