"""The ccxt adapter in a shared account (issue 10), on real ccxt classes.

What the engine needs to answer only for its own exposure: one canonical
symbol whatever the caller typed, the exchange's grid, the receive window on
the wire (and enforced by the venue), everyone's executions, and look-ups
whose failures are not mistaken for "not found". Each test runs real
``ccxt.async_support`` Bybit / Binance USDⓈ-M classes over the fake venues
of ``tests/ccxt_fake.py`` and asserts on what reached the venue and what the
adapter reports. Venue facts are cited in ``tests/payloads/SOURCES.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from adapters.ccxt import CcxtAdapter
from adapters.port import (
    AmbiguousError,
    ExchangeError,
    Fill,
    Market,
    OrderNotFound,
    PositionSide,
    Side,
    Source,
    TransientError,
    UnknownSymbol,
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
async def venue(name: str, **kw: Any) -> AsyncIterator[tuple[F.FakeVenue, Any, CcxtAdapter]]:
    config = kw.pop("config", {})
    v: F.FakeVenue
    if name == "bybit":
        v = F.FakeBybit(**kw)
        ex = F.bybit(v, **config)
    else:
        v = F.FakeBinanceUsdm(**kw)
        ex = F.binanceusdm(v, **config)
    await F.load_markets_offline(ex, v)
    try:
        yield v, ex, CcxtAdapter(ex)
    finally:
        await ex.close()


#: Per venue: the unified symbol, its native id, an order size, the create
#: path, the order look-up path, and the client-id key on the create.
SETUP = {
    "bybit": (AVL, "AVLUSDT", 43.0, "/v5/order/create", "/v5/order/realtime", "orderLinkId"),
    "binanceusdm": (
        BTC,
        "BTCUSDT",
        0.01,
        "/fapi/v1/order",
        "/fapi/v1/order",
        "newClientOrderId",
    ),
}
VENUES = list(SETUP)


# ---------------------------------------------------------------------------
# market(): one canonical symbol, the venue's grid
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "spelling", "expected"),
    [
        # Bybit AVLUSDT: tick 0.0001, qty step 1, min qty 1, min value 5 USDT
        ("bybit", AVL, Market(AVL, "AVLUSDT", 0.0001, 1.0, 1.0, 5.0)),
        ("bybit", "AVLUSDT", Market(AVL, "AVLUSDT", 0.0001, 1.0, 1.0, 5.0)),
        # Bybit "BTCUSDT" is also the spot pair's id: the perpetual wins.
        ("bybit", "BTCUSDT", Market(BTC, "BTCUSDT", 0.1, 0.001, 0.001, 5.0)),
        ("bybit", BTC, Market(BTC, "BTCUSDT", 0.1, 0.001, 0.001, 5.0)),
        # Binance USDⓈ-M BTCUSDT: tick 0.1, step 0.001, MIN_NOTIONAL 100
        ("binanceusdm", BTC, Market(BTC, "BTCUSDT", 0.1, 0.001, 0.001, 100.0)),
        ("binanceusdm", "BTCUSDT", Market(BTC, "BTCUSDT", 0.1, 0.001, 0.001, 100.0)),
    ],
)
def test_market_resolves_either_spelling_to_the_canonical_symbol(
    name: str, spelling: str, expected: Market
) -> None:
    async def go() -> None:
        async with venue(name) as (v, ex, adapter):
            market = await adapter.market(spelling)
            assert market == expected
            assert v.requests == []  # markets were loaded; nothing else asked
            if name == "bybit" and spelling == "BTCUSDT":
                # the ambiguity is real: ccxt lists two markets under the id
                assert {m["symbol"] for m in ex.markets_by_id["BTCUSDT"]} == {
                    "BTC/USDT",
                    BTC,
                }

    run(go)


@pytest.mark.parametrize("name", VENUES)
@pytest.mark.parametrize("spelling", ["NOPEUSDT", "NOPE/USDT:USDT", "avlusdt"])
def test_unknown_symbol(name: str, spelling: str) -> None:
    async def go() -> None:
        async with venue(name) as (v, _ex, adapter):
            with pytest.raises(UnknownSymbol):
                await adapter.market(spelling)
            with pytest.raises(UnknownSymbol):
                await adapter.fetch_fills(spelling, None)
            assert v.requests == []

    run(go)


def test_market_loads_markets_when_ccxt_has_none_and_maps_a_failure() -> None:
    async def go() -> None:
        v = F.FakeBinanceUsdm()
        ex = F.binanceusdm(v)
        adapter = CcxtAdapter(ex)
        v.fail("GET", "/fapi/v1/exchangeInfo", "error", "service_unavailable")
        with pytest.raises(TransientError):
            await adapter.market("BTCUSDT")
        await ex.close()

    run(go)


# ---------------------------------------------------------------------------
# the receive window: stated, on the wire on every write, enforced
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", VENUES)
def test_receive_window_is_stated_and_sent_on_every_write(name: str) -> None:
    symbol, _native, qty, _create, _lookup, _key = SETUP[name]

    async def go() -> None:
        # The caller configured a different window; writes still carry the
        # profile's, because the engine's proof of absence depends on it.
        async with venue(name, config={"options": {"recvWindow": 20000}}) as (v, ex, adapter):
            assert adapter.receive_window == 5.0
            assert adapter.lookup_lag > 0
            await adapter.create_order(
                symbol=symbol, side=Side.BUY, amount=qty, client_id="rw-entry", reduce_only=False
            )
            mark = 0.1343 if name == "bybit" else 97000.0
            stop = await adapter.place_stop(
                symbol=symbol,
                side=Side.SELL,
                amount=qty,
                trigger_price=round(mark * 0.95, 4 if name == "bybit" else 1),
                client_id="rw-stop",
            )
            await adapter.create_order(
                symbol=symbol, side=Side.SELL, amount=qty, client_id="rw-close", reduce_only=True
            )
            ex.options["recvWindow"] = 60000  # changed behind the adapter's back
            await adapter.cancel_order(symbol=symbol, order_id=stop.order_id, client_id=None)
            writes = [r for r in v.requests if r.method in ("POST", "DELETE")]
            assert len(writes) == 4
            for r in writes:
                assert r.outcome == "ok", r
                assert r.recv_window == 5000, (r.path, r.recv_window)
                assert r.timestamp is not None
                assert 0 <= v.ms(r.arrived) - r.timestamp <= 5000
            if name == "bybit":
                # Bybit v5 carries it as a signed header, not a parameter.
                assert all(r.headers["X-BAPI-RECV-WINDOW"] == "5000" for r in writes)
                assert all("recvWindow" not in r.params for r in writes)

    run(go)


@pytest.mark.parametrize("name", VENUES)
@pytest.mark.parametrize(("delay", "executes"), [(1.0, True), (5.5, False)])
def test_a_request_delayed_in_transit_executes_only_within_the_window(
    name: str, delay: float, executes: bool
) -> None:
    """The client times out at once (AmbiguousError); the request reaches the
    venue ``delay`` seconds later. Within the 5 s window it executes; beyond
    it the venue refuses it with its own code and nothing ever happens."""
    symbol, native, qty, create, _lookup, key = SETUP[name]
    code = {"bybit": 10002, "binanceusdm": -1021}[name]

    async def go() -> None:
        async with venue(name) as (v, _ex, adapter):
            v.fail("POST", create, "delayed", delay=delay)
            with pytest.raises(AmbiguousError):
                await adapter.create_order(
                    symbol=symbol, side=Side.BUY, amount=qty, client_id="late1", reduce_only=False
                )
            assert v.book.signed(native) == 0  # not arrived yet
            await asyncio.sleep(delay + 0.5)
            [req] = v.sent("POST", create)
            assert req.params[key] == "late1"
            if executes:
                assert req.outcome == "late-ok"
                assert v.book.signed(native) == qty
                found = await adapter.fetch_order(symbol=symbol, order_id=None, client_id="late1")
                assert found.filled == qty
            else:
                assert req.outcome == "late-expired"
                body = req.response
                assert (body.get("retCode") if name == "bybit" else body.get("code")) == code
                assert v.book.signed(native) == 0
                assert "late1" not in v.book.by_client_id
                with pytest.raises(OrderNotFound):
                    await adapter.fetch_order(symbol=symbol, order_id=None, client_id="late1")

    run(go)


@pytest.mark.parametrize("name", VENUES)
def test_a_request_stamped_too_long_ago_is_refused_as_a_plain_transient(name: str) -> None:
    """The client's clock lags the venue's by more than the window: the venue
    refuses at the gateway (10002 / -1021); nothing executed, so the adapter
    says TransientError, not AmbiguousError."""
    symbol, native, qty, _create, _lookup, _key = SETUP[name]

    async def go() -> None:
        async with venue(name) as (v, ex, adapter):
            ex.milliseconds = lambda: v.ms() - 6000
            with pytest.raises(TransientError) as err:
                await adapter.create_order(
                    symbol=symbol, side=Side.BUY, amount=qty, client_id="skew1", reduce_only=False
                )
            assert type(err.value) is TransientError
            assert v.requests[-1].outcome == "expired"
            assert v.book.signed(native) == 0

    run(go)


# ---------------------------------------------------------------------------
# fetch_fills: everyone's executions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", VENUES)
def test_fetch_fills_reports_every_execution_including_the_operators(name: str) -> None:
    symbol, native, qty, _create, _lookup, _key = SETUP[name]
    small = 10.0 if name == "bybit" else 0.002

    async def go() -> None:
        async with venue(name) as (v, _ex, adapter):
            v.operator_open(native, "buy", small, client_id="before-since")
            await asyncio.sleep(1.0)
            since = v.ms() / 1000.0 - 0.001
            ack = await adapter.create_order(
                symbol=symbol, side=Side.BUY, amount=qty, client_id="ours-1", reduce_only=False
            )
            await asyncio.sleep(0.1)
            v.operator_close(native, qty, client_id="manual-close")
            v.operator_open(native, "buy", small * 2, client_id="manual-open")
            fills = await adapter.fetch_fills(native, since)  # native spelling works too
            has_cid = name == "bybit"  # Binance userTrades carry no client id
            assert [(f.client_id, f.side, f.amount) for f in fills] == [
                ("ours-1" if has_cid else None, Side.BUY, qty),
                ("manual-close" if has_cid else None, Side.SELL, qty),
                ("manual-open" if has_cid else None, Side.BUY, small * 2),
            ]
            assert all(isinstance(f, Fill) and f.symbol == symbol for f in fills)
            assert fills[0].order_id == ack.order_id
            assert all(f.order_id for f in fills)
            stamps = [f.timestamp for f in fills]
            assert all(t is not None and t >= since for t in stamps)
            assert stamps == sorted(stamps)  # type: ignore[type-var]
            # everything, without since: the pre-existing fill is there too
            assert len(await adapter.fetch_fills(symbol, None)) == 4
            # the request was the venue's history endpoint, with startTime
            path = {"bybit": "/v5/execution/list", "binanceusdm": "/fapi/v1/userTrades"}[name]
            req = v.sent("GET", path)[0]
            assert int(req.params["startTime"]) == int(since * 1000)
            assert req.params["symbol"] == native

    run(go)


@pytest.mark.parametrize("name", VENUES)
def test_fetch_fills_never_returns_a_list_that_may_be_partial(name: str) -> None:
    symbol, native, _qty, _create, _lookup, _key = SETUP[name]
    page = {"bybit": 100, "binanceusdm": 1000}[name]
    small = 1.0 if name == "bybit" else 0.002

    async def go() -> None:
        async with venue(name) as (v, _ex, adapter):
            for i in range(page):
                v.operator_trade(native, "buy" if i % 2 == 0 else "sell", small)
            with pytest.raises(ExchangeError):
                await adapter.fetch_fills(symbol, None)
            v.fail(
                "GET",
                {"bybit": "/v5/execution/list", "binanceusdm": "/fapi/v1/userTrades"}[name],
                "error",
                "service_unavailable",
            )
            with pytest.raises(TransientError):
                await adapter.fetch_fills(symbol, 0.0)

    run(go)


# ---------------------------------------------------------------------------
# look-ups that fail are not "not found"
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", VENUES)
@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("error", "service_unavailable"),
        ("error", "bad_gateway"),
        ("error", "gateway_timeout"),
        ("timeout_before", None),
        ("disconnect", None),
    ],
)
def test_a_failed_look_up_is_transient_never_order_not_found(
    name: str, kind: F.FaultKind, error: str | None
) -> None:
    symbol, _native, qty, _create, lookup, _key = SETUP[name]

    async def go() -> None:
        async with venue(name) as (v, _ex, adapter):
            await adapter.create_order(
                symbol=symbol, side=Side.BUY, amount=qty, client_id="look1", reduce_only=False
            )
            v.fail("GET", lookup, kind, error, times=2)
            for _ in range(2):
                with pytest.raises(TransientError) as err:
                    await adapter.fetch_order(symbol=symbol, order_id=None, client_id="look1")
                assert not isinstance(err.value, OrderNotFound)
                assert type(err.value) is TransientError  # a read: never "ambiguous"
            found = await adapter.fetch_order(symbol=symbol, order_id=None, client_id="look1")
            assert found.client_id == "look1" and found.filled == qty
            # and a real miss is still a miss
            with pytest.raises(OrderNotFound):
                await adapter.fetch_order(symbol=symbol, order_id=None, client_id="never-sent")

    run(go)


# ---------------------------------------------------------------------------
# client-id uniqueness, per venue
# ---------------------------------------------------------------------------


def test_binance_duplicate_client_id_of_a_filled_order_executes_again() -> None:
    """Binance New Order: newClientOrderId is unique among OPEN orders only.
    A market order that filled is not open, so re-sending it under the same
    id is a second order that executes: uniqueness is no safety net."""

    async def go() -> None:
        async with venue("binanceusdm") as (v, _ex, adapter):
            for _ in range(2):
                await adapter.create_order(
                    symbol=BTC, side=Side.BUY, amount=0.01, client_id="dup1", reduce_only=False
                )
            await asyncio.sleep(0.01)  # the second one fills too
            creates = v.sent("POST", "/fapi/v1/order")
            assert [r.outcome for r in creates] == ["ok", "ok"]
            assert v.book.signed("BTCUSDT") == pytest.approx(0.02)
            fills = await adapter.fetch_fills(BTC, None)
            assert len(fills) == 2 and fills[0].order_id != fills[1].order_id
            # the id now answers with the latest order
            found = await adapter.fetch_order(symbol=BTC, order_id=None, client_id="dup1")
            assert found.order_id == fills[1].order_id
            # ... while an id held by a resting (open) order is refused
            await adapter.place_stop(
                symbol=BTC, side=Side.SELL, amount=0.02, trigger_price=90000, client_id="stop1"
            )
            with pytest.raises(ExchangeError):
                await adapter.place_stop(
                    symbol=BTC, side=Side.SELL, amount=0.02, trigger_price=90000, client_id="stop1"
                )

    run(go)


def test_bybit_order_link_id_is_unique_per_account_even_after_the_fill() -> None:
    async def go() -> None:
        async with venue("bybit") as (v, _ex, adapter):
            await adapter.create_order(
                symbol=AVL, side=Side.BUY, amount=43, client_id="dup1", reduce_only=False
            )
            with pytest.raises(AmbiguousError):  # 110072: ours may exist
                await adapter.create_order(
                    symbol=AVL, side=Side.BUY, amount=43, client_id="dup1", reduce_only=False
                )
            assert v.book.signed("AVLUSDT") == 43
            assert v.sent("POST", "/v5/order/create")[-1].response["retCode"] == 110072

    run(go)


# ---------------------------------------------------------------------------
# REST positions carry no view timestamp; the fake's grid rules
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", VENUES)
def test_rest_positions_have_no_view_timestamp(name: str) -> None:
    symbol, native, qty, _create, _lookup, _key = SETUP[name]

    async def go() -> None:
        async with venue(name) as (v, ex, adapter):
            v.operator_open(native, "buy", qty)
            changed = v.ms()
            await asyncio.sleep(30.0)
            [pos] = await adapter.fetch_positions([symbol])
            assert pos.source is Source.REST and pos.side is PositionSide.LONG
            assert pos.size == qty
            assert pos.as_of is None  # ccxt reports no time for the view
            # what the venue reports is the position's last change, 30 s ago,
            # which says nothing about how fresh the view is
            raws = await ex.fetch_positions([symbol])
            key = "lastUpdateTimestamp" if name == "bybit" else "timestamp"
            assert raws[0][key] == changed

    run(go)


@pytest.mark.parametrize(
    ("name", "qty", "code"),
    [
        ("bybit", "43.5", 10001),  # qtyStep 1
        ("bybit", "0", 10001),  # below minOrderQty
        ("binanceusdm", "0.0105", -1111),  # stepSize 0.001
        ("binanceusdm", "0.001", -4164),  # 97 USDT < MIN_NOTIONAL 100
    ],
)
def test_the_fake_refuses_orders_off_the_grid(name: str, qty: str, code: int) -> None:
    """ccxt itself truncates an amount to the step before sending
    (``amount_to_precision``), so these are raw requests: the venue is no
    kinder than the real one when something does get through."""

    async def go() -> None:
        async with venue(name) as (_v, ex, _adapter):
            if name == "bybit":
                body = await ex.privatePostV5OrderCreate(
                    {
                        "category": "linear",
                        "symbol": "AVLUSDT",
                        "side": "Buy",
                        "orderType": "Market",
                        "qty": qty,
                        "orderLinkId": "grid1",
                    }
                )
                assert False, body  # pragma: no cover
            await ex.fapiPrivatePostOrder(
                {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": qty}
            )

    with pytest.raises(Exception) as err:
        run(go)
    assert str(code) in str(err.value)
