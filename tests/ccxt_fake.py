"""A fake exchange under real ccxt: only the transport is replaced.

ccxt's ``async_support`` exchanges send every REST request through
``self.session.<method>(url, data=..., headers=...)`` (an aiohttp session) and
every WebSocket through ``session.ws_connect(url)``. A caller may hand ccxt its
own session (``{"session": ...}`` in the config), so that is where this fake
plugs in: :class:`FakeSession` stands in for aiohttp, and everything above it
runs for real: request signing, ``Exchange.fetch`` (response decoding,
``handle_errors``, ``handle_http_status_code``), the exchange's parsers, ccxt
pro's WebSocket ``Client`` (receive loop, JSON decoding) and its
``handle_message`` dispatch. A timeout is an ``asyncio.TimeoutError`` raised
where aiohttp would raise it, so ccxt turns it into ``RequestTimeout`` itself.

The venues (:class:`FakeBybit`, :class:`FakeBinanceUsdm`) are small, stateful
models of the two exchanges, answering with the recorded bodies in
``tests/payloads`` (see ``tests/payloads/SOURCES.md``): orders are accepted,
fill after a configurable delay, move the position, and show up in the order
endpoints and (with a configurable lag) in the REST position list; stops rest
until cancelled; business rules produce the exchanges' real error bodies
(reduce-only on a flat position, trigger price on the wrong side, duplicate
client id). Faults (timeouts before or after the exchange applied the
request, error bodies, disconnects) are injected per endpoint. Every request
is recorded with its parsed parameters.

Time is the event loop's clock, so under ``adapters.virtual_time`` a 4 s lag
costs nothing.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
from aiohttp import WSMessage, WSMsgType

PAYLOADS = Path(__file__).with_name("payloads")

#: Exchange time (ms) at loop time 0; exchange timestamps are derived from the
#: loop clock so that they move with virtual time.
EPOCH_MS = 1_735_800_000_000

#: Parameters that are transport noise, not part of what was asked (they are
#: kept on the :class:`Request` as ``timestamp`` / ``recv_window``).
_NOISE = {"timestamp", "signature", "recvWindow"}

#: Bare gateway failures, the same on both venues: an HTML page with a 5xx
#: status and no exchange error code (ccxt: ``handle_http_status_code`` ->
#: ExchangeNotAvailable for 502/503/504, ``base/exchange.py``
#: ``httpExceptions``). Usable as ``Fault.error`` on either venue.
HTTP_ERRORS: dict[str, tuple[int, str]] = {
    "service_unavailable": (503, "<html><body><h1>503 Service Unavailable</h1></body></html>"),
    "bad_gateway": (502, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "gateway_timeout": (504, "<html><body><h1>504 Gateway Time-out</h1></body></html>"),
}


def load(venue: str, name: str) -> Any:
    """A fresh copy of a recorded payload."""
    return json.loads((PAYLOADS / venue / f"{name}.json").read_text())


def _num(text: object) -> float:
    return float(str(text))


def _ms_to_loop(value: object) -> float | None:
    """An exchange timestamp (ms) on the loop clock; ``None`` if absent."""
    if value is None or value == "":
        return None
    return (int(str(value)) - EPOCH_MS) / 1000.0


def _on_grid(value: float, step: float) -> bool:
    """Whether ``value`` is a whole number of ``step`` (to float noise)."""
    if step <= 0:
        return True
    n = value / step
    return abs(n - round(n)) < 1e-6


def _fmt(value: float) -> str:
    """Exchange-style decimal string ("43", "0.1343", "0")."""
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


# ---------------------------------------------------------------------------
# records and faults
# ---------------------------------------------------------------------------


@dataclass
class Request:
    """One HTTP request as the fake exchange received it."""

    method: str
    path: str
    params: dict[str, Any]
    at: float
    outcome: str = "pending"
    response: Any = None  # the body as sent back (None if the answer was lost)
    headers: dict[str, str] = field(default_factory=dict)
    #: The signed request timestamp (exchange ms) and receive window (ms)
    #: as they arrived: Bybit's X-BAPI-TIMESTAMP / X-BAPI-RECV-WINDOW
    #: headers, Binance's ``timestamp`` / ``recvWindow`` query parameters.
    timestamp: int | None = None
    recv_window: int | None = None
    #: Loop time at which the request reached the exchange (later than
    #: ``at`` for a request delayed in transit).
    arrived: float | None = None

    def flag(self, key: str) -> bool:
        """A boolean parameter as the exchange reads it (JSON true or "true")."""
        value = self.params.get(key)
        return value is True or value == "true"


FaultKind = Literal[
    "timeout_after", "timeout_before", "disconnect", "error", "error_after", "delayed"
]


@dataclass
class Fault:
    """Make the next matching request fail.

    * ``timeout_before``: lost on the way; the exchange never saw it.
    * ``timeout_after``: the exchange applied it, the answer was lost.
    * ``disconnect``: connection dropped before sending (aiohttp
      ``ClientConnectionError``, which ccxt reports as ExchangeNotAvailable).
    * ``error``: the exchange refuses with the recorded error body ``error``.
    * ``error_after``: the exchange applied it, then answered with the error
      body ``error`` (Binance -1007 "execution status unknown" can mean this).
    * ``delayed``: the client times out at once, but the request is still in
      transit and reaches the exchange ``delay`` seconds later, where the
      receive window decides its fate like any other request's.

    ``error`` may also name one of :data:`HTTP_ERRORS` (a gateway's bare
    5xx page), which both venues answer the same way.
    """

    method: str
    path: str
    kind: FaultKind
    error: str | None = None
    times: int = 1
    match: Callable[[dict[str, Any]], bool] | None = None
    delay: float = 0.0

    def applies(self, method: str, path: str, params: dict[str, Any]) -> bool:
        if self.times <= 0 or method != self.method or path != self.path:
            return False
        return self.match is None or self.match(params)


# ---------------------------------------------------------------------------
# the aiohttp stand-in
# ---------------------------------------------------------------------------


class FakeResponse:
    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.reason = {
            200: "OK",
            400: "Bad Request",
            401: "Unauthorized",
            408: "Request Timeout",
            429: "Too Many Requests",
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        }.get(status, "Error")
        self.headers = {"Content-Type": "application/json"}
        self._body = body
        self.content = body.encode()

    async def text(self, errors: str = "strict") -> str:
        return self._body


class _RequestContext:
    def __init__(
        self,
        venue: FakeVenue,
        method: str,
        url: str,
        data: bytes | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._venue, self._method, self._url, self._data = venue, method, url, data
        self._headers = dict(headers or {})

    async def __aenter__(self) -> FakeResponse:
        return await self._venue.handle(self._method, self._url, self._data, self._headers)

    async def __aexit__(self, *exc: object) -> None:
        return None


class FakeWsConnection:
    """What ccxt pro's ``Client`` expects from ``aiohttp.ws_connect``."""

    _conn = None  # ccxt reads connection._conn to find aiohttp's buffer

    def __init__(self, venue: FakeVenue, url: str) -> None:
        self.venue = venue
        self.url = url
        self.closed = False
        self.sent: list[Any] = []
        self._inbox: asyncio.Queue[WSMessage] = asyncio.Queue()

    async def send_str(self, text: str) -> None:
        message = json.loads(text)
        self.sent.append(message)
        self.venue.on_ws_message(self, message)

    def push(self, payload: Any) -> None:
        """Deliver a server message (as JSON text, like the wire)."""
        self._inbox.put_nowait(WSMessage(WSMsgType.TEXT, json.dumps(payload), None))

    async def receive(self) -> WSMessage:
        return await self._inbox.get()

    async def ping(self, data: bytes = b"") -> None:
        return None

    async def pong(self, data: bytes = b"") -> None:
        return None

    async def close(self, code: int = 1000, message: bytes = b"") -> bool:
        self.closed = True
        return True


class _WsConnectContext:
    def __init__(self, venue: FakeVenue, url: str) -> None:
        self._venue, self._url = venue, url

    async def __aenter__(self) -> FakeWsConnection:
        conn = FakeWsConnection(self._venue, self._url)
        self._venue.ws_connections.append(conn)
        return conn


class FakeSession:
    """The subset of ``aiohttp.ClientSession`` that ccxt uses."""

    closed = False

    def __init__(self, venue: FakeVenue) -> None:
        self.venue = venue
        self.headers: dict[str, str] = {}

    def _call(
        self, method: str, url: object, data: bytes | None, headers: Any = None
    ) -> _RequestContext:
        hdrs = {str(k): str(v) for k, v in dict(headers or {}).items()}
        return _RequestContext(self.venue, method, str(url), data, hdrs)

    def get(
        self, url: object, data: bytes | None = None, headers: Any = None, **_: object
    ) -> _RequestContext:
        return self._call("GET", url, data, headers)

    def post(
        self, url: object, data: bytes | None = None, headers: Any = None, **_: object
    ) -> _RequestContext:
        return self._call("POST", url, data, headers)

    def put(
        self, url: object, data: bytes | None = None, headers: Any = None, **_: object
    ) -> _RequestContext:
        return self._call("PUT", url, data, headers)

    def delete(
        self, url: object, data: bytes | None = None, headers: Any = None, **_: object
    ) -> _RequestContext:
        return self._call("DELETE", url, data, headers)

    def ws_connect(self, url: object, **_: object) -> _WsConnectContext:
        return _WsConnectContext(self.venue, str(url))

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------------------
# venue base
# ---------------------------------------------------------------------------


class FakeVenue:
    """Common machinery: request log, faults, latency, clock, WebSocket fan-out."""

    payload_dir = ""
    #: The receive window (ms) applied when a request states none (both
    #: venues document 5000 ms as the default).
    default_recv_window = 5000
    #: Name of the error body for a request outside the receive window.
    expired_error = ""
    #: Orders, fills and positions (set by each venue's constructor).
    book: Book

    def __init__(self, *, latency: float = 0.005, ws_delay: float = 0.05) -> None:
        self.latency = latency
        self.ws_delay = ws_delay
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.ws_connections: list[FakeWsConnection] = []
        #: Called after each fill (tests use it to move the market).
        self.on_fill: Callable[[FakeOrder], None] | None = None
        #: Extra error answers by name, usable as ``Fault.error``: a venue
        #: error code the recorded bodies do not cover, in the venue's shape.
        self.coded_errors: dict[str, tuple[int, Any]] = {}

    # clock -------------------------------------------------------------
    @staticmethod
    def now() -> float:
        return asyncio.get_running_loop().time()

    def clock_ms(self) -> int:
        """The exchange's clock, for ccxt's own ``milliseconds()``: the
        client and the venue share one clock (no skew), which moves with
        the loop (and so with virtual time)."""
        try:
            return self.ms()
        except RuntimeError:  # no running loop (construction)
            return EPOCH_MS

    def ms(self, t: float | None = None) -> int:
        return EPOCH_MS + round((self.now() if t is None else t) * 1000)

    # faults ------------------------------------------------------------
    def fail(
        self,
        method: str,
        path: str,
        kind: FaultKind,
        error: str | None = None,
        *,
        times: int = 1,
        match: Callable[[dict[str, Any]], bool] | None = None,
        delay: float = 0.0,
    ) -> Fault:
        fault = Fault(method, path, kind, error, times, match, delay)
        self.faults.append(fault)
        return fault

    def _take_fault(self, method: str, path: str, params: dict[str, Any]) -> Fault | None:
        for fault in self.faults:
            if fault.applies(method, path, params):
                fault.times -= 1
                return fault
        return None

    # requests ----------------------------------------------------------
    def sent(self, method: str | None = None, path: str | None = None) -> list[Request]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]

    @staticmethod
    def _parse_raw(url: str, data: bytes | None) -> tuple[str, dict[str, Any]]:
        parts = urlsplit(url)
        params: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
        if data:
            text = data.decode()
            if text.lstrip().startswith("{"):
                params.update(json.loads(text))
            else:
                params.update(dict(parse_qsl(text, keep_blank_values=True)))
        return parts.path, params

    def _stamp(self, record: Request, raw: dict[str, Any], headers: dict[str, str]) -> None:
        """Read the request's signed timestamp and receive window."""

    def _window_refusal(self, record: Request) -> tuple[int, Any] | None:
        """The venue's refusal of a request that arrived outside its receive
        window (Bybit: server_time - recv_window <= timestamp < server_time
        + 1000; Binance: timestamp < serverTime + 1000 and serverTime -
        timestamp <= recvWindow), or ``None`` when it is in time."""
        if record.timestamp is None:
            return None
        window = record.recv_window if record.recv_window is not None else self.default_recv_window
        now = self.ms()
        if now - record.timestamp > window or record.timestamp >= now + 1000:
            return self.error_body(self.expired_error)
        return None

    async def handle(
        self, method: str, url: str, data: bytes | None, headers: dict[str, str] | None = None
    ) -> FakeResponse:
        path, raw = self._parse_raw(url, data)
        params = {k: v for k, v in raw.items() if k not in _NOISE}
        record = Request(method, path, params, self.now(), headers=dict(headers or {}))
        self._stamp(record, raw, record.headers)
        self.requests.append(record)
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = self._take_fault(method, path, params)
        if fault is not None and fault.kind == "delayed":
            # Still in transit: the client gives up now, the exchange sees it
            # later and judges it by its receive window.
            record.outcome = "delayed"
            loop = asyncio.get_running_loop()
            loop.call_later(fault.delay, self._arrive_late, record)
            raise TimeoutError()
        if fault is not None and fault.kind in ("timeout_before", "disconnect"):
            record.outcome = fault.kind
            if fault.kind == "timeout_before":
                raise TimeoutError()
            raise aiohttp.ClientConnectionError("Connection reset by peer")
        record.arrived = self.now()
        self.settle()
        refusal = self._window_refusal(record)
        if refusal is not None:
            record.outcome = "expired"
            record.response = refusal[1]
            status, body = refusal
            return FakeResponse(status, json.dumps(body))
        if fault is not None:
            record.outcome = fault.kind
            if fault.kind in ("error", "error_after"):
                assert fault.error is not None
                if fault.kind == "error_after":
                    self.route(method, path, params)
                status, body = self.coded_errors.get(fault.error) or self.error_body(fault.error)
                return FakeResponse(status, body if isinstance(body, str) else json.dumps(body))
            # timeout_after: the exchange does the work, the answer is lost.
            self.route(method, path, params)
            raise TimeoutError()
        status, body = self.route(method, path, params)
        record.outcome = "ok" if status == 200 and self.is_success(body) else "refused"
        record.response = body
        return FakeResponse(status, json.dumps(body))

    def _arrive_late(self, record: Request) -> None:
        record.arrived = self.now()
        self.settle()
        refusal = self._window_refusal(record)
        if refusal is not None:
            record.outcome = "late-expired"
            record.response = refusal[1]
            return
        status, body = self.route(record.method, record.path, record.params)
        record.outcome = "late-" + ("ok" if status == 200 and self.is_success(body) else "refused")
        record.response = body

    # the operator ("foreign actor") ------------------------------------
    def operator_trade(
        self,
        symbol: str,
        side: str,
        qty: float,
        *,
        client_id: str | None = None,
        reduce_only: bool = False,
    ) -> FakeOrder:
        """Someone else on the account (the operator by hand, another bot)
        sends a market order that fills at once at the mark: it moves the
        position, shows in the order lists and in the execution history,
        and on the private stream, exactly like anyone's order. ``symbol``
        is the exchange id (``"AVLUSDT"``)."""
        now = self.now()
        self.settle()
        order = FakeOrder(
            order_id=self._operator_order_id(),
            client_id=client_id or f"operator-{self.book.next_id()}",
            symbol=symbol,
            side=side,
            qty=qty,
            reduce_only=reduce_only,
            created_at=now,
            updated_at=now,
            fill_at=now,
        )
        order.extra["actor"] = "operator"
        self.book.add(order)
        self.settle()
        return order

    def operator_open(self, symbol: str, side: str, qty: float, **kw: Any) -> FakeOrder:
        """The operator opens (or adds to) a position by hand."""
        return self.operator_trade(symbol, side, qty, **kw)

    def operator_close(self, symbol: str, qty: float, **kw: Any) -> FakeOrder:
        """The operator closes ``qty`` of whatever position is open, by hand
        (reduce-only, on the side opposite the position)."""
        side = "sell" if self.book.signed(symbol) > 0 else "buy"
        return self.operator_trade(symbol, side, qty, reduce_only=True, **kw)

    def _operator_order_id(self) -> str:
        raise NotImplementedError

    def settle(self) -> None:
        """Apply every event due by now (fills), pushing each on the
        venue's WebSocket when one is connected."""
        now = self.now()
        for order in self.book.due(now):
            self.book.fill(order, now, self._step(order.symbol))
            if self.ws_connections:
                self._push_fill(order)
            if self.on_fill is not None:
                self.on_fill(order)

    def _step(self, symbol: str) -> float:
        raise NotImplementedError

    def _push_fill(self, order: FakeOrder) -> None:
        raise NotImplementedError

    def route(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        raise NotImplementedError

    def error_body(self, name: str) -> tuple[int, Any]:
        raise NotImplementedError

    def is_success(self, body: Any) -> bool:
        return True

    def not_found(self, method: str, path: str) -> tuple[int, Any]:
        raise AssertionError(f"fake {type(self).__name__} has no route {method} {path}")

    # websocket ---------------------------------------------------------
    def on_ws_message(self, conn: FakeWsConnection, message: Any) -> None:
        """A message our ccxt client sent on a WebSocket."""

    def broadcast(self, payload: Any) -> None:
        """Push to every connected private WebSocket after ``ws_delay``."""
        loop = asyncio.get_running_loop()
        for conn in self.ws_connections:
            if not conn.closed:
                loop.call_later(self.ws_delay, conn.push, copy.deepcopy(payload))


# ---------------------------------------------------------------------------
# a tiny order/position model shared by both venues
# ---------------------------------------------------------------------------


@dataclass
class FakeOrder:
    order_id: str
    client_id: str
    symbol: str  # exchange id, e.g. AVLUSDT
    side: str  # "buy" / "sell"
    qty: float
    reduce_only: bool
    created_at: float
    trigger_price: float | None = None
    trigger_direction: int = 0
    status: str = "new"  # new, filled, partial_canceled, canceled, untriggered, deactivated
    filled: float = 0.0
    avg_price: float = 0.0
    updated_at: float = 0.0
    terminal_at: float | None = None
    fill_at: float | None = None
    fill_ratio: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def conditional(self) -> bool:
        return self.trigger_price is not None

    @property
    def open(self) -> bool:
        return self.status in ("new", "untriggered")


@dataclass
class Execution:
    """One fill of one order (market orders here fill in one execution)."""

    exec_id: str
    order: FakeOrder
    qty: float
    price: float
    at: float
    closed_size: float = 0.0


class Book:
    """Orders, fills and the true position, with the position's history so
    that a lagging REST view can be served."""

    def __init__(self, marks: dict[str, float]) -> None:
        self.marks = dict(marks)
        self.orders: dict[str, FakeOrder] = {}
        self.by_client_id: dict[str, FakeOrder] = {}
        self.position: dict[str, float] = {}
        self.entry_price: dict[str, float] = {}
        self.history: dict[str, list[tuple[float, float]]] = {}
        self.fill_ratios: list[float] = []  # consumed by successive market orders
        #: Every execution, in time order: what the trade-history endpoints
        #: (Bybit /v5/execution/list, Binance /fapi/v1/userTrades) list.
        self.executions: list[Execution] = []
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def signed(self, symbol: str) -> float:
        return self.position.get(symbol, 0.0)

    def signed_at(self, symbol: str, t: float) -> float:
        value = 0.0
        for when, signed in self.history.get(symbol, []):
            if when <= t:
                value = signed
        return value

    def reducible(self, symbol: str, side: str) -> float:
        pos = self.signed(symbol)
        if side == "sell" and pos > 0:
            return pos
        if side == "buy" and pos < 0:
            return -pos
        return 0.0

    def add(self, order: FakeOrder) -> None:
        self.orders[order.order_id] = order
        self.by_client_id[order.client_id] = order

    def due(self, now: float) -> list[FakeOrder]:
        return sorted(
            (
                o
                for o in self.orders.values()
                if o.status == "new" and o.fill_at is not None and o.fill_at <= now
            ),
            key=lambda o: (o.fill_at, o.created_at),
        )

    def fill(self, order: FakeOrder, now: float, step: float) -> None:
        """Execute a market order at the mark price."""
        qty = order.qty
        if order.reduce_only:
            qty = min(qty, self.reducible(order.symbol, order.side))
        qty = round(qty * order.fill_ratio / step) * step if step else qty * order.fill_ratio
        qty = round(qty, 10)
        price = self.marks[order.symbol]
        order.filled = qty
        order.avg_price = price if qty > 0 else 0.0
        if qty >= order.qty:
            order.status = "filled"
        elif qty > 0:
            order.status = "partial_canceled"
        else:
            order.status = "canceled"
        order.updated_at = order.terminal_at = now
        if qty > 0:
            delta = qty if order.side == "buy" else -qty
            before = self.signed(order.symbol)
            after = round(before + delta, 10)
            self.position[order.symbol] = after
            if after == 0:
                self.entry_price.pop(order.symbol, None)
            elif before == 0 or (before > 0) != (after > 0):
                self.entry_price[order.symbol] = price
            self.history.setdefault(order.symbol, []).append((now, after))
            self.executions.append(
                Execution(
                    exec_id=f"{self.next_id():08d}",
                    order=order,
                    qty=qty,
                    price=price,
                    at=now,
                    closed_size=min(abs(before), qty) if (before > 0) != (delta > 0) else 0.0,
                )
            )

    def last_change(self, symbol: str, t: float) -> float | None:
        """When the position last changed, as of time ``t`` (what a REST
        position's ``updatedTime`` / ``updateTime`` reports: not the time
        of the view)."""
        when = None
        for at, _signed in self.history.get(symbol, []):
            if at <= t:
                when = at
        return when

    def opened_at(self, symbol: str, t: float) -> float | None:
        """When the position open as of ``t`` was opened from flat."""
        opened = None
        for at, signed in self.history.get(symbol, []):
            if at > t:
                break
            if signed == 0:
                opened = None
            elif opened is None:
                opened = at
        return opened

    def executions_between(
        self, symbol: str | None, start: float | None, end: float | None
    ) -> list[Execution]:
        return [
            e
            for e in self.executions
            if (symbol is None or e.order.symbol == symbol)
            and (start is None or e.at >= start)
            and (end is None or e.at <= end)
        ]


# ---------------------------------------------------------------------------
# Bybit v5 (linear)
# ---------------------------------------------------------------------------

_BYBIT_STATUS = {
    "new": "New",
    "filled": "Filled",
    "partial_canceled": "PartiallyFilledCanceled",
    "canceled": "Cancelled",
    "untriggered": "Untriggered",
    "deactivated": "Deactivated",
}


class FakeBybit(FakeVenue):
    """Bybit v5, category=linear, one-way mode, Unified Trading Account.

    ``position_lag``: seconds by which ``/v5/position/list`` trails the truth
    (it answers with the position as it was ``position_lag`` seconds ago).
    ``flat_entry``: how the lagging list shows "no position": ``False`` an
    empty list, ``True`` Bybit's one-way flat entry (``size "0"``, ``side ""``).
    ``realtime_shows_closed``: whether ``/v5/order/realtime`` still lists
    recently closed orders when asked by id (Bybit keeps the last 500, but
    "after a server release or restart" only history has them).
    ``history_lag``: seconds before a terminal order appears in
    ``/v5/order/history`` ("the data returned may be delayed").

    A ``stopLoss`` sent with a market entry: refused at create (10001) when
    it is not below (buy) / above (sell) the last price; with
    ``tpslMode=Partial`` Bybit arms, ``attached_delay`` after the fill, a
    ``PartialStopLoss`` conditional order for the filled quantity, with no
    ``orderLinkId``; in ``Full`` mode (Bybit's default) the stop sits on the
    position instead and no order shows. ``attached_refuse``: nothing is
    armed at the fill.
    """

    payload_dir = "bybit"
    expired_error = "timestamp_expired"

    def __init__(
        self,
        *,
        marks: dict[str, float] | None = None,
        fill_delay: float = 0.0,
        position_lag: float = 0.0,
        flat_entry: bool = False,
        realtime_shows_closed: bool = False,
        history_lag: float = 0.0,
        attached_delay: float = 0.0,
        attached_refuse: bool = False,
        latency: float = 0.005,
        ws_delay: float = 0.05,
    ) -> None:
        super().__init__(latency=latency, ws_delay=ws_delay)
        self.attached_delay = attached_delay
        self.attached_refuse = attached_refuse
        self.book = Book(marks or {"AVLUSDT": 0.1343, "BTCUSDT": 97000.0})
        self.fill_delay = fill_delay
        self.position_lag = position_lag
        self.flat_entry = flat_entry
        self.realtime_shows_closed = realtime_shows_closed
        self.history_lag = history_lag
        self.instruments = {
            i["symbol"]: i for i in load("bybit", "instruments_linear")["result"]["list"]
        }

    # helpers -------------------------------------------------------------
    def error_body(self, name: str) -> tuple[int, Any]:
        if name in HTTP_ERRORS:
            return HTTP_ERRORS[name]
        body = load("bybit", "errors")[name]
        body["time"] = self.ms()
        return 200, body  # Bybit reports business errors with HTTP 200

    def _stamp(self, record: Request, raw: dict[str, Any], headers: dict[str, str]) -> None:
        # Bybit v5 signs X-BAPI-TIMESTAMP and X-BAPI-RECV-WINDOW as headers.
        if "X-BAPI-TIMESTAMP" in headers:
            record.timestamp = int(headers["X-BAPI-TIMESTAMP"])
        if "X-BAPI-RECV-WINDOW" in headers:
            record.recv_window = int(headers["X-BAPI-RECV-WINDOW"])

    def _operator_order_id(self) -> str:
        return str(1_900_000_000_000_000_000 + self.book.next_id())

    def execution_json(self, e: Execution) -> dict[str, Any]:
        o = e.order
        raw: dict[str, Any] = load("bybit", "execution_linear")
        raw.update(
            {
                "symbol": o.symbol,
                "orderId": o.order_id,
                "orderLinkId": o.client_id,
                "side": "Buy" if o.side == "buy" else "Sell",
                "orderPrice": _fmt(self.book.marks[o.symbol]),
                "orderQty": _fmt(o.qty),
                "leavesQty": "0",
                "orderType": "Market",
                "execFee": _fmt(e.qty * e.price * 0.00055),
                "execId": f"e0cbe81d-0f18-5866-9415-{int(e.exec_id):012d}",
                "execPrice": _fmt(e.price),
                "execQty": _fmt(e.qty),
                "execType": "Trade",
                "execValue": _fmt(e.qty * e.price),
                "execTime": str(self.ms(e.at)),
                "closedSize": _fmt(e.closed_size),
                "markPrice": _fmt(self.book.marks[o.symbol]),
            }
        )
        return raw

    def _executions(self, p: dict[str, Any]) -> tuple[int, Any]:
        """GET /v5/execution/list: newest first; ``startTime``/``endTime`` in
        ms; only ``startTime``: that time to 7 days later; neither: the last
        7 days; ``limit`` [1, 100], default 50; a cursor when there is more."""
        week = 7 * 24 * 3600.0
        now = self.now()
        start = _ms_to_loop(p.get("startTime"))
        end = _ms_to_loop(p.get("endTime"))
        if start is None and end is None:
            start = now - week
        elif end is None:
            assert start is not None
            end = start + week
        elif start is None:
            start = end - week
        execs = self.book.executions_between(p.get("symbol"), start, end)
        if p.get("execType") and p["execType"] != "Trade":
            execs = []
        execs.sort(key=lambda e: e.at, reverse=True)
        limit = min(int(p.get("limit") or 50), 100)
        page = execs[:limit]
        status, env = self._list([self.execution_json(e) for e in page])
        env["result"]["nextPageCursor"] = "page2" if len(execs) > limit else ""
        return status, env

    def is_success(self, body: Any) -> bool:
        return isinstance(body, dict) and body.get("retCode") == 0

    def _ok(self, result: Any) -> tuple[int, Any]:
        env = load("bybit", "order_create_ack")
        env["result"] = result
        env["time"] = self.ms()
        return 200, env

    def _list(self, items: list[dict[str, Any]]) -> tuple[int, Any]:
        env = load("bybit", "list_envelope")
        env["result"]["list"] = items
        env["time"] = self.ms()
        return 200, env

    def _step(self, symbol: str) -> float:
        return float(self.instruments[symbol]["lotSizeFilter"]["qtyStep"])

    def order_json(self, o: FakeOrder) -> dict[str, Any]:
        raw: dict[str, Any] = load("bybit", "order_linear")
        leaves = 0.0 if o.status not in ("new", "untriggered") else o.qty - o.filled
        raw.update(
            {
                "orderId": o.order_id,
                "orderLinkId": o.client_id,
                "symbol": o.symbol,
                "price": _fmt(self.book.marks[o.symbol] * (1.05 if o.side == "buy" else 0.95)),
                "qty": _fmt(o.qty),
                "side": "Buy" if o.side == "buy" else "Sell",
                "orderStatus": _BYBIT_STATUS[o.status],
                "cancelType": "UNKNOWN"
                if o.status not in ("canceled", "deactivated")
                else "CancelByUser",
                "avgPrice": _fmt(o.avg_price) if o.filled else "0",
                "leavesQty": _fmt(leaves),
                "leavesValue": _fmt(leaves * self.book.marks[o.symbol]),
                "cumExecQty": _fmt(o.filled),
                "cumExecValue": _fmt(o.filled * o.avg_price),
                "cumExecFee": _fmt(o.filled * o.avg_price * 0.00055),
                "timeInForce": "IOC",
                "orderType": "Market",
                "stopOrderType": o.extra.get("stop_order_type")
                or ("Stop" if o.conditional else ""),
                "triggerPrice": _fmt(o.trigger_price) if o.trigger_price is not None else "0",
                "triggerDirection": o.trigger_direction,
                "triggerBy": "LastPrice" if o.conditional else "",
                "reduceOnly": o.reduce_only,
                "closeOnTrigger": False,
                "createdTime": str(self.ms(o.created_at)),
                "updatedTime": str(self.ms(o.updated_at or o.created_at)),
            }
        )
        if o.extra.get("no_link"):
            raw["orderLinkId"] = ""
        sl = o.extra.get("sl")
        if sl is not None:
            raw.update({"stopLoss": _fmt(sl["trigger"]), "tpslMode": sl["mode"],
                        "slTriggerBy": "LastPrice", "slOrderType": "Market"})
        if o.extra.get("stop_order_type"):
            raw.update({"closeOnTrigger": True, "createType": "CreateByPartialStopLoss"})
        return raw

    def settle(self) -> None:
        due = self.book.due(self.now())
        super().settle()
        for order in due:
            sl = order.extra.get("sl")
            if sl is not None and sl["mode"] == "Partial" and order.filled > 0 \
                    and not self.attached_refuse:
                asyncio.get_running_loop().call_later(self.attached_delay, self._arm, order)

    def _arm(self, entry: FakeOrder) -> None:
        """Bybit arms the entry's partial stop-loss for its filled quantity."""
        now = self.now()
        stop = FakeOrder(
            order_id=str(1_900_000_000_000_000_000 + self.book.next_id()),
            client_id=f"tpsl-{entry.order_id}",  # internal key: no orderLinkId on the wire
            symbol=entry.symbol,
            side="sell" if entry.side == "buy" else "buy",
            qty=entry.filled,
            reduce_only=True,
            created_at=now,
            updated_at=now,
            trigger_price=entry.extra["sl"]["trigger"],
            trigger_direction=2 if entry.side == "buy" else 1,
            status="untriggered",
        )
        stop.extra.update({"no_link": True, "stop_order_type": "PartialStopLoss"})
        self.book.add(stop)

    def position_json(
        self,
        symbol: str,
        signed: float,
        changed: float | None = None,
        opened: float | None = None,
    ) -> dict[str, Any]:
        raw: dict[str, Any] = load("bybit", "position_linear")
        mark = self.book.marks[symbol]
        entry = self.book.entry_price.get(symbol, mark)
        raw.update(
            {
                "symbol": symbol,
                "side": "" if signed == 0 else ("Buy" if signed > 0 else "Sell"),
                "size": _fmt(abs(signed)),
                "avgPrice": "0" if signed == 0 else _fmt(entry),
                "positionValue": _fmt(abs(signed) * entry) if signed else "0",
                "markPrice": _fmt(mark),
                # The time of the position's last change, not of the view
                # (Bybit docs, Get Position Info: updatedTime "Position
                # updated timestamp"); the view itself carries none.
                "updatedTime": str(self.ms(changed if changed is not None else 0.0)),
            }
        )
        if opened is not None:
            raw["createdTime"] = str(self.ms(opened))
        return raw

    # state ---------------------------------------------------------------
    def _push_fill(self, order: FakeOrder) -> None:
        msg = load("bybit", "ws_order")
        item = self.order_json(order)
        item["category"] = "linear"
        msg["data"] = [item]
        msg["creationTime"] = self.ms()
        self.broadcast(msg)
        pos = load("bybit", "ws_position")
        p = pos["data"][0]
        signed = self.book.signed(order.symbol)
        p.update(
            {
                "symbol": order.symbol,
                "side": "" if signed == 0 else ("Buy" if signed > 0 else "Sell"),
                "size": _fmt(abs(signed)),
                "entryPrice": _fmt(self.book.entry_price.get(order.symbol, 0.0)),
                "markPrice": _fmt(self.book.marks[order.symbol]),
                "updatedTime": str(self.ms()),
            }
        )
        pos["creationTime"] = self.ms()
        self.broadcast(pos)

    def schedule_settle(self, at: float) -> None:
        loop = asyncio.get_running_loop()
        loop.call_at(max(at, loop.time()), self.settle)

    # routes --------------------------------------------------------------
    def route(  # noqa: C901 - one branch per endpoint, read like the venue's API index
        self, method: str, path: str, params: dict[str, Any]
    ) -> tuple[int, Any]:
        key = (method, path)
        if key == ("GET", "/v5/market/instruments-info"):
            if params.get("status") == "PreLaunch":
                return self._list([])
            if params.get("category") == "spot":
                # The spot pair BTC/USDT has the same id, "BTCUSDT", as the
                # linear perpetual (ccxt static markets/bybit.json).
                return 200, load("bybit", "instruments_spot")
            env = load("bybit", "instruments_linear")
            return 200, env
        if key == ("GET", "/v5/market/tickers"):
            env = load("bybit", "tickers_linear")
            item = env["result"]["list"][0]
            mark = self.book.marks[params["symbol"]]
            item.update(
                {
                    "symbol": params["symbol"],
                    "lastPrice": _fmt(mark),
                    "markPrice": _fmt(mark),
                    "indexPrice": _fmt(mark),
                }
            )
            env["time"] = self.ms()
            return 200, env
        if key == ("GET", "/v5/user/query-api"):
            return 200, load("bybit", "user_query_api")
        if key == ("GET", "/v5/account/info"):
            return 200, load("bybit", "account_info")
        if key == ("POST", "/v5/order/create"):
            return self._create(params)
        if key == ("POST", "/v5/order/cancel"):
            return self._cancel(params)
        if key == ("GET", "/v5/order/realtime"):
            return self._list([self.order_json(o) for o in self._realtime(params)])
        if key == ("GET", "/v5/order/history"):
            return self._list([self.order_json(o) for o in self._history(params)])
        if key == ("GET", "/v5/position/list"):
            return self._positions(params)
        if key == ("GET", "/v5/execution/list"):
            return self._executions(params)
        return self.not_found(method, path)

    def _create(self, p: dict[str, Any]) -> tuple[int, Any]:
        symbol = str(p.get("symbol"))
        if p.get("category") != "linear" or symbol not in self.instruments:
            return self.error_body("param_error")
        link_id = str(p.get("orderLinkId") or f"auto-{self.book.next_id()}")
        if link_id in self.book.by_client_id:
            return self.error_body("duplicate_order_link_id")
        side = str(p["side"]).lower()
        grid = self._off_grid(symbol, p)
        if grid is not None:
            return grid
        now = self.now()
        order = FakeOrder(
            order_id=str(1_900_000_000_000_000_000 + self.book.next_id()),
            client_id=link_id,
            symbol=symbol,
            side=side,
            qty=_num(p["qty"]),
            reduce_only=p.get("reduceOnly") is True,
            created_at=now,
            updated_at=now,
        )
        if p.get("triggerPrice") is not None:
            trigger = _num(p["triggerPrice"])
            direction = int(p.get("triggerDirection", 0))
            mark = self.book.marks[symbol]
            if direction == 1 and not trigger > mark:
                return self.error_body("expect_rising")
            if direction == 2 and not trigger < mark:
                return self.error_body("expect_falling")
            order.trigger_price = trigger
            order.trigger_direction = direction
            order.status = "untriggered"
        else:
            if order.reduce_only and self.book.reducible(symbol, side) == 0:
                return self.error_body("reduce_only_not_satisfied")
            refused = self._attach_stop_loss(order, p)
            if refused is not None:
                return refused
            if self.book.fill_ratios:
                order.fill_ratio = self.book.fill_ratios.pop(0)
            order.fill_at = now + self.fill_delay
            self.schedule_settle(order.fill_at)
        self.book.add(order)
        # The acknowledgement carries the two ids and nothing else.
        return self._ok({"orderId": order.order_id, "orderLinkId": order.client_id})

    def _attach_stop_loss(self, order: FakeOrder, p: dict[str, Any]) -> tuple[int, Any] | None:
        """A ``stopLoss`` sent with a market entry: refused (10001) unless it
        is below (buy) / above (sell) the last price, else kept on the order
        with its ``tpslMode`` (Bybit's default: ``Full``)."""
        if p.get("stopLoss") in (None, ""):
            return None
        trigger = _num(p["stopLoss"])
        mark = self.book.marks[order.symbol]
        if (order.side == "buy" and not trigger < mark) or (
                order.side == "sell" and not trigger > mark):
            return self.error_body("param_error")
        order.extra["sl"] = {"trigger": trigger, "mode": str(p.get("tpslMode") or "Full")}
        return None

    def _off_grid(self, symbol: str, p: dict[str, Any]) -> tuple[int, Any] | None:
        """Bybit refuses a quantity off ``qtyStep`` or below ``minOrderQty``
        and a trigger price off ``tickSize`` (param error 10001)."""
        inst = self.instruments[symbol]
        lot = inst["lotSizeFilter"]
        qty = _num(p["qty"])
        if not _on_grid(qty, _num(lot["qtyStep"])) or qty < _num(lot["minOrderQty"]):
            return self.error_body("qty_invalid")
        trigger = p.get("triggerPrice")
        if trigger is not None and not _on_grid(
            _num(trigger), _num(inst["priceFilter"]["tickSize"])
        ):
            return self.error_body("price_invalid")
        return None

    def _cancel(self, p: dict[str, Any]) -> tuple[int, Any]:
        order = self._find(p)
        if order is None or not order.open:
            return self.error_body("order_not_exists")
        order.status = "deactivated" if order.conditional else "canceled"
        order.updated_at = order.terminal_at = self.now()
        ack = load("bybit", "order_cancel_ack")["result"]
        ack.update({"orderId": order.order_id, "orderLinkId": order.client_id})
        return self._ok(ack)

    def _find(self, p: dict[str, Any]) -> FakeOrder | None:
        if p.get("orderId"):
            return self.book.orders.get(str(p["orderId"]))
        if p.get("orderLinkId"):
            return self.book.by_client_id.get(str(p["orderLinkId"]))
        return None

    def _filtered(self, p: dict[str, Any]) -> list[FakeOrder]:
        out = []
        for o in self.book.orders.values():
            if p.get("symbol") and o.symbol != p["symbol"]:
                continue
            if p.get("orderId") and o.order_id != str(p["orderId"]):
                continue
            if p.get("orderLinkId") and o.client_id != str(p["orderLinkId"]):
                continue
            flt = p.get("orderFilter")
            if flt == "StopOrder" and not o.conditional:
                continue
            if flt == "Order" and o.conditional:
                continue
            out.append(o)
        return sorted(out, key=lambda o: o.created_at, reverse=True)

    def _realtime(self, p: dict[str, Any]) -> list[FakeOrder]:
        by_id = bool(p.get("orderId") or p.get("orderLinkId"))
        return [o for o in self._filtered(p) if o.open or (by_id and self.realtime_shows_closed)]

    def _history(self, p: dict[str, Any]) -> list[FakeOrder]:
        now = self.now()
        wanted = p.get("orderStatus")
        return [
            o
            for o in self._filtered(p)
            if not o.open
            and o.terminal_at is not None
            and o.terminal_at + self.history_lag <= now
            and (wanted is None or _BYBIT_STATUS[o.status] == wanted)
        ]

    def _positions(self, p: dict[str, Any]) -> tuple[int, Any]:
        as_of = self.now() - self.position_lag
        symbols = [p["symbol"]] if p.get("symbol") else sorted(self.instruments)
        items = []
        for sym in symbols:
            signed = self.book.signed_at(sym, as_of)
            if signed != 0 or (self.flat_entry and p.get("symbol")):
                items.append(
                    self.position_json(
                        sym,
                        signed,
                        self.book.last_change(sym, as_of),
                        self.book.opened_at(sym, as_of),
                    )
                )
        return self._list(items)

    # websocket -------------------------------------------------------------
    def on_ws_message(self, conn: FakeWsConnection, message: Any) -> None:
        op = message.get("op")
        if op == "auth":
            reply = load("bybit", "ws_auth_ok")
        elif op == "subscribe":
            reply = load("bybit", "ws_subscribe_ok")
            reply["req_id"] = message.get("req_id")
        elif op == "ping":
            reply = load("bybit", "ws_pong")
        else:
            return
        asyncio.get_running_loop().call_soon(conn.push, reply)


# ---------------------------------------------------------------------------
# Binance USDⓈ-M
# ---------------------------------------------------------------------------

_BINANCE_STATUS = {
    "new": "NEW",
    "filled": "FILLED",
    "partial_canceled": "EXPIRED",
    "canceled": "EXPIRED",
}


class FakeBinanceUsdm(FakeVenue):
    """Binance USDⓈ-M futures, one-way mode. Market orders are acknowledged
    as ``NEW`` with ``executedQty "0"`` and fill ``fill_delay`` later;
    conditional orders live in the algo service (``/fapi/v1/algoOrder``).
    ``position_lag`` delays ``/fapi/v3/positionRisk`` like Bybit's list."""

    payload_dir = "binance"
    expired_error = "timestamp_outside_window"

    def __init__(
        self,
        *,
        marks: dict[str, float] | None = None,
        fill_delay: float = 0.0,
        position_lag: float = 0.0,
        latency: float = 0.005,
        ws_delay: float = 0.05,
    ) -> None:
        super().__init__(latency=latency, ws_delay=ws_delay)
        self.book = Book(marks or {"BTCUSDT": 97000.0, "ETHUSDT": 3400.0})
        self.fill_delay = fill_delay
        self.position_lag = position_lag
        self.symbols = {s["symbol"]: s for s in load("binance", "exchange_info_symbols")}

    def error_body(self, name: str) -> tuple[int, Any]:
        if name in HTTP_ERRORS:
            return HTTP_ERRORS[name]
        entry = load("binance", "errors")[name]
        return int(entry["status"]), entry["body"]

    def _stamp(self, record: Request, raw: dict[str, Any], headers: dict[str, str]) -> None:
        # Binance signs timestamp and recvWindow into the query string.
        if raw.get("timestamp") not in (None, ""):
            record.timestamp = int(raw["timestamp"])
        if raw.get("recvWindow") not in (None, ""):
            record.recv_window = int(raw["recvWindow"])

    def _operator_order_id(self) -> str:
        return str(8_000_000_000 + self.book.next_id())

    def _filter(self, symbol: str, kind: str) -> dict[str, Any]:
        return next(f for f in self.symbols[symbol]["filters"] if f["filterType"] == kind)

    def _off_grid(self, symbol: str, qty: float, reduce_only: bool) -> tuple[int, Any] | None:
        """Binance refuses a quantity off the MARKET_LOT_SIZE step or below
        its minimum (-1111 / -4003 family; we answer -1111 "Precision is
        over the maximum defined for this asset") and a non-reduce-only
        order under MIN_NOTIONAL at the mark (-4164)."""
        lot = self._filter(symbol, "MARKET_LOT_SIZE")
        if not _on_grid(qty, _num(lot["stepSize"])) or qty < _num(lot["minQty"]):
            return self.error_body("precision_over_maximum")
        notional = _num(self._filter(symbol, "MIN_NOTIONAL")["notional"])
        if not reduce_only and qty * self.book.marks[symbol] < notional:
            return self.error_body("min_notional")
        return None

    def trade_json(self, e: Execution) -> dict[str, Any]:
        o = e.order
        raw: dict[str, Any] = load("binance", "user_trade")
        raw.update(
            {
                "symbol": o.symbol,
                "id": int(e.exec_id),
                "orderId": int(o.order_id),
                "side": o.side.upper(),
                "buyer": o.side == "buy",
                "price": _fmt(e.price),
                "qty": _fmt(e.qty),
                "quoteQty": _fmt(e.qty * e.price),
                "commission": _fmt(e.qty * e.price * 0.0005),
                "positionSide": "BOTH",
                "time": self.ms(e.at),
            }
        )
        return raw

    def _user_trades(self, p: dict[str, Any]) -> tuple[int, Any]:
        """GET /fapi/v1/userTrades: oldest first; ``startTime``/``endTime``
        at most 7 days apart; neither: the last 7 days; ``limit`` default
        500, max 1000. No client order id in the answer."""
        week = 7 * 24 * 3600.0
        start = _ms_to_loop(p.get("startTime"))
        end = _ms_to_loop(p.get("endTime"))
        if start is None and end is None:
            start = self.now() - week
        elif end is None:
            assert start is not None
            end = start + week
        elif start is None:
            start = end - week
        execs = self.book.executions_between(p.get("symbol"), start, end)
        execs.sort(key=lambda e: e.at)
        limit = min(int(p.get("limit") or 500), 1000)
        return 200, [self.trade_json(e) for e in execs[:limit]]

    def is_success(self, body: Any) -> bool:
        return not (isinstance(body, dict) and "code" in body and str(body["code"]) not in ("200",))

    def _step(self, symbol: str) -> float:
        lot = next(f for f in self.symbols[symbol]["filters"] if f["filterType"] == "LOT_SIZE")
        return float(lot["stepSize"])

    def order_json(self, o: FakeOrder) -> dict[str, Any]:
        raw: dict[str, Any] = load("binance", "order_query")
        raw.update(
            {
                "avgPrice": _fmt(o.avg_price) if o.filled else "0.00",
                "clientOrderId": o.client_id,
                "cumQuote": _fmt(o.filled * o.avg_price),
                "executedQty": _fmt(o.filled),
                "orderId": int(o.order_id),
                "origQty": _fmt(o.qty),
                "origType": "MARKET",
                "price": "0",
                "reduceOnly": o.reduce_only,
                "side": o.side.upper(),
                "positionSide": "BOTH",
                "status": _BINANCE_STATUS[o.status],
                "stopPrice": "0",
                "symbol": o.symbol,
                "time": self.ms(o.created_at),
                "type": "MARKET",
                "updateTime": self.ms(o.updated_at or o.created_at),
            }
        )
        raw.pop("activatePrice", None)
        raw.pop("priceRate", None)
        return raw

    def algo_json(self, o: FakeOrder) -> dict[str, Any]:
        raw: dict[str, Any] = load("binance", "algo_order")
        raw.update(
            {
                "algoId": int(o.order_id),
                "clientAlgoId": o.client_id,
                "orderType": "STOP_MARKET",
                "symbol": o.symbol,
                "side": o.side.upper(),
                "quantity": _fmt(o.qty),
                "algoStatus": "NEW" if o.open else "CANCELED",
                "triggerPrice": _fmt(o.trigger_price or 0.0),
                "price": "0",
                "reduceOnly": o.reduce_only,
                "createTime": self.ms(o.created_at),
                "updateTime": self.ms(o.updated_at or o.created_at),
            }
        )
        return raw

    def _push_fill(self, order: FakeOrder) -> None:
        msg = load("binance", "ws_account_update")
        signed = self.book.signed(order.symbol)
        msg["E"] = msg["T"] = self.ms()
        msg["a"]["P"] = [
            {
                "s": order.symbol,
                "pa": _fmt(signed),
                "ep": _fmt(self.book.entry_price.get(order.symbol, 0.0)),
                "bep": "0",
                "cr": "0",
                "up": "0",
                "mt": "cross",
                "iw": "0",
                "ps": "BOTH",
            }
        ]
        self.broadcast(msg)

    def route(  # noqa: C901 - one branch per endpoint, read like the venue's API index
        self, method: str, path: str, params: dict[str, Any]
    ) -> tuple[int, Any]:
        key = (method, path)
        if key == ("POST", "/fapi/v1/order"):
            return self._create(params)
        if key == ("GET", "/fapi/v1/order"):
            order = self._find(params, algo=False)
            if order is None:
                return self.error_body("order_does_not_exist")
            return 200, self.order_json(order)
        if key == ("POST", "/fapi/v1/algoOrder"):
            return self._create_algo(params)
        if key == ("GET", "/fapi/v1/algoOrder"):
            order = self._find(params, algo=True)
            if order is None:
                return self.error_body("order_does_not_exist")
            return 200, self.algo_json(order)
        if key == ("DELETE", "/fapi/v1/algoOrder"):
            order = self._find(params, algo=True)
            if order is None or not order.open:
                return self.error_body("unknown_order")
            order.status = "canceled"
            order.updated_at = order.terminal_at = self.now()
            body = load("binance", "algo_cancel")
            body.update({"algoId": int(order.order_id), "clientAlgoId": order.client_id})
            return 200, body
        if key == ("GET", "/fapi/v1/openAlgoOrders"):
            return 200, [
                self.algo_json(o)
                for o in self.book.orders.values()
                if o.conditional and o.open and params.get("symbol") in (None, o.symbol)
            ]
        if key == ("GET", "/fapi/v3/positionRisk"):
            return 200, self._positions(params)
        if key == ("GET", "/fapi/v1/userTrades"):
            return self._user_trades(params)
        if key == ("GET", "/fapi/v1/ticker/24hr"):
            ticker = load("binance", "ticker_24hr")
            mark = self.book.marks[params["symbol"]]
            ticker.update(
                {"symbol": params["symbol"], "lastPrice": _fmt(mark), "closeTime": self.ms()}
            )
            return 200, ticker
        if key == ("GET", "/fapi/v1/leverageBracket"):
            return 200, load("binance", "leverage_bracket")
        if key in (("POST", "/fapi/v1/listenKey"), ("PUT", "/fapi/v1/listenKey")):
            return 200, load("binance", "listen_key")
        return self.not_found(method, path)

    def _find(self, p: dict[str, Any], *, algo: bool) -> FakeOrder | None:
        id_key, cid_key = ("algoId", "clientAlgoId") if algo else ("orderId", "origClientOrderId")
        order = None
        if p.get(id_key):
            order = self.book.orders.get(str(p[id_key]))
        elif p.get(cid_key):
            order = self.book.by_client_id.get(str(p[cid_key]))
        if (
            order is None
            or order.conditional != algo
            or order.symbol != p.get("symbol", order.symbol)
        ):
            return None
        return order

    def _create(self, p: dict[str, Any]) -> tuple[int, Any]:
        symbol = str(p.get("symbol"))
        cid = str(p.get("newClientOrderId") or f"auto{self.book.next_id()}")
        # Binance New Order: newClientOrderId is "a unique id among open
        # orders". A market order that already filled is not open, so the
        # same id is accepted again and EXECUTES again.
        previous = self.book.by_client_id.get(cid)
        if previous is not None and previous.open:
            return self.error_body("duplicate_client_id")
        side = str(p["side"]).lower()
        reduce_only = p.get("reduceOnly") == "true"
        grid = self._off_grid(symbol, _num(p["quantity"]), reduce_only)
        if grid is not None:
            return grid
        if reduce_only and self.book.reducible(symbol, side) == 0:
            return self.error_body("reduce_only_rejected")
        now = self.now()
        order = FakeOrder(
            order_id=str(8_000_000_000 + self.book.next_id()),
            client_id=cid,
            symbol=symbol,
            side=side,
            qty=_num(p["quantity"]),
            reduce_only=reduce_only,
            created_at=now,
            updated_at=now,
        )
        if self.book.fill_ratios:
            order.fill_ratio = self.book.fill_ratios.pop(0)
        order.fill_at = now + self.fill_delay
        self.book.add(order)
        asyncio.get_running_loop().call_at(order.fill_at, self.settle)
        # newOrderRespType=RESULT, but the answer is built before the match
        # completes: status NEW, executedQty 0 (the shape the engine must
        # treat as "not yet known", never as "not filled").
        reply = load("binance", "order_new_result")
        reply.update(
            {
                "orderId": int(order.order_id),
                "symbol": symbol,
                "clientOrderId": cid,
                "origQty": _fmt(order.qty),
                "reduceOnly": reduce_only,
                "side": side.upper(),
                "updateTime": self.ms(now),
            }
        )
        return 200, reply

    def _create_algo(self, p: dict[str, Any]) -> tuple[int, Any]:
        symbol = str(p.get("symbol"))
        cid = str(p.get("clientAlgoId") or f"auto{self.book.next_id()}")
        previous = self.book.by_client_id.get(cid)
        if previous is not None and previous.open:
            return self.error_body("duplicate_client_id")
        side = str(p["side"]).lower()
        trigger = _num(p["triggerPrice"])
        mark = self.book.marks[symbol]
        if p.get("type") == "STOP_MARKET" and (
            (side == "sell" and not trigger < mark) or (side == "buy" and not trigger > mark)
        ):
            return self.error_body("would_immediately_trigger")
        now = self.now()
        order = FakeOrder(
            order_id=str(3_000 + self.book.next_id()),
            client_id=cid,
            symbol=symbol,
            side=side,
            qty=_num(p["quantity"]),
            reduce_only=p.get("reduceOnly") == "true",
            created_at=now,
            updated_at=now,
            trigger_price=trigger,
            status="untriggered",
        )
        order.extra["type"] = p.get("type")
        self.book.add(order)
        return 200, self.algo_json(order)

    def _positions(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        as_of = self.now() - self.position_lag
        out = []
        for sym in sorted(self.symbols):
            if p.get("symbol") and p["symbol"] != sym:
                continue
            signed = self.book.signed_at(sym, as_of)
            if signed == 0:
                continue  # v3 lists only symbols with a position
            raw: dict[str, Any] = load("binance", "position_risk_v3")
            entry = self.book.entry_price.get(sym, self.book.marks[sym])
            raw.update(
                {
                    "symbol": sym,
                    "positionAmt": _fmt(signed),
                    "entryPrice": _fmt(entry),
                    "breakEvenPrice": _fmt(entry),
                    "markPrice": _fmt(self.book.marks[sym]),
                    "notional": _fmt(signed * self.book.marks[sym]),
                    # The position's last change, not the view's time.
                    "updateTime": self.ms(self.book.last_change(sym, as_of) or 0.0),
                }
            )
            out.append(raw)
        return out


# ---------------------------------------------------------------------------
# OKX (USDT-margined perpetual swaps, one-way "net" mode)
# ---------------------------------------------------------------------------

_OKX_STATE = {
    "new": "live",
    "filled": "filled",
    "partial_canceled": "canceled",
    "canceled": "canceled",
}
_OKX_ALGO_STATE = {"untriggered": "live", "canceled": "canceled", "deactivated": "canceled"}


class FakeOkx(FakeVenue):
    """OKX v5, SWAP instruments, net (one-way) position mode.

    Market orders go through ``POST /api/v5/trade/batch-orders`` (ccxt's
    default), answered with the ids and ``sCode`` only, and fill
    ``fill_delay`` later. A stop-loss placed on its own is an algo order
    (``POST /api/v5/trade/order-algo``, ``ordType=conditional``), listed by
    ``GET /api/v5/trade/orders-algo-pending`` only for the ``ordType``
    asked. A stop attached to the entry (``attachAlgoOrds``) becomes an algo
    order with ``algoClOrdId`` = the attachment's ``attachAlgoClOrdId`` when
    the entry fills, sized to the fill, ``attached_delay`` later; if the
    price has crossed its trigger by then (or ``attached_refuse``), OKX
    records ``failCode``/``failReason`` on the entry's ``attachAlgoOrds``
    instead. ``clOrdId`` is unique among *pending* orders only.
    ``algo_reduce_only``: whether algo order details carry ``reduceOnly``
    (``False``: the field is absent, as in ccxt's recorded samples).
    """

    payload_dir = "okx"

    def __init__(
        self,
        *,
        marks: dict[str, float] | None = None,
        fill_delay: float = 0.0,
        position_lag: float = 0.0,
        attached_delay: float = 0.0,
        attached_refuse: bool = False,
        algo_reduce_only: bool = True,
        latency: float = 0.005,
        ws_delay: float = 0.05,
    ) -> None:
        super().__init__(latency=latency, ws_delay=ws_delay)
        self.book = Book(marks or {"BTC-USDT-SWAP": 97000.0, "ETH-USDT-SWAP": 3400.0})
        self.fill_delay = fill_delay
        self.position_lag = position_lag
        self.attached_delay = attached_delay
        self.attached_refuse = attached_refuse
        self.algo_reduce_only = algo_reduce_only
        self.instruments = {i["instId"]: i for i in load("okx", "instruments_swap")["data"]}

    # helpers -------------------------------------------------------------
    @staticmethod
    def _parse_raw(url: str, data: bytes | None) -> tuple[str, dict[str, Any]]:
        # Batch endpoints take a JSON array: its first element is the order
        # (ccxt sends one), the whole list is kept under "_list".
        text = data.decode() if data else ""
        if text.lstrip().startswith("["):
            parts = urlsplit(url)
            items = json.loads(text)
            params: dict[str, Any] = dict(items[0]) if items else {}
            params["_list"] = items
            return parts.path, params
        return FakeVenue._parse_raw(url, data)

    def error_body(self, name: str) -> tuple[int, Any]:
        if name in HTTP_ERRORS:
            return HTTP_ERRORS[name]
        body = load("okx", "errors")[name]
        # OKX answers trade errors with HTTP 200 and code "1" + sCode; a
        # request-level error (50011 rate limit) with HTTP 429.
        return (429 if body["code"] == "50011" else 200), body

    def is_success(self, body: Any) -> bool:
        return isinstance(body, dict) and body.get("code") == "0"

    def _operator_order_id(self) -> str:
        return str(2_000_000_000_000_000_000 + self.book.next_id())

    def _step(self, symbol: str) -> float:
        return float(self.instruments[symbol]["lotSz"])

    def _env(self, data: list[Any]) -> tuple[int, Any]:
        env = load("okx", "list_envelope")
        env["data"] = data
        return 200, env

    def order_json(self, o: FakeOrder) -> dict[str, Any]:
        raw: dict[str, Any] = load("okx", "order")
        raw.update(
            {
                "accFillSz": _fmt(o.filled),
                "avgPx": _fmt(o.avg_price) if o.filled else "",
                "cTime": str(self.ms(o.created_at)),
                "clOrdId": o.client_id,
                "fillSz": _fmt(o.filled),
                "fillPx": _fmt(o.avg_price) if o.filled else "",
                "fillTime": str(self.ms(o.terminal_at)) if o.filled and o.terminal_at else "",
                "instId": o.symbol,
                "ordId": o.order_id,
                "reduceOnly": "true" if o.reduce_only else "false",
                "side": o.side,
                "state": _OKX_STATE[o.status],
                "sz": _fmt(o.qty),
                "uTime": str(self.ms(o.updated_at or o.created_at)),
            }
        )
        attach = o.extra.get("attach")
        if attach is not None:
            item = load("okx", "attach_algo_ord")
            item.update(
                {
                    "attachAlgoClOrdId": attach["cid"],
                    "attachAlgoId": attach["id"],
                    "slTriggerPx": _fmt(attach["trigger"]),
                    "failCode": attach.get("fail_code", ""),
                    "failReason": attach.get("fail_reason", ""),
                }
            )
            raw["attachAlgoOrds"] = [item]
            raw["attachAlgoClOrdId"] = attach["cid"]
        return raw

    def algo_json(self, o: FakeOrder) -> dict[str, Any]:
        raw: dict[str, Any] = load("okx", "algo_order")
        raw.update(
            {
                "algoClOrdId": o.client_id,
                "algoId": o.order_id,
                "cTime": str(self.ms(o.created_at)),
                "instId": o.symbol,
                "last": _fmt(self.book.marks[o.symbol]),
                "side": o.side,
                "slTriggerPx": _fmt(o.trigger_price or 0.0),
                "state": _OKX_ALGO_STATE[o.status],
                "sz": _fmt(o.qty),
                "uTime": str(self.ms(o.updated_at or o.created_at)),
            }
        )
        if self.algo_reduce_only:
            raw["reduceOnly"] = "true" if o.reduce_only else "false"
        else:
            raw.pop("reduceOnly", None)
        return raw

    def position_json(self, symbol: str, signed: float, changed: float | None) -> dict[str, Any]:
        raw: dict[str, Any] = load("okx", "position")
        mark = self.book.marks[symbol]
        entry = self.book.entry_price.get(symbol, mark)
        raw.update(
            {
                "instId": symbol,
                "pos": _fmt(signed),
                "avgPx": _fmt(entry),
                "markPx": _fmt(mark),
                "last": _fmt(mark),
                "uTime": str(self.ms(changed if changed is not None else 0.0)),
            }
        )
        return raw

    def fill_json(self, e: Execution) -> dict[str, Any]:
        o = e.order
        raw: dict[str, Any] = load("okx", "fill")
        raw.update(
            {
                "side": o.side,
                "fillSz": _fmt(e.qty),
                "fillPx": _fmt(e.price),
                "ordId": o.order_id,
                "instId": o.symbol,
                "clOrdId": "" if o.extra.get("actor") == "operator" else o.client_id,
                "billId": e.exec_id,
                "tradeId": e.exec_id,
                "fillTime": str(self.ms(e.at)),
                "ts": str(self.ms(e.at)),
            }
        )
        return raw

    def _push_fill(self, order: FakeOrder) -> None:
        pass  # no private WebSocket in this fake: REST only

    def settle(self) -> None:
        due = self.book.due(self.now())
        super().settle()
        for order in due:
            if "attach" in order.extra and order.filled > 0:
                loop = asyncio.get_running_loop()
                loop.call_later(self.attached_delay, self._arm, order)

    def _arm(self, entry: FakeOrder) -> None:
        """OKX places the attached stop-loss once the entry filled: an algo
        order for the filled size, or a failCode on the entry."""
        attach = entry.extra["attach"]
        side = "sell" if entry.side == "buy" else "buy"
        trigger = attach["trigger"]
        mark = self.book.marks[entry.symbol]
        crossed = (side == "sell" and not trigger < mark) or (side == "buy" and not trigger > mark)
        if self.attached_refuse or crossed:
            body = load("okx", "errors")["sl_above_last" if side == "sell" else "sl_below_last"]
            attach["fail_code"] = body["data"][0]["sCode"]
            attach["fail_reason"] = body["data"][0]["sMsg"]
            return
        now = self.now()
        algo = FakeOrder(
            order_id=str(attach["id"] + 1),  # OKX: not the attachAlgoId
            client_id=attach["cid"],
            symbol=entry.symbol,
            side=side,
            qty=entry.filled,
            reduce_only=True,
            created_at=now,
            updated_at=now,
            trigger_price=trigger,
            status="untriggered",
        )
        algo.extra["algo"] = True
        self.book.add(algo)

    # routes --------------------------------------------------------------
    def route(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        handler = {
            ("POST", "/api/v5/trade/batch-orders"): self._create,
            ("POST", "/api/v5/trade/order-algo"): self._create_algo,
            ("GET", "/api/v5/trade/order"): self._order_detail,
            ("GET", "/api/v5/trade/order-algo"): self._algo_detail,
            ("GET", "/api/v5/trade/orders-algo-pending"): self._algos_pending,
            ("POST", "/api/v5/trade/cancel-algos"): self._cancel_algos,
            ("GET", "/api/v5/account/positions"): self._positions,
            ("GET", "/api/v5/market/ticker"): self._ticker,
            ("GET", "/api/v5/trade/fills-history"): self._fills_history,
        }.get((method, path))
        if handler is None:
            return self.not_found(method, path)
        return handler(params)

    def _order_detail(self, p: dict[str, Any]) -> tuple[int, Any]:
        order = self._find(p, algo=False)
        if order is None:
            return self.error_body("order_not_exist")
        return self._env([self.order_json(order)])

    def _algo_detail(self, p: dict[str, Any]) -> tuple[int, Any]:
        order = self._find(p, algo=True)
        if order is None:
            return self.error_body("order_not_exist")
        return self._env([self.algo_json(order)])

    def _algos_pending(self, p: dict[str, Any]) -> tuple[int, Any]:
        """Only the ``ordType`` asked for: a stop-loss is ``conditional``."""
        kinds = str(p.get("ordType", "")).split(",")
        newest = sorted(self.book.orders.values(), key=lambda o: o.created_at, reverse=True)
        return self._env([self.algo_json(o) for o in newest
                          if o.extra.get("algo") and o.open and "conditional" in kinds
                          and p.get("instId") in (None, o.symbol)])

    def _ticker(self, p: dict[str, Any]) -> tuple[int, Any]:
        env = load("okx", "ticker")
        mark = self.book.marks[p["instId"]]
        env["data"][0].update({"instId": p["instId"], "last": _fmt(mark), "ts": str(self.ms())})
        return 200, env

    def _fills_history(self, p: dict[str, Any]) -> tuple[int, Any]:
        """Newest first, from ``begin`` (ms), at most 100."""
        start = _ms_to_loop(p.get("begin"))
        execs = self.book.executions_between(p.get("instId"), start, None)
        execs.sort(key=lambda e: e.at, reverse=True)
        limit = min(int(p.get("limit") or 100), 100)
        return self._env([self.fill_json(e) for e in execs[:limit]])

    def _find(self, p: dict[str, Any], *, algo: bool) -> FakeOrder | None:
        id_key, cid_key = ("algoId", "algoClOrdId") if algo else ("ordId", "clOrdId")
        order = None
        if p.get(id_key):
            order = self.book.orders.get(str(p[id_key]))
        elif p.get(cid_key):
            order = self.book.by_client_id.get(str(p[cid_key]))
        if order is None or bool(order.extra.get("algo")) != algo:
            return None
        if p.get("instId") not in (None, order.symbol):
            return None
        return order

    def _pending_client_id(self, cid: str) -> bool:
        held = self.book.by_client_id.get(cid)
        return held is not None and held.open

    def _create(self, p: dict[str, Any]) -> tuple[int, Any]:
        symbol = str(p.get("instId"))
        cid = str(p.get("clOrdId") or f"auto{self.book.next_id()}")
        if self._pending_client_id(cid):
            return self.error_body("duplicate_client_id")
        side = str(p["side"])
        qty = _num(p["sz"])
        inst = self.instruments[symbol]
        if not _on_grid(qty, _num(inst["lotSz"])) or qty < _num(inst["minSz"]):
            return self.error_body("lot_size")
        reduce_only = p.get("reduceOnly") in (True, "true")
        if reduce_only and self.book.reducible(symbol, side) == 0:
            return self.error_body("no_position_to_reduce")
        now = self.now()
        order = FakeOrder(
            order_id=str(2_000_000_000_000_000_000 + self.book.next_id()),
            client_id=cid,
            symbol=symbol,
            side=side,
            qty=qty,
            reduce_only=reduce_only,
            created_at=now,
            updated_at=now,
        )
        for att in p.get("attachAlgoOrds") or []:
            if att.get("slTriggerPx"):
                order.extra["attach"] = {
                    "cid": str(att.get("attachAlgoClOrdId") or ""),
                    "id": 3_000_000_000 + self.book.next_id() * 10,
                    "trigger": _num(att["slTriggerPx"]),
                }
        if self.book.fill_ratios:
            order.fill_ratio = self.book.fill_ratios.pop(0)
        order.fill_at = now + self.fill_delay
        self.book.add(order)
        asyncio.get_running_loop().call_at(order.fill_at, self.settle)
        ack = load("okx", "order_ack")
        ack["data"][0].update({"clOrdId": cid, "ordId": order.order_id, "ts": str(self.ms())})
        return 200, ack

    def _create_algo(self, p: dict[str, Any]) -> tuple[int, Any]:
        symbol = str(p.get("instId"))
        cid = str(p.get("algoClOrdId") or "")
        if cid and self._pending_client_id(cid):
            return self.error_body("duplicate_client_id")
        side = str(p["side"])
        trigger = _num(p["slTriggerPx"])
        mark = self.book.marks[symbol]
        if side == "sell" and not trigger < mark:
            return self.error_body("sl_above_last")
        if side == "buy" and not trigger > mark:
            return self.error_body("sl_below_last")
        reduce_only = p.get("reduceOnly") in (True, "true")
        if reduce_only and self.book.reducible(symbol, side) == 0:
            return self.error_body("no_position_to_reduce")
        now = self.now()
        order = FakeOrder(
            order_id=str(4_000_000_000 + self.book.next_id()),
            client_id=cid or f"auto{self.book.next_id()}",
            symbol=symbol,
            side=side,
            qty=_num(p["sz"]),
            reduce_only=reduce_only,
            created_at=now,
            updated_at=now,
            trigger_price=trigger,
            status="untriggered",
        )
        order.extra["algo"] = True
        self.book.add(order)
        ack = load("okx", "algo_ack")
        ack["data"][0].update({"algoId": order.order_id, "algoClOrdId": cid,
                               "clOrdId": str(p.get("clOrdId") or "")})
        return 200, ack

    def _cancel_algos(self, p: dict[str, Any]) -> tuple[int, Any]:
        order = self._find(p, algo=True)
        if order is None or not order.open:
            return self.error_body("cancel_not_exist")
        order.status = "canceled"
        order.updated_at = order.terminal_at = self.now()
        ack = load("okx", "cancel_algos_ack")
        ack["data"][0].update({"algoId": order.order_id, "algoClOrdId": order.client_id})
        return 200, ack

    def _positions(self, p: dict[str, Any]) -> tuple[int, Any]:
        as_of = self.now() - self.position_lag
        wanted = str(p["instId"]).split(",") if p.get("instId") else sorted(self.instruments)
        items = []
        for sym in wanted:
            signed = self.book.signed_at(sym, as_of)
            if signed != 0:
                items.append(self.position_json(sym, signed, self.book.last_change(sym, as_of)))
        return self._env(items)


# ---------------------------------------------------------------------------
# building real ccxt exchanges on the fake
# ---------------------------------------------------------------------------

_KEYS = {"apiKey": "fake-api-key-not-real", "secret": "fake-api-secret-not-real"}


def bybit(venue: FakeBybit, *, pro: bool = False, **config: Any) -> Any:
    """A real ``ccxt.async_support.bybit`` (or ``ccxt.pro.bybit``) whose HTTP
    and WebSocket transport is ``venue``. No markets yet: see
    :func:`load_markets_offline`. ``enableRateLimit`` is off: ccxt's throttler
    measures wall-clock time while sleeping on the loop clock, which would
    spin under virtual time."""
    cls = ccxt_pro.bybit if pro else ccxt_async.bybit
    ex = cls({**_KEYS, "session": FakeSession(venue), "enableRateLimit": False, **config})
    ex.milliseconds = venue.clock_ms  # one clock for client and venue
    return ex


def binanceusdm(venue: FakeBinanceUsdm, *, pro: bool = False, **config: Any) -> Any:
    cls = ccxt_pro.binanceusdm if pro else ccxt_async.binanceusdm
    ex = cls({**_KEYS, "session": FakeSession(venue), "enableRateLimit": False, **config})
    ex.milliseconds = venue.clock_ms  # one clock for client and venue
    return ex


def okx(venue: FakeOkx, **config: Any) -> Any:
    """A real ``ccxt.async_support.okx`` whose HTTP transport is ``venue``
    (OKX signs with a passphrase as well as the key and secret)."""
    ex = ccxt_async.okx({**_KEYS, "password": "fake-passphrase-not-real",
                         "session": FakeSession(venue), "enableRateLimit": False, **config})
    ex.milliseconds = venue.clock_ms  # one clock for client and venue
    return ex


async def load_markets_offline(exchange: Any, venue: FakeVenue) -> None:
    """Markets from the recorded instrument payloads, parsed by ccxt itself,
    then ``set_markets``; the requests this makes are dropped from the log."""
    if exchange.id == "bybit":
        # Spot too: on Bybit "BTCUSDT" is the id of both BTC/USDT (spot) and
        # BTC/USDT:USDT (linear), so an id alone is ambiguous, as it is live.
        markets = await exchange.fetch_spot_markets({})
        markets += await exchange.fetch_future_markets({"category": "linear"})
    elif exchange.id == "okx":
        markets = [exchange.parse_market(raw) for raw in load("okx", "instruments_swap")["data"]]
    else:
        markets = [exchange.parse_market(raw) for raw in load("binance", "exchange_info_symbols")]
    exchange.set_markets(markets)
    venue.requests.clear()
