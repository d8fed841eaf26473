"""An exchange that outlives the processes trading on it: the simulator
(:class:`~adapters.simulated.SimulatedExchange`, its ground truth included)
served over HTTP on 127.0.0.1, and the adapter the processes reach it with.

* :class:`EmulatorServer` runs the simulator on its own event loop in a
  thread of the test process; every port method is ``POST /call``, the
  ground truth ``GET /truth``. The loop's clock is the host's monotonic
  clock, as every client process's is, so times compare across processes.
* :class:`HttpExchange` is an :class:`~adapters.port.ExchangePort` over that
  HTTP: snapshots and errors travel as JSON and come back as the port's own
  types. A connection that fails after a write may have been sent is
  :class:`~adapters.port.AmbiguousError`, as on a real venue.

Test support only: nothing in the runtime packages depends on it.
"""

from __future__ import annotations

import asyncio
import enum
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, cast

import attrs

from adapters.simulated import SentOrder, SimConfig, SimFill, SimulatedExchange
from fsm import model as port
from fsm.model import (
    Fill,
    Market,
    OrderSnapshot,
    PositionSnapshot,
    Side,
    StopSnapshot,
)
from fsm.port import PositionCache

_TYPES: dict[str, type[Any]] = {t.__name__: t for t in (
    OrderSnapshot, PositionSnapshot, StopSnapshot, Market, Fill, SentOrder, SimFill,
    port.Side, port.PositionSide, port.OrderStatus, port.Source)}
_ERRORS: dict[str, type[port.ExchangeError]] = {t.__name__: t for t in (
    port.ExchangeError, port.OrderRejected, port.DuplicateClientId, port.OrderNotFound,
    port.UnknownSymbol, port.TransientError, port.AmbiguousError)}
_METHODS = frozenset({"create_order", "fetch_order", "market", "fetch_fills",
                      "fetch_positions", "fetch_price", "place_stop", "fetch_stops",
                      "cancel_order"})


def encode(value: object) -> Any:
    """JSON for port values: attrs records and enums tagged by type name."""
    if isinstance(value, enum.Enum):
        return {"__enum__": type(value).__name__, "v": value.value}
    if attrs.has(type(value)):
        fields = attrs.fields(cast(Any, type(value)))
        return {"__type__": type(value).__name__,
                **{f.name: encode(getattr(value, f.name)) for f in fields}}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if "__enum__" in value:
            return _TYPES[value["__enum__"]](value["v"])
        if "__type__" in value:
            cls = _TYPES[value["__type__"]]
            return cls(**{k: decode(v) for k, v in value.items() if k != "__type__"})
        return {k: decode(v) for k, v in value.items()}
    return value


class EmulatorServer:
    """The simulator behind ``http://127.0.0.1:<port>``; start with
    :meth:`start`, stop with :meth:`stop` (or use it as a context manager)."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="exchange-emulator")
        self.exchange: SimulatedExchange | None = None
        self._server: asyncio.Server | None = None
        self._holds: dict[str, asyncio.Event] = {}

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        self.run(self._start()).result(30)

    def stop(self) -> None:
        if self._server is not None:
            self.run(self._close()).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def run(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def hold_reply(self, method: str) -> Callable[[], None]:
        """The next call of ``method`` takes effect on arrival as ever, but
        its answer waits until the returned ``release()`` is called: its
        caller is then known to be blocked on that answer, so a test can
        pause or kill it there rather than at a moment picked by a clock."""
        event = self.run(self._hold(method)).result(30)

        def release() -> None:
            self._loop.call_soon_threadsafe(event.set)

        return release

    async def _hold(self, method: str) -> asyncio.Event:
        event = self._holds[method] = asyncio.Event()
        return event

    def truth(self) -> dict[str, Any]:
        """The ground truth, read on the exchange's own loop."""
        return cast("dict[str, Any]", self.run(self._truth()).result(30))

    async def _truth(self) -> dict[str, Any]:
        ex = self.exchange
        assert ex is not None
        symbols = set(self.config.prices) | {o.symbol for o in ex.log}
        return {"net": {s: ex.net_position(s) for s in symbols},
                "log": list(ex.log), "fills": list(ex.fills),
                "stops": ex.resting_stops(), "calls": dict(ex.calls)}

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _start(self) -> None:
        self.exchange = SimulatedExchange(self.config)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        host, port_ = self._server.sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port_}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode()
            length = 0
            while True:
                line = (await reader.readline()).decode().strip()
                if not line:
                    break
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            status, reply = await self._answer(request_line.split(" ")[1], body)
            data = json.dumps(reply).encode()
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                         + data)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client died mid-request: the exchange does not care
        finally:
            writer.close()

    async def _answer(self, path: str, body: bytes) -> tuple[str, Any]:
        ex = self.exchange
        assert ex is not None
        if path == "/info":
            return "200 OK", {"receive_window": ex.receive_window,
                              "lookup_lag": ex.lookup_lag, "name": ex.name}
        if path == "/truth":
            return "200 OK", encode(await self._truth())
        if path != "/call":
            return "404 Not Found", {}
        call = json.loads(body)
        method = call["method"]
        if method not in _METHODS:
            return "400 Bad Request", {"error": "ExchangeError", "message": method}
        held = self._holds.pop(method, None)
        try:
            result = await getattr(ex, method)(**decode(call["kwargs"]))
        except port.ExchangeError as exc:
            return "200 OK", {"error": type(exc).__name__, "message": str(exc),
                              "retry_after": getattr(exc, "retry_after", None)}
        finally:
            if held is not None:
                await held.wait()
        return "200 OK", {"result": encode(result)}


class HttpExchange:
    """An :class:`~adapters.port.ExchangePort` reaching an
    :class:`EmulatorServer`; ``account_id`` is the account label leases use
    (as a real adapter's exchange id plus key hash)."""

    def __init__(self, url: str, *, account_id: str = "emulator:acct",
                 timeout: float = 10.0) -> None:
        self.url = url
        self.account_id = account_id
        self._timeout = timeout
        info = self._http("/info", None)
        self._window: float | None = info["receive_window"]
        self._lag: float = info["lookup_lag"]

    @property
    def name(self) -> str:
        return "emulator"

    @property
    def position_cache(self) -> PositionCache | None:
        return None

    @property
    def receive_window(self) -> float | None:
        return self._window

    @property
    def lookup_lag(self) -> float:
        return self._lag

    def _http(self, path: str, body: dict[str, Any] | None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self._timeout) as resp:
            return json.loads(resp.read())

    async def _call(self, method: str, *, write: bool, **kwargs: Any) -> Any:
        try:
            reply = await asyncio.to_thread(self._http, "/call",
                                            {"method": method, "kwargs": encode(kwargs)})
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            cls = port.AmbiguousError if write else port.TransientError
            raise cls(f"{method}: {exc}", cause=exc) from exc
        if "error" in reply:
            err = _ERRORS.get(reply["error"], port.ExchangeError)
            if issubclass(err, port.TransientError):
                raise err(reply["message"], retry_after=reply.get("retry_after"))
            raise err(reply["message"])
        return decode(reply["result"])

    async def create_order(self, *, symbol: str, side: Side, amount: float, client_id: str,
                           reduce_only: bool) -> OrderSnapshot:
        got = await self._call("create_order", write=True, symbol=symbol, side=side,
                               amount=amount, client_id=client_id, reduce_only=reduce_only)
        return cast(OrderSnapshot, got)

    async def fetch_order(self, *, symbol: str, order_id: str | None,
                          client_id: str | None) -> OrderSnapshot:
        got = await self._call("fetch_order", write=False, symbol=symbol, order_id=order_id,
                               client_id=client_id)
        return cast(OrderSnapshot, got)

    async def market(self, symbol: str) -> Market:
        return cast(Market, await self._call("market", write=False, symbol=symbol))

    async def fetch_fills(self, symbol: str, since: float | None) -> list[Fill]:
        got = await self._call("fetch_fills", write=False, symbol=symbol, since=since)
        return cast("list[Fill]", got)

    async def fetch_positions(self, symbols: Sequence[str] | None = None
                              ) -> list[PositionSnapshot]:
        got = await self._call("fetch_positions", write=False,
                               symbols=list(symbols) if symbols is not None else None)
        return cast("list[PositionSnapshot]", got)

    async def fetch_price(self, symbol: str) -> float | None:
        return cast("float | None", await self._call("fetch_price", write=False, symbol=symbol))

    async def place_stop(self, *, symbol: str, side: Side, amount: float, trigger_price: float,
                         client_id: str) -> StopSnapshot:
        got = await self._call("place_stop", write=True, symbol=symbol, side=side,
                               amount=amount, trigger_price=trigger_price, client_id=client_id)
        return cast(StopSnapshot, got)

    async def fetch_stops(self, symbol: str | None = None) -> list[StopSnapshot]:
        got = await self._call("fetch_stops", write=False, symbol=symbol)
        return cast("list[StopSnapshot]", got)

    async def cancel_order(self, *, symbol: str, order_id: str | None,
                           client_id: str | None) -> None:
        await self._call("cancel_order", write=True, symbol=symbol, order_id=order_id,
                         client_id=client_id)


def truth(url: str) -> dict[str, Any]:
    """The ground truth from outside the server's process (decoded)."""
    with urllib.request.urlopen(url + "/truth", timeout=30) as resp:
        return cast("dict[str, Any]", decode(json.loads(resp.read())))


