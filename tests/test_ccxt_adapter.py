"""The ccxt adapter, run on real ccxt classes over the fake transport.

Every test builds a real ``ccxt.async_support.bybit`` / ``binanceusdm`` (or
their ``ccxt.pro`` versions), loads markets offline from recorded instrument
payloads, and talks to the fake venues in ``tests/ccxt_fake.py`` through
ccxt's own request signing, response parsing and ``handle_errors``. Assertions
are on what reached the (fake) exchange and on what the adapter reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import ccxt.async_support as ccxt_async
import pytest

from adapters.ccxt import CcxtAdapter, InvalidClientId
from adapters.ccxt.profiles import OKX_SWAP
from adapters.port import (
    AmbiguousError,
    ExchangeError,
    ExchangePort,
    OrderNotFound,
    OrderRejected,
    OrderStatus,
    PositionSide,
    Side,
    Source,
    TransientError,
)
from adapters.virtual_time import run_virtual
from tests import ccxt_fake as F

T = TypeVar("T")
AVL = "AVL/USDT:USDT"
BTC = "BTC/USDT:USDT"


def run(fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await fn()

    return run_virtual(main())


@contextlib.asynccontextmanager
async def bybit(**venue: Any) -> AsyncIterator[tuple[F.FakeBybit, Any, CcxtAdapter]]:
    pro = venue.pop("pro", False)
    v = F.FakeBybit(**venue)
    ex = F.bybit(v, pro=pro)
    await F.load_markets_offline(ex, v)
    try:
        yield v, ex, CcxtAdapter(ex)
    finally:
        await ex.close()


@contextlib.asynccontextmanager
async def binance(**venue: Any) -> AsyncIterator[tuple[F.FakeBinanceUsdm, Any, CcxtAdapter]]:
    pro = venue.pop("pro", False)
    v = F.FakeBinanceUsdm(**venue)
    ex = F.binanceusdm(v, pro=pro)
    await F.load_markets_offline(ex, v)
    try:
        yield v, ex, CcxtAdapter(ex)
    finally:
        await ex.close()


# ---------------------------------------------------------------------------
# construction
# ---------------------------------------------------------------------------


def test_constructor_does_no_io_and_sets_only_unset_bybit_options() -> None:
    async def go() -> None:
        v = F.FakeBybit()
        ex = F.bybit(v)  # markets not even loaded: any I/O would show up
        adapter = CcxtAdapter(ex)
        assert v.requests == []
        assert isinstance(adapter, ExchangePort)
        assert adapter.position_cache is None  # no stream started
        assert ex.options["enableUnifiedAccount"] is True
        assert ex.options["enableUnifiedMargin"] is False
        # The receive window is the profile's, always (the engine relies on
        # it); the account flags only when the caller left them unset.
        assert adapter.applied_options == {
            "recvWindow": 5000,
            "enableUnifiedMargin": False,
            "enableUnifiedAccount": True,
        }
        await ex.close()

        # A caller who chose (a classic account) is not overridden.
        ex2 = F.bybit(v, options={"enableUnifiedAccount": False})
        adapter2 = CcxtAdapter(ex2)
        assert ex2.options["enableUnifiedAccount"] is False
        assert adapter2.applied_options == {"recvWindow": 5000}
        assert v.requests == []
        await ex2.close()

    run(go)


def test_bybit_account_probe_is_what_ccxt_does_without_the_options() -> None:
    """The fact behind the option: plain ccxt makes two extra GETs before the
    first order; through the adapter the order is the only request."""

    async def go() -> None:
        v = F.FakeBybit()
        raw = F.bybit(v)
        await F.load_markets_offline(raw, v)
        await raw.create_order(AVL, "market", "buy", 43, None, {"clientOrderId": "probe1"})
        paths = [(r.method, r.path) for r in v.requests]
        assert ("GET", "/v5/user/query-api") in paths
        assert ("GET", "/v5/account/info") in paths
        assert paths[-1] == ("POST", "/v5/order/create")
        await raw.close()

        async with bybit() as (v2, _ex, adapter):
            await adapter.create_order(
                symbol=AVL, side=Side.BUY, amount=43, client_id="probe2", reduce_only=False
            )
            assert [(r.method, r.path) for r in v2.requests] == [("POST", "/v5/order/create")]

    run(go)


def test_prepare_moves_binance_leverage_brackets_off_the_critical_path() -> None:
    async def go() -> None:
        async with binance() as (v, _ex, adapter):
            await adapter.prepare()
            assert [r.path for r in v.requests] == ["/fapi/v1/leverageBracket"]
            v.requests.clear()
            await adapter.fetch_positions([BTC])
            assert [r.path for r in v.requests] == ["/fapi/v3/positionRisk"]

    run(go)


# ---------------------------------------------------------------------------
# create: the acknowledgement as reported
# ---------------------------------------------------------------------------


def test_bybit_minimal_create_reply_reports_unknowns_as_none() -> None:
    async def go() -> None:
        async with bybit() as (v, _ex, adapter):
            ack = await adapter.create_order(
                symbol=AVL, side=Side.BUY, amount=43, client_id="sp0000entry", reduce_only=False
            )
            # Bybit's reply has only the two ids: ccxt parses side, amount,
            # filled and status as None, and so must we. Never "unknown".
            assert ack.order_id is not None and ack.client_id == "sp0000entry"
            assert (ack.side, ack.amount, ack.filled, ack.status) == (None, None, None, None)
            assert ack.reduce_only is None
            [req] = v.requests
            assert (req.method, req.path) == ("POST", "/v5/order/create")
            assert req.params["orderLinkId"] == "sp0000entry"
            assert req.params["category"] == "linear"
            assert req.params["side"] == "Buy" and req.params["orderType"] == "Market"
            assert req.params["qty"] == "43"
            assert "reduceOnly" not in req.params
            # ccxt consumed our retry guard; the exchange never sees it.
            assert "maxRetriesOnFailure" not in req.params

    run(go)


def test_bybit_close_is_reduce_only() -> None:
    async def go() -> None:
        async with bybit() as (v, _ex, adapter):
            await adapter.create_order(
                symbol=AVL, side=Side.BUY, amount=43, client_id="open1", reduce_only=False
            )
            await asyncio.sleep(0.01)
            await adapter.create_order(
                symbol=AVL, side=Side.SELL, amount=43, client_id="close1", reduce_only=True
            )
            close = v.sent("POST", "/v5/order/create")[-1]
            assert close.params["side"] == "Sell" and close.params["reduceOnly"] is True

    run(go)


def test_binance_new_zero_reply_is_open_with_nothing_filled_yet() -> None:
    async def go() -> None:
        async with binance() as (v, _ex, adapter):
            ack = await adapter.create_order(
                symbol=BTC, side=Side.BUY, amount=0.01, client_id="sp0000entry", reduce_only=False
            )
            assert ack.status is OrderStatus.OPEN and ack.filled == 0.0
            assert ack.side is Side.BUY and ack.amount == 0.01
            assert not ack.terminal  # "not filled yet", not "not filled"
            [req] = v.requests
            assert (req.method, req.path) == ("POST", "/fapi/v1/order")
            assert req.params["newClientOrderId"] == "sp0000entry"
            assert req.params["newOrderRespType"] == "RESULT"
            assert req.params["type"] == "MARKET" and req.params["quantity"] == "0.01"
            # then the fetch shows the fill
            got = await adapter.fetch_order(symbol=BTC, order_id=ack.order_id, client_id=None)
            assert got.status is OrderStatus.CLOSED and got.filled == 0.01

    run(go)


# ---------------------------------------------------------------------------
# look-ups by id and by client id
# ---------------------------------------------------------------------------


def test_bybit_fetch_by_client_id_falls_back_to_history() -> None:
    async def go() -> None:
        async with bybit(realtime_shows_closed=False) as (v, _ex, adapter):
            await adapter.create_order(
                symbol=AVL, side=Side.BUY, amount=43, client_id="entry7", reduce_only=False
            )
            await asyncio.sleep(0.01)
            v.requests.clear()
            got = await adapter.fetch_order(symbol=AVL, order_id=None, client_id="entry7")
            assert got.client_id == "entry7" and got.side is Side.BUY
            assert got.status is OrderStatus.CLOSED and got.filled == 43 and got.amount == 43
            realtime, history = v.requests
            assert realtime.path == "/v5/order/realtime" and history.path == "/v5/order/history"
            for r in (realtime, history):
                assert r.params["orderLinkId"] == "entry7"
                assert "orderId" not in r.params  # never orderId=None
            assert "orderStatus" not in history.params  # every terminal state

    run(go)


def test_why_not_ccxt_fetch_order_on_bybit() -> None:
    """The ccxt facts behind the Bybit look-up path: fetch_order refuses
    without ``acknowledged``, and with it a client-id look-up sends the
    literal ``orderId=None`` (which Bybit ranks above ``orderLinkId``)."""

    async def go() -> None:
        async with bybit() as (v, ex, _adapter):
            with pytest.raises(ccxt_async.ArgumentsRequired):
                await ex.fetch_order(None, AVL, {"orderLinkId": "abc"})
            assert v.requests == []
            with pytest.raises(ccxt_async.OrderNotFound):
                await ex.fetch_order(None, AVL, {"acknowledged": True, "orderLinkId": "abc"})
            assert v.requests[-1].params["orderId"] == "None"

    run(go)


def test_bybit_fetch_by_id_from_realtime_when_it_still_lists_closed_orders() -> None:
    async def go() -> None:
        async with bybit(realtime_shows_closed=True) as (v, _ex, adapter):
            ack = await adapter.create_order(
                symbol=AVL, side=Side.BUY, amount=43, client_id="entry8", reduce_only=False
            )
            await asyncio.sleep(0.01)
            v.requests.clear()
            got = await adapter.fetch_order(symbol=AVL, order_id=ack.order_id, client_id=None)
            assert got.filled == 43
            [req] = v.requests
            assert req.path == "/v5/order/realtime" and req.params["orderId"] == ack.order_id

    run(go)


def test_bybit_order_not_visible_yet_is_order_not_found() -> None:
    async def go() -> None:
        async with bybit(history_lag=0.5) as (_v, _ex, adapter):
            await adapter.create_order(
                symbol=AVL, side=Side.BUY, amount=43, client_id="entry9", reduce_only=False
            )
            await asyncio.sleep(0.01)
            with pytest.raises(OrderNotFound):
                await adapter.fetch_order(symbol=AVL, order_id=None, client_id="entry9")
            await asyncio.sleep(0.6)
            got = await adapter.fetch_order(symbol=AVL, order_id=None, client_id="entry9")
            assert got.filled == 43

    run(go)


def test_bybit_cancelled_entries_are_found_and_not_reported_as_filled() -> None:
    """A market order that ended with a partial fill, or none: ccxt calls
    PartiallyFilledCanceled "closed", the port's CLOSED means fully filled.
    And ccxt's fetch_closed_orders (orderStatus=Filled) would not find either."""

    async def go() -> None:
        async with bybit() as (_v, ex, adapter):
            adapter_book = _v.book
            adapter_book.fill_ratios = [0.5, 0.0]
            await adapter.create_order(
                symbol=AVL, side=Side.BUY, amount=40, client_id="half", reduce_only=False
            )
            await adapter.create_order(
                symbol=AVL, side=Side.BUY, amount=40, client_id="none", reduce_only=False
            )
            await asyncio.sleep(0.01)
            half = await adapter.fetch_order(symbol=AVL, order_id=None, client_id="half")
            assert half.status is OrderStatus.CANCELED and half.filled == 20 and half.amount == 40
            none = await adapter.fetch_order(symbol=AVL, order_id=None, client_id="none")
            assert none.status is OrderStatus.CANCELED and none.filled == 0
            assert await ex.fetch_closed_orders(AVL, None, None, {"orderLinkId": "none"}) == []

    run(go)


def test_binance_fetch_by_client_id_uses_orig_client_order_id() -> None:
    async def go() -> None:
        async with binance() as (v, _ex, adapter):
            with pytest.raises(OrderNotFound):  # -2013 through handle_errors
                await adapter.fetch_order(symbol=BTC, order_id=None, client_id="nothere")
            await adapter.create_order(
                symbol=BTC, side=Side.SELL, amount=0.01, client_id="short1", reduce_only=False
            )
            await asyncio.sleep(0.01)
            got = await adapter.fetch_order(symbol=BTC, order_id=None, client_id="short1")
            assert got.side is Side.SELL and got.filled == 0.01
            req = v.sent("GET", "/fapi/v1/order")[-1]
            assert req.params == {"symbol": "BTCUSDT", "origClientOrderId": "short1"}

    run(go)


# ---------------------------------------------------------------------------
# stops
# ---------------------------------------------------------------------------


def test_bybit_stop_is_reduce_only_with_the_right_trigger_direction() -> None:
    async def go() -> None:
        async with bybit() as (v, _ex, adapter):
            stop = await adapter.place_stop(
                symbol=AVL, side=Side.SELL, amount=43, trigger_price=0.1290, client_id="stopL"
            )
            req = v.sent("POST", "/v5/order/create")[-1]
            assert req.params["side"] == "Sell" and req.params["orderType"] == "Market"
            assert req.params["reduceOnly"] is True
            assert req.params["triggerDirection"] == 2  # falling, for a long's stop
            assert req.params["triggerPrice"] == "0.129"
            assert req.params["orderLinkId"] == "stopL" and req.params["qty"] == "43"
            # The reply is the bare ack again: nothing invented.
            assert stop.order_id is not None and stop.client_id == "stopL"
            assert (stop.side, stop.amount, stop.trigger_price, stop.status) == (None,) * 4

            await adapter.place_stop(
                symbol=AVL, side=Side.BUY, amount=43, trigger_price=0.1400, client_id="stopS"
            )
            assert v.sent("POST", "/v5/order/create")[-1].params["triggerDirection"] == 1

            [s1, s2] = sorted(await adapter.fetch_stops(AVL), key=lambda s: s.client_id or "")
            assert (s1.client_id, s1.side, s1.amount, s1.trigger_price, s1.reduce_only) == (
                "stopL",
                Side.SELL,
                43,
                0.129,
                True,
            )
            assert s2.side is Side.BUY and s2.trigger_price == 0.14
            assert v.sent("GET", "/v5/order/realtime")[-1].params["orderFilter"] == "StopOrder"

            await adapter.cancel_order(symbol=AVL, order_id=s1.order_id, client_id=None)
            await adapter.cancel_order(symbol=AVL, order_id=None, client_id="stopS")
            assert await adapter.fetch_stops(AVL) == []
            with pytest.raises(OrderNotFound):  # 110001
                await adapter.cancel_order(symbol=AVL, order_id=None, client_id="stopS")

    run(go)


@pytest.mark.parametrize(
    ("side", "trigger", "code"),
    [
        (Side.SELL, 0.1400, "110093"),  # sell stop above the market: expect Falling
        (Side.BUY, 0.1200, "110092"),  # buy stop below the market: expect Rising
    ],
)
def test_bybit_stop_on_the_wrong_side_is_rejected(side: Side, trigger: float, code: str) -> None:
    async def go() -> None:
        async with bybit() as (_v, _ex, adapter):
            with pytest.raises(OrderRejected) as err:
                await adapter.place_stop(
                    symbol=AVL, side=side, amount=43, trigger_price=trigger, client_id="wrongside"
                )
            assert isinstance(err.value.cause, ccxt_async.InvalidOrder)
            assert code in str(err.value)

    run(go)


def test_binance_stop_goes_to_the_algo_endpoint_as_stop_market() -> None:
    async def go() -> None:
        async with binance() as (v, _ex, adapter):
            stop = await adapter.place_stop(
                symbol=BTC, side=Side.SELL, amount=0.01, trigger_price=90000, client_id="stopB"
            )
            [req] = v.requests
            assert (req.method, req.path) == ("POST", "/fapi/v1/algoOrder")
            assert req.params["type"] == "STOP_MARKET" and req.params["algoType"] == "CONDITIONAL"
            assert req.params["reduceOnly"] == "true" and req.params["side"] == "SELL"
            assert req.params["triggerPrice"] == "90000" and req.params["quantity"] == "0.01"
            assert req.params["clientAlgoId"] == "stopB"
            assert stop.side is Side.SELL and stop.amount == 0.01 and stop.trigger_price == 90000
            assert stop.reduce_only is True and stop.status is OrderStatus.OPEN

            [listed] = await adapter.fetch_stops(BTC)
            assert listed.client_id == "stopB"
            assert v.requests[-1].path == "/fapi/v1/openAlgoOrders"
            await adapter.cancel_order(symbol=BTC, order_id=stop.order_id, client_id=None)
            assert (v.requests[-1].method, v.requests[-1].path) == ("DELETE", "/fapi/v1/algoOrder")
            assert v.requests[-1].params["algoId"] == stop.order_id
            with pytest.raises(OrderNotFound):  # -2011 Unknown order sent.
                await adapter.cancel_order(symbol=BTC, order_id=None, client_id="stopB")
            assert v.requests[-1].params["clientAlgoId"] == "stopB"

            with pytest.raises(OrderRejected) as err:  # -2021 would immediately trigger
                await adapter.place_stop(
                    symbol=BTC, side=Side.SELL, amount=0.01, trigger_price=99000, client_id="stopC"
                )
            assert isinstance(err.value.cause, ccxt_async.OrderImmediatelyFillable)

    run(go)


# ---------------------------------------------------------------------------
# error mapping through ccxt's real handle_errors
# ---------------------------------------------------------------------------

WRITE = "write"
READ = "read"


@pytest.mark.parametrize(
    ("fault", "error", "expected", "ccxt_cls"),
    [
        ("error", "insufficient_balance", OrderRejected, ccxt_async.InsufficientFunds),
        ("error", "param_error", OrderRejected, ccxt_async.BadRequest),
        ("error", "invalid_api_key", OrderRejected, ccxt_async.AuthenticationError),
        # refused at the gateway, with Bybit's own code: not placed, retry later
        ("error", "rate_limit", TransientError, ccxt_async.RateLimitExceeded),
        ("error", "timestamp_expired", TransientError, ccxt_async.InvalidNonce),
        ("error", "system_error", AmbiguousError, ccxt_async.ExchangeError),  # 10016
        ("error", "duplicate_order_link_id", AmbiguousError, ccxt_async.InvalidOrder),
        ("timeout_before", None, AmbiguousError, ccxt_async.RequestTimeout),
        ("timeout_after", None, AmbiguousError, ccxt_async.RequestTimeout),
        ("disconnect", None, AmbiguousError, ccxt_async.ExchangeNotAvailable),
    ],
)
def test_bybit_create_errors(
    fault: F.FaultKind, error: str | None, expected: type[Exception], ccxt_cls: type[Exception]
) -> None:
    async def go() -> None:
        async with bybit() as (v, _ex, adapter):
            v.fail("POST", "/v5/order/create", fault, error)
            with pytest.raises(expected) as err:
                await adapter.create_order(
                    symbol=AVL, side=Side.BUY, amount=43, client_id="errcase", reduce_only=False
                )
            assert type(err.value) is expected
            assert isinstance(err.value, ExchangeError)
            assert isinstance(err.value.cause, ccxt_cls)
            assert len(v.sent("POST", "/v5/order/create")) == 1  # nobody resent it
            if isinstance(err.value, TransientError) and error == "rate_limit":
                assert err.value.retry_after is not None

    run(go)


def test_bybit_reduce_only_on_flat_position_is_rejected_by_the_real_rule() -> None:
    async def go() -> None:
        async with bybit() as (_v, _ex, adapter):
            with pytest.raises(OrderRejected) as err:
                await adapter.create_order(
                    symbol=AVL, side=Side.SELL, amount=43, client_id="ro", reduce_only=True
                )
            assert "110017" in str(err.value)

    run(go)


@pytest.mark.parametrize(
    ("fault", "error", "expected"),
    [
        ("error", "rate_limit", TransientError),
        ("error", "system_error", TransientError),
        ("timeout_before", None, TransientError),
        ("disconnect", None, TransientError),
        ("error", "param_error", ExchangeError),
    ],
)
def test_bybit_read_errors_are_transient_not_ambiguous(
    fault: F.FaultKind, error: str | None, expected: type[Exception]
) -> None:
    async def go() -> None:
        async with bybit() as (v, _ex, adapter):
            v.fail("GET", "/v5/position/list", fault, error)
            with pytest.raises(expected) as err:
                await adapter.fetch_positions([AVL])
            assert type(err.value) is expected  # never AmbiguousError for a read
            v.fail("GET", "/v5/order/realtime", fault, error)
            with pytest.raises(expected):
                await adapter.fetch_order(symbol=AVL, order_id=None, client_id="x1")

    run(go)


@pytest.mark.parametrize(
    ("error", "expected", "ccxt_cls"),
    [
        ("margin_insufficient", OrderRejected, ccxt_async.InsufficientFunds),  # -2019
        ("reduce_only_rejected", OrderRejected, ccxt_async.InvalidOrder),  # -2022
        ("min_notional", OrderRejected, ccxt_async.InvalidOrder),  # -4164
        ("invalid_api_key", OrderRejected, ccxt_async.AuthenticationError),  # -2015
        ("backend_timeout", AmbiguousError, ccxt_async.RequestTimeout),  # -1007
        ("unknown_error", AmbiguousError, ccxt_async.OperationFailed),  # -1000
        ("too_many_requests", TransientError, ccxt_async.DDoSProtection),  # 429, -1003
        ("timestamp_outside_window", TransientError, ccxt_async.InvalidNonce),  # -1021
        # a 429 without the exchange's body: who refused it is unknown
        ("gateway_429_no_body", AmbiguousError, ccxt_async.DDoSProtection),
        ("duplicate_client_id", AmbiguousError, ccxt_async.InvalidOrder),  # -4116
    ],
)
def test_binance_create_errors(
    error: str, expected: type[Exception], ccxt_cls: type[Exception]
) -> None:
    async def go() -> None:
        async with binance() as (v, _ex, adapter):
            v.fail("POST", "/fapi/v1/order", "error", error)
            with pytest.raises(expected) as err:
                await adapter.create_order(
                    symbol=BTC, side=Side.BUY, amount=0.01, client_id="errcase", reduce_only=False
                )
            assert type(err.value) is expected
            assert isinstance(err.value, ExchangeError)
            assert isinstance(err.value.cause, ccxt_cls)
            assert len(v.sent("POST", "/fapi/v1/order")) == 1

    run(go)


def test_binance_read_errors() -> None:
    async def go() -> None:
        async with binance() as (v, _ex, adapter):
            v.fail("GET", "/fapi/v1/order", "error", "backend_timeout")
            with pytest.raises(TransientError) as err:
                await adapter.fetch_order(symbol=BTC, order_id="1", client_id=None)
            assert type(err.value) is TransientError
            v.fail("GET", "/fapi/v3/positionRisk", "error", "too_many_requests")
            with pytest.raises(TransientError) as err2:
                await adapter.fetch_positions([BTC])
            assert type(err2.value) is TransientError and err2.value.retry_after

    run(go)


def test_writes_are_never_retried_by_ccxt_even_if_the_caller_configured_retries() -> None:
    async def go() -> None:
        async with bybit() as (v, ex, adapter):
            ex.options["maxRetriesOnFailure"] = 3
            v.fail("POST", "/v5/order/create", "timeout_before", times=5)
            with pytest.raises(AmbiguousError):
                await adapter.create_order(
                    symbol=AVL, side=Side.BUY, amount=43, client_id="once", reduce_only=False
                )
            assert len(v.sent("POST", "/v5/order/create")) == 1
            # The option is real: a read is retried by ccxt (1 + 3 tries).
            v.fail("GET", "/v5/position/list", "timeout_before", times=5)
            with pytest.raises(TransientError):
                await adapter.fetch_positions([AVL])
            assert len(v.sent("GET", "/v5/position/list")) == 4

    run(go)


@pytest.mark.parametrize("client_id", ["x" * 37, "has space", "with.dot!", ""])
def test_bad_client_ids_are_refused_before_sending(client_id: str) -> None:
    async def go() -> None:
        async with bybit() as (v, _ex, adapter):
            with pytest.raises(InvalidClientId):
                await adapter.create_order(
                    symbol=AVL, side=Side.BUY, amount=43, client_id=client_id, reduce_only=False
                )
            with pytest.raises(ValueError):  # InvalidClientId is both
                await adapter.place_stop(
                    symbol=AVL, side=Side.SELL, amount=43, trigger_price=0.129, client_id=client_id
                )
            assert v.requests == []

    run(go)


def test_client_id_limits_follow_the_profile() -> None:
    async def go() -> None:
        async with bybit() as (v, _ex, adapter):
            ok = "a" * 36  # Bybit's and Binance's limit
            await adapter.create_order(
                symbol=AVL, side=Side.BUY, amount=43, client_id=ok, reduce_only=False
            )
            assert v.requests[-1].params["orderLinkId"] == ok
        async with binance() as (v2, ex2, _a):
            okx_rules = CcxtAdapter(ex2, profile=OKX_SWAP)  # 32 alphanumerics
            with pytest.raises(InvalidClientId):
                await okx_rules.create_order(
                    symbol=BTC, side=Side.BUY, amount=0.01, client_id="a" * 33, reduce_only=False
                )
            with pytest.raises(InvalidClientId):
                await okx_rules.create_order(
                    symbol=BTC, side=Side.BUY, amount=0.01, client_id="with-dash", reduce_only=False
                )
            assert v2.requests == []

    run(go)


# ---------------------------------------------------------------------------
# positions and prices
# ---------------------------------------------------------------------------


def test_positions_lag_and_flat_entries() -> None:
    async def go() -> None:
        async with bybit(position_lag=2.0, flat_entry=True) as (v, _ex, adapter):
            await adapter.create_order(
                symbol=AVL, side=Side.BUY, amount=43, client_id="lag1", reduce_only=False
            )
            await asyncio.sleep(0.01)
            [flat] = await adapter.fetch_positions([AVL])  # Bybit's one-way flat entry
            assert flat.size == 0 and flat.side is None and flat.source is Source.REST
            await asyncio.sleep(2.0)
            [pos] = await adapter.fetch_positions([AVL])
            assert pos.side is PositionSide.LONG and pos.size == 43
            assert pos.as_of is None  # REST says nothing about the view's age
            assert pos.received_at == pytest.approx(asyncio.get_running_loop().time(), abs=0.01)
            # Bybit takes one symbol per call: more are fetched together.
            v.requests.clear()
            both = await adapter.fetch_positions([AVL, BTC])
            assert [p.symbol for p in both] == [AVL]
            [req] = v.requests
            assert "symbol" not in req.params and req.params["settleCoin"] == "USDT"

    run(go)


def test_fetch_price() -> None:
    async def go() -> None:
        async with bybit(marks={"AVLUSDT": 0.1358, "BTCUSDT": 97000.0}) as (v, _ex, adapter):
            assert await adapter.fetch_price(AVL) == 0.1358
            assert v.requests[-1].path == "/v5/market/tickers"
        async with binance() as (v2, _ex2, adapter2):
            assert await adapter2.fetch_price(BTC) == 97000.0
            assert v2.requests[-1].path == "/fapi/v1/ticker/24hr"

    run(go)


# ---------------------------------------------------------------------------
# the stream: ccxt pro over the fake WebSocket
# ---------------------------------------------------------------------------


def test_bybit_stream_position_and_order_messages_feed_the_cache() -> None:
    async def go() -> None:
        async with bybit(pro=True) as (v, _ex, adapter):
            cache = adapter.start_stream()
            assert adapter.position_cache is cache
            await asyncio.sleep(0.2)
            [conn] = v.ws_connections
            assert conn.url == "wss://stream.bybit.com/v5/private"
            ops = [(m["op"], m.get("args")) for m in conn.sent]
            assert ops[0][0] == "auth"
            assert ("subscribe", ["position"]) in ops and ("subscribe", ["order"]) in ops
            assert v.requests == []  # no REST snapshot passed off as stream data

            loop = asyncio.get_running_loop()
            conn.push(F.load("bybit", "ws_position"))  # recorded: BTCUSDT Buy 0.100
            snap = await asyncio.wait_for(cache.wait_newer(BTC, 0), 1)
            assert snap.source is Source.STREAM
            assert snap.side is PositionSide.LONG and snap.size == 0.1
            assert snap.as_of == 1697682317.038  # updatedTime, exchange clock
            assert snap.received_at == pytest.approx(loop.time(), abs=0.01)

            flat = F.load("bybit", "ws_position")
            flat["data"][0].update({"side": "", "size": "0", "updatedTime": "1697682400000"})
            conn.push(flat)
            snap = await asyncio.wait_for(cache.wait_newer(BTC, 1), 1)
            assert snap.size == 0 and snap.side is None

            conn.push(F.load("bybit", "ws_order"))  # recorded: Filled, link id demo-entry-1
            order = await asyncio.wait_for(cache.wait_order("demo-entry-1", 0), 1)
            assert order.status is OrderStatus.CLOSED and order.filled == 0.1
            assert order.side is Side.BUY
            got = await adapter.fetch_order(symbol=BTC, order_id=None, client_id="demo-entry-1")
            assert got == order
            assert v.requests == []  # answered from the stream
            await adapter.stop_stream()
            assert not adapter.streaming

    run(go)


def test_binance_stream_account_update_feeds_the_cache() -> None:
    async def go() -> None:
        async with binance(pro=True) as (v, _ex, adapter):
            cache = adapter.start_stream()
            await asyncio.sleep(0.2)
            assert [r.path for r in v.requests] == ["/fapi/v1/listenKey"]
            conn = v.ws_connections[0]
            assert "listenKey=" in conn.url
            conn.push(F.load("binance", "ws_account_update"))  # recorded: BTCUSDT pa 0.010
            snap = await asyncio.wait_for(cache.wait_newer(BTC, 0), 1)
            assert (snap.side, snap.size, snap.source) == (PositionSide.LONG, 0.01, Source.STREAM)
            assert snap.as_of == 1564745798.939  # event time E

            closed = F.load("binance", "ws_account_update")
            closed["a"]["P"][0]["pa"] = "0"
            conn.push(closed)
            snap = await asyncio.wait_for(cache.wait_newer(BTC, 1), 1)
            assert snap.size == 0 and snap.side is None

            update = F.load("binance", "ws_order_trade_update")  # recorded: NEW, client id TEST
            conn.push(update)
            order = await asyncio.wait_for(cache.wait_order("TEST", 0), 1)
            assert (order.status, order.filled, order.side) == (OrderStatus.OPEN, 0.0, Side.SELL)
            update["o"].update({"X": "FILLED", "x": "TRADE", "z": "0.001", "ap": "65000"})
            conn.push(update)
            order = await asyncio.wait_for(cache.wait_order("TEST", 1), 1)
            assert order.status is OrderStatus.CLOSED and order.filled == 0.001
            await adapter.stop_stream()

    run(go)


def test_stream_needs_ccxt_pro() -> None:
    async def go() -> None:
        async with bybit() as (_v, _ex, adapter):
            assert not adapter.supports_stream()
            with pytest.raises(ExchangeError):
                adapter.start_stream()
            assert adapter.position_cache is None

    run(go)


# ---------------------------------------------------------------------------
# the example script (never run against an exchange here)
# ---------------------------------------------------------------------------


def test_example_refuses_to_run_without_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = Path(__file__).parents[1] / "examples" / "bybit_demo_open.py"
    spec = importlib.util.spec_from_file_location("bybit_demo_open", path)
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)

    monkeypatch.delenv("BYBIT_API_KEY", raising=False)
    monkeypatch.setenv("BYBIT_API_SECRET", "only-the-secret")
    argv = ["--side", "buy", "--amount", "0.001", "--stop-loss", "90000"]
    assert demo.main(argv) == 2
    err = capsys.readouterr().err
    assert "refusing to run" in err and "BYBIT_API_KEY" in err
    assert demo.keys_from_env({"BYBIT_API_KEY": "k", "BYBIT_API_SECRET": "s"}) == ("k", "s")
