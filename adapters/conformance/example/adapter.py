"""A complete adapter for the imaginary Tern exchange: the worked example of
``adapters/README.md``. It speaks :class:`~adapters.port.ExchangePort` over
any object with ``async request(method, path, params) -> (status, body)``
that raises ``TimeoutError`` when the client gives up."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from adapters.port import (
    AmbiguousError,
    ExchangeError,
    Fill,
    Market,
    OrderNotFound,
    OrderRejected,
    OrderSnapshot,
    OrderStatus,
    PositionCache,
    PositionSide,
    PositionSnapshot,
    Side,
    Source,
    StopSnapshot,
    TransientError,
    UnknownSymbol,
)

__all__ = ["ERROR_CODES", "TernAdapter"]

#: Tern's error codes, by what they tell the engine (the kit checks each).
ERROR_CODES = {"NO_ORDER": "not_found", "REJECTED": "refused", "UNAVAILABLE": "ambiguous",
               "RATE_LIMIT": "rate_limited", "EXPIRED": "rate_limited",
               "DUP_ID": "duplicate_client_id"}
_STATUS = {"NEW": OrderStatus.OPEN, "FILLED": OrderStatus.CLOSED,
           "CANCELLED": OrderStatus.CANCELED, "REJECTED": OrderStatus.REJECTED}
_SYMBOLS = {"AVL/USDT:USDT": "AVL-PERP"}  # canonical -> Tern's id
_WINDOW = 5.0  # seconds; Tern refuses a write that arrives later (code EXPIRED)


class Transport(Protocol):
    async def request(self, method: str, path: str, params: dict[str, Any]
                      ) -> tuple[int, dict[str, Any]]: ...


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


class TernAdapter:
    """:class:`~adapters.port.ExchangePort` for Tern (no stream)."""

    name = "tern"
    position_cache: PositionCache | None = None
    receive_window: float | None = _WINDOW  # sent on every write as recv_window_ms
    lookup_lag = 1.0  # Tern shows an accepted order within a second

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    async def _call(self, method: str, path: str, *, write: bool = False, **params: Any) -> Any:
        if write:
            params.update(ts=asyncio.get_running_loop().time(),
                          recv_window_ms=round(_WINDOW * 1000))
        try:
            status, body = await self._t.request(method, path, params)
        except TimeoutError as exc:
            raise (AmbiguousError if write else TransientError)(f"tern: {path} timed out") from exc
        if status != 200:
            raise _error(status, body.get("error") or {}, write)
        return body

    async def create_order(self, *, symbol: str, side: Side, amount: float, client_id: str,
                           reduce_only: bool) -> OrderSnapshot:
        """A market order, reduce-only when asked; the reply as Tern sent it."""
        body = await self._call("POST", "/v1/orders", write=True, symbol=_native(symbol),
                                side=side.value, qty=amount, client_id=client_id,
                                reduce_only=reduce_only, type="market")
        return _order(body["order"], symbol)

    async def fetch_order(self, *, symbol: str, order_id: str | None,
                          client_id: str | None) -> OrderSnapshot:
        """The order by Tern's id, else by our client id."""
        key = {"client_id": client_id} if order_id is None else {"id": order_id}
        body = await self._call("GET", "/v1/orders", **key)
        return _order(body["order"], symbol)

    async def market(self, symbol: str) -> Market:
        """The market in either spelling, under the canonical symbol."""
        canonical = symbol if symbol in _SYMBOLS else _canonical(symbol)
        body = await self._call("GET", "/v1/markets")
        for m in body["markets"]:
            if m["symbol"] == _SYMBOLS.get(canonical):
                return Market(symbol=canonical, native_id=m["symbol"],
                              price_step=_num(m.get("tick")), amount_step=_num(m.get("lot")))
        raise UnknownSymbol(f"tern: no market {symbol!r}")

    async def fetch_fills(self, symbol: str, since: float | None) -> list[Fill]:
        """Not offered by this example: it raises rather than answer partially."""
        raise ExchangeError("tern: no trade history in this example")

    async def fetch_positions(self, symbols: Sequence[str] | None = None
                              ) -> list[PositionSnapshot]:
        """Tern's net positions, per canonical symbol."""
        body = await self._call("GET", "/v1/positions")
        now = asyncio.get_running_loop().time()
        out = []
        for p in body["positions"]:
            sym, qty = _canonical(p["symbol"]), float(p["qty"])
            if symbols is None or sym in symbols:
                side = PositionSide.LONG if qty > 0 else PositionSide.SHORT if qty < 0 else None
                out.append(PositionSnapshot(symbol=sym, side=side, size=abs(qty),
                                            source=Source.REST, received_at=now))
        return out

    async def fetch_price(self, symbol: str) -> float | None:
        """Tern's last price."""
        return _num((await self._call("GET", "/v1/ticker", symbol=_native(symbol))).get("last"))

    async def place_stop(self, *, symbol: str, side: Side, amount: float, trigger_price: float,
                         client_id: str) -> StopSnapshot:
        """A reduce-only stop-market at ``trigger_price``."""
        body = await self._call("POST", "/v1/orders", write=True, symbol=_native(symbol),
                                side=side.value, qty=amount, client_id=client_id,
                                reduce_only=True, type="stop", trigger=trigger_price)
        return _stop(body["order"], symbol)

    async def fetch_stops(self, symbol: str | None = None) -> list[StopSnapshot]:
        """Open stops, for one symbol or all."""
        params: dict[str, Any] = {} if symbol is None else {"symbol": _native(symbol)}
        body = await self._call("GET", "/v1/stops", **params)
        return [_stop(o, _canonical(o["symbol"])) for o in body["stops"]]

    async def cancel_order(self, *, symbol: str, order_id: str | None,
                           client_id: str | None) -> None:
        """Cancel by Tern's id, else by our client id."""
        key = {"client_id": client_id} if order_id is None else {"id": order_id}
        await self._call("DELETE", "/v1/orders", write=True, **key)


def _native(symbol: str) -> str:
    if symbol not in _SYMBOLS:
        raise UnknownSymbol(f"tern: no market {symbol!r}")
    return _SYMBOLS[symbol]


def _canonical(native: str) -> str:
    for canonical, ident in _SYMBOLS.items():
        if ident == native:
            return canonical
    raise UnknownSymbol(f"tern: no market {native!r}")


def _error(status: int, err: dict[str, Any], write: bool) -> ExchangeError:
    """Tern's answer, classified: absent fields stay unknown, and anything
    we cannot place is ambiguous on a write."""
    code, msg = err.get("code"), f"tern: HTTP {status} {err}"
    kind = ERROR_CODES.get(str(code))
    if kind == "not_found":
        return OrderNotFound(msg)
    if kind == "refused":
        return OrderRejected(msg) if write else ExchangeError(msg)
    if kind == "rate_limited":
        return TransientError(msg, retry_after=(err.get("retry_after_ms") or 1000) / 1000)
    return AmbiguousError(msg) if write else TransientError(msg)  # 5xx, DUP_ID, unknown


def _order(o: dict[str, Any], symbol: str) -> OrderSnapshot:
    status = o.get("status")
    return OrderSnapshot(symbol=symbol, order_id=o.get("id"), client_id=o.get("client_id"),
                         side=Side.parse(o.get("side")), amount=_num(o.get("qty")),
                         filled=_num(o.get("filled")),
                         status=None if status is None else _STATUS.get(status),
                         reduce_only=o.get("reduce_only"), average=_num(o.get("avg_price")),
                         timestamp=o.get("ts"))


def _stop(o: dict[str, Any], symbol: str) -> StopSnapshot:
    snap = _order(o, symbol)
    return StopSnapshot(symbol=symbol, order_id=snap.order_id, client_id=snap.client_id,
                        side=snap.side, amount=snap.amount, trigger_price=_num(o.get("trigger")),
                        reduce_only=snap.reduce_only, status=snap.status)
