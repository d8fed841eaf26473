"""The shipped ccxt adapters as conformance venues: real ccxt (pro, with
its stream) over the fakes in ``tests/ccxt_fake.py``, steered by a driver
that turns the fakes' knobs (faults, fill delay, history lag, payload
shapes). Adding a venue is one driver subclass (paths and error names) and
one factory."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from typing import Any, ClassVar

from adapters.ccxt import CcxtAdapter, ExchangeProfile
from adapters.conformance import Call, ErrorKind, Failure, Outcome, Received, Unsupported, Venue
from adapters.port import Side
from tests import ccxt_fake as F

Route = tuple[str, str]


def profile_codes(profile: ExchangeProfile, refused: Collection[str] = ()) -> dict[str, ErrorKind]:
    """Every venue error code the profile lists, with the class the engine
    must see; ``refused`` adds definitive refusals the profile leaves to ccxt."""
    codes: dict[str, ErrorKind] = {c: "refused" for c in refused}
    codes.update({c: "ambiguous" for c in profile.ambiguous_codes})
    codes.update({c: "rate_limited" for c in profile.refused_codes})
    codes.update({c: "not_found" for c in profile.not_found_codes})
    codes.update({c: "duplicate_client_id" for c in profile.duplicate_client_id_codes})
    return codes


class FakeDriver:
    """What the two fakes share. Subclasses name their routes and errors."""

    routes: ClassVar[Mapping[Call, Route]]
    reject_error: ClassVar[str]
    rate_limit_error: ClassVar[str]
    #: keys of an order object that the venue would leave out of a bare reply
    order_keys: ClassVar[tuple[str, ...]]

    def __init__(self, venue: Any, natives: Mapping[str, str]) -> None:
        self.venue = venue
        self.natives = dict(natives)  # canonical -> exchange id
        self.strip = False
        self._once: list[tuple[Route, Callable[[], Callable[[], None]]]] = []
        self._overrides: dict[Route, Callable[[dict[str, Any]], tuple[int, Any]]] = {}
        self._route = venue.route
        venue.route = self._routed

    # plumbing -------------------------------------------------------------------------
    def _routed(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        key = (method, path)
        undo: list[Callable[[], None]] = []
        for i, (route, before) in enumerate(self._once):
            if route == key:
                undo.append(before())
                del self._once[i]
                break
        try:
            if key in self._overrides:
                return self._overrides[key](params)
            status, body = self._route(method, path, params)
        finally:
            for u in undo:
                u()
        if self.strip and key == self.routes["create"]:
            body = self.bare(body)
        return status, body

    def bare(self, body: Any) -> Any:
        """A create reply with the order fields removed (Binance's)."""
        return body

    def _stripped(self, order_json: Callable[[Any], dict[str, Any]]) -> Callable[[Any], Any]:
        def bare(o: Any) -> dict[str, Any]:
            raw = order_json(o)
            return {k: v for k, v in raw.items() if k not in self.order_keys}

        return bare

    def native(self, symbol: str) -> str:
        return self.natives[symbol]

    # the driver -----------------------------------------------------------------------
    def set_price(self, symbol: str, price: float) -> None:
        self.venue.book.marks[self.native(symbol)] = price

    def next_order(self, outcome: Outcome) -> None:
        if outcome == "reject":
            self.venue.fail(*self.routes["create"], "error", self.reject_error)
        elif outcome == "rest":
            def hold() -> Callable[[], None]:
                delay, self.venue.fill_delay = self.venue.fill_delay, 1e6

                def restore() -> None:
                    self.venue.fill_delay = delay

                return restore

            self._once.append((self.routes["create"], hold))

    def fail_next(self, call: Call, failure: Failure) -> None:
        method, path = self.routes[call]
        if failure in ("timeout_before", "timeout_after"):
            self.venue.fail(method, path, failure)
        elif failure == "unavailable":
            self.venue.fail(method, path, "error", "service_unavailable")
        else:
            self.venue.fail(method, path, "error", self.rate_limit_error)

    def delay_next(self, call: Call, seconds: float) -> None:
        self.venue.fail(*self.routes[call], "delayed", delay=seconds)

    def venue_error(self, call: Call, code: str) -> None:
        self.venue.coded_errors[f"code {code}"] = self.coded(code)
        self.venue.fail(*self.routes[call], "error", f"code {code}")

    def coded(self, code: str) -> tuple[int, Any]:
        raise NotImplementedError

    def set_position(self, symbol: str, signed: float) -> None:
        native = self.native(symbol)
        delta = round(signed - self.venue.book.signed(native), 10)
        if delta:
            self.venue.operator_trade(native, "buy" if delta > 0 else "sell", abs(delta))

    def hedge_legs(self, symbol: str, long: float, short: float) -> None:
        native = self.native(symbol)
        self._overrides[self.routes["fetch_positions"]] = (
            lambda p: self.hedged(native, long, short))

    def hedged(self, native: str, long: float, short: float) -> tuple[int, Any]:
        raise NotImplementedError

    def hide_orders(self, seconds: float) -> None:
        raise NotImplementedError

    def ids_only_replies(self) -> Collection[Call]:
        raise NotImplementedError

    def push_position(self, symbol: str, signed: float, at: float) -> None:
        raise NotImplementedError

    def received(self, client_id: str) -> Received | None:
        o = self.venue.book.by_client_id.get(client_id)
        side = Side.parse(o.side) if o is not None else None
        if o is None or side is None:
            return None
        return Received(side=side, amount=o.qty, reduce_only=o.reduce_only,
                        trigger_price=o.trigger_price)


class BybitDriver(FakeDriver):
    routes: ClassVar[Mapping[Call, Route]] = {
        "create": ("POST", "/v5/order/create"),
        "place_stop": ("POST", "/v5/order/create"),
        "fetch_order": ("GET", "/v5/order/realtime"),
        "fetch_stops": ("GET", "/v5/order/realtime"),
        "fetch_positions": ("GET", "/v5/position/list"),
        "cancel": ("POST", "/v5/order/cancel"),
    }
    reject_error = "insufficient_balance"
    rate_limit_error = "rate_limit"
    order_keys = ("side", "orderStatus", "qty", "cumExecQty", "leavesQty", "cumExecValue",
                  "leavesValue", "cumExecFee", "avgPrice", "createdTime", "updatedTime",
                  "reduceOnly", "price")

    def coded(self, code: str) -> tuple[int, Any]:
        return 200, {"retCode": int(code), "retMsg": f"error {code}", "result": {},
                     "retExtInfo": {}, "time": self.venue.ms()}

    def hide_orders(self, seconds: float) -> None:
        self.venue.history_lag = seconds

    def ids_only_replies(self) -> Collection[Call]:
        # The create acknowledgement is bare already (ids only); order reads
        # and the order stream lose the fields too.
        self.strip = True
        self.venue.order_json = self._stripped(self.venue.order_json)
        stripped: tuple[Call, ...] = ("create", "fetch_order")
        return stripped

    def hedged(self, native: str, long: float, short: float) -> tuple[int, Any]:
        legs = []
        for idx, signed in ((1, long), (2, -short)):
            leg = self.venue.position_json(native, signed, 0.0)
            leg["positionIdx"] = idx
            legs.append(leg)
        result: tuple[int, Any] = self.venue._list(legs)
        return result

    def push_position(self, symbol: str, signed: float, at: float) -> None:
        msg = F.load("bybit", "ws_position")
        msg["data"][0].update({
            "symbol": self.native(symbol),
            "side": "" if signed == 0 else ("Buy" if signed > 0 else "Sell"),
            "size": F._fmt(abs(signed)),
            "updatedTime": str(self.venue.ms(at)),
        })
        msg["creationTime"] = self.venue.ms(at)
        self.venue.broadcast(msg)


class BinanceDriver(FakeDriver):
    routes: ClassVar[Mapping[Call, Route]] = {
        "create": ("POST", "/fapi/v1/order"),
        "place_stop": ("POST", "/fapi/v1/algoOrder"),
        "fetch_order": ("GET", "/fapi/v1/order"),
        "fetch_stops": ("GET", "/fapi/v1/openAlgoOrders"),
        "fetch_positions": ("GET", "/fapi/v3/positionRisk"),
        "cancel": ("DELETE", "/fapi/v1/algoOrder"),
    }
    reject_error = "margin_insufficient"
    rate_limit_error = "too_many_requests"
    order_keys = ("side", "status", "origQty", "executedQty", "cumQty", "cumQuote", "avgPrice",
                  "price", "time", "updateTime", "reduceOnly")

    def coded(self, code: str) -> tuple[int, Any]:
        recorded = {str(e["body"]["code"]): int(e["status"])
                    for e in F.load("binance", "errors").values() if isinstance(e["body"], dict)}
        return recorded.get(code, 400), {"code": int(code), "msg": f"error {code}"}

    def hide_orders(self, seconds: float) -> None:
        book = self.venue.book
        since = self.venue.now()

        def hidden(p: dict[str, Any]) -> bool:
            o = book.by_client_id.get(str(p.get("origClientOrderId"))) or book.orders.get(
                str(p.get("orderId")))
            now = self.venue.now()
            return o is not None and o.created_at >= since and now < o.created_at + seconds

        self.venue.fail(*self.routes["fetch_order"], "error", "order_does_not_exist",
                        times=10**9, match=hidden)

    def ids_only_replies(self) -> Collection[Call]:
        self.strip = True
        self.venue.order_json = self._stripped(self.venue.order_json)
        stripped: tuple[Call, ...] = ("create", "fetch_order")
        return stripped

    def bare(self, body: Any) -> Any:
        if isinstance(body, dict):
            return {k: v for k, v in body.items() if k not in self.order_keys}
        return body

    def hedged(self, native: str, long: float, short: float) -> tuple[int, Any]:
        legs = []
        for side, signed in (("LONG", long), ("SHORT", -short)):
            leg = F.load("binance", "position_risk_v3")
            mark = self.venue.book.marks[native]
            leg.update({"symbol": native, "positionSide": side, "positionAmt": F._fmt(signed),
                        "notional": F._fmt(signed * mark), "markPrice": F._fmt(mark),
                        "updateTime": self.venue.ms()})
            legs.append(leg)
        return 200, legs

    def push_position(self, symbol: str, signed: float, at: float) -> None:
        msg = F.load("binance", "ws_account_update")
        msg["E"] = msg["T"] = self.venue.ms(at)
        msg["a"]["P"] = [{"s": self.native(symbol), "pa": F._fmt(signed), "ep": "0", "bep": "0",
                          "cr": "0", "up": "0", "mt": "cross", "iw": "0", "ps": "BOTH"}]
        self.venue.broadcast(msg)


async def _until(ready: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for ``ready()`` (the stream subscribed) with a deadline."""
    async with asyncio.timeout(within):
        while not ready():  # noqa: ASYNC110 - the fake has no event to wait on
            await asyncio.sleep(0.01)


async def ccxt_venue(
    name: str,
    venue: Any,
    build: Callable[..., Any],
    driver: FakeDriver,
    *,
    symbol: str,
    amount: float,
    price: float,
    refused: Collection[str] = (),
    adapter_class: type[CcxtAdapter] = CcxtAdapter,
    subscribed: Callable[[Any], bool] = lambda v: bool(v.ws_connections),
) -> Venue:
    """A real ccxt pro exchange on ``venue``, its adapter streaming."""
    exchange = build(venue, pro=True)
    await F.load_markets_offline(exchange, venue)
    adapter = adapter_class(exchange)
    adapter.start_stream()
    await _until(lambda: subscribed(venue))

    async def close() -> None:
        await adapter.stop_stream()
        await exchange.close()

    return Venue(name=name, adapter=adapter, driver=driver, symbol=symbol,
                 native_symbol=driver.native(symbol), amount=amount, price=price,
                 error_codes=profile_codes(adapter.profile, refused), close=close)


def _bybit_subscribed(venue: Any) -> bool:
    return any(m.get("op") == "subscribe" and "position" in (m.get("args") or [])
               for conn in venue.ws_connections for m in conn.sent)


async def bybit_venue(adapter_class: type[CcxtAdapter] = CcxtAdapter, name: str = "bybit"
                      ) -> Venue:
    venue = F.FakeBybit()
    driver = BybitDriver(venue, {"AVL/USDT:USDT": "AVLUSDT", "BTC/USDT:USDT": "BTCUSDT"})
    # 110007 insufficient balance, 110017 reduce-only not satisfied.
    return await ccxt_venue(name, venue, F.bybit, driver, symbol="AVL/USDT:USDT",
                            amount=43.0, price=0.1343, refused=("110007", "110017"),
                            adapter_class=adapter_class, subscribed=_bybit_subscribed)


async def binance_venue(adapter_class: type[CcxtAdapter] = CcxtAdapter,
                        name: str = "binanceusdm") -> Venue:
    venue = F.FakeBinanceUsdm()
    driver = BinanceDriver(venue, {"BTC/USDT:USDT": "BTCUSDT", "ETH/USDT:USDT": "ETHUSDT"})
    # -2019 margin insufficient, -2021 would trigger at once, -2022 reduce-only.
    return await ccxt_venue(name, venue, F.binanceusdm, driver,
                            symbol="BTC/USDT:USDT", amount=0.002, price=97000.0,
                            refused=("-2019", "-2021", "-2022"), adapter_class=adapter_class)




class OkxDriver(FakeDriver):
    routes: ClassVar[Mapping[Call, Route]] = {
        "create": ("POST", "/api/v5/trade/batch-orders"),
        "place_stop": ("POST", "/api/v5/trade/order-algo"),
        "fetch_order": ("GET", "/api/v5/trade/order"),
        "fetch_stops": ("GET", "/api/v5/trade/orders-algo-pending"),
        "fetch_positions": ("GET", "/api/v5/account/positions"),
        "cancel": ("POST", "/api/v5/trade/cancel-algos"),
    }
    reject_error = "insufficient_margin"
    rate_limit_error = "rate_limited"
    order_keys = ("side", "state", "sz", "accFillSz", "fillSz", "avgPx", "fillPx", "cTime",
                  "uTime", "fillTime", "reduceOnly", "px")

    def coded(self, code: str) -> tuple[int, Any]:
        if code.startswith("50"):  # request-level: code, no data
            return (429 if code == "50011" else 200), {"code": code, "data": [],
                                                       "msg": f"error {code}"}
        return 200, {"code": "1", "msg": "", "data": [
            {"clOrdId": "", "ordId": "", "sCode": code, "sMsg": f"error {code}", "tag": ""}]}

    def hide_orders(self, seconds: float) -> None:
        book = self.venue.book
        since = self.venue.now()

        def hidden(p: dict[str, Any]) -> bool:
            o = book.by_client_id.get(str(p.get("clOrdId"))) or book.orders.get(
                str(p.get("ordId")))
            now = self.venue.now()
            return o is not None and o.created_at >= since and now < o.created_at + seconds

        self.venue.fail(*self.routes["fetch_order"], "error", "order_not_exist",
                        times=10**9, match=hidden)

    def ids_only_replies(self) -> Collection[Call]:
        self.venue.order_json = self._stripped(self.venue.order_json)
        stripped: tuple[Call, ...] = ("create", "fetch_order")
        return stripped

    def hedged(self, native: str, long: float, short: float) -> tuple[int, Any]:
        legs = []
        for side, signed in (("long", long), ("short", -short)):
            leg = self.venue.position_json(native, abs(signed), 0.0)
            leg["posSide"] = side
            legs.append(leg)
        result: tuple[int, Any] = self.venue._env(legs)
        return result

    def push_position(self, symbol: str, signed: float, at: float) -> None:
        raise Unsupported("the OKX fake has no stream")


async def okx_venue(adapter_class: type[CcxtAdapter] = CcxtAdapter, name: str = "okx") -> Venue:
    venue = F.FakeOkx()
    driver = OkxDriver(venue, {"BTC/USDT:USDT": "BTC-USDT-SWAP", "ETH/USDT:USDT": "ETH-USDT-SWAP"})
    exchange = F.okx(venue)
    await F.load_markets_offline(exchange, venue)
    adapter = adapter_class(exchange)
    # 51008 insufficient margin, 51169 nothing to reduce, 51280/51278 stop on
    # the wrong side of the last price.
    return Venue(name=name, adapter=adapter, driver=driver, symbol="BTC/USDT:USDT",
                 native_symbol="BTC-USDT-SWAP", amount=0.02, price=97000.0,
                 error_codes=profile_codes(adapter.profile, ("51008", "51169", "51280", "51278")),
                 close=exchange.close)
