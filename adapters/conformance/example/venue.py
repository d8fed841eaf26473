"""A fake of the imaginary Tern exchange's REST API (``/v1/...``, JSON),
for the worked example in ``adapters/README.md``, and its conformance
driver. Netting positions, market orders that fill at once at the last
price, reduce-only, stop-markets, client ids unique per account, a receive
window, a visibility lag, and faults aimed at the next request."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Collection
from typing import Any

from adapters.conformance.venue import Call, Failure, Outcome, Received, Unsupported
from adapters.port import Side

__all__ = ["TernDriver", "TernVenue"]

Body = dict[str, Any]
_ROUTES: dict[Call, tuple[str, str]] = {
    "create": ("POST", "/v1/orders"), "place_stop": ("POST", "/v1/orders"),
    "fetch_order": ("GET", "/v1/orders"), "cancel": ("DELETE", "/v1/orders"),
    "fetch_stops": ("GET", "/v1/stops"), "fetch_positions": ("GET", "/v1/positions"),
}


def _err(status: int, code: str, message: str = "") -> tuple[int, Body]:
    return status, {"error": {"code": code, "message": message or code.lower()}}


class TernVenue:
    """The venue: ``await request(method, path, params)`` answers
    ``(status, body)`` or raises ``TimeoutError`` when the client gives up."""

    def __init__(self, last: float = 0.1343) -> None:
        self.last = {"AVL-PERP": last}
        self.position: dict[str, float] = {}
        self.orders: dict[str, Body] = {}  # client id -> order
        self.faults: list[tuple[tuple[str, str], str, Any]] = []
        self.hidden_for = 0.0
        self.ids_only = False
        self.rest_next = False
        self.reject_next = False
        self._ids = itertools.count(1)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def request(self, method: str, path: str, params: Body) -> tuple[int, Body]:
        """One request: its fault if one is aimed at it, else Tern's answer."""
        fault = next((f for f in self.faults if f[0] == (method, path)), None)
        if fault is not None:
            self.faults.remove(fault)
        await asyncio.sleep(0.005)
        kind: str = fault[1] if fault else ""
        arg: Any = fault[2] if fault else None
        if kind == "timeout_before":
            raise TimeoutError
        if kind == "delayed":
            asyncio.get_running_loop().call_later(arg, self._answer, method, path, params)
            raise TimeoutError
        if kind == "unavailable":
            return _err(503, "UNAVAILABLE")
        if kind == "rate_limit":
            return 429, {"error": {"code": "RATE_LIMIT", "retry_after_ms": 200}}
        if kind == "code":
            return _err(400, arg)
        status, body = self._answer(method, path, params)
        if kind == "timeout_after":
            raise TimeoutError
        await asyncio.sleep(0.005)
        return status, body

    def _answer(self, method: str, path: str, p: Body) -> tuple[int, Body]:
        if method != "GET" and self._now() - float(p["ts"]) > float(p["recv_window_ms"]) / 1000:
            return _err(400, "EXPIRED", "request outside its receive window")
        if (method, path) == ("GET", "/v1/markets"):
            return 200, {"markets": [{"symbol": "AVL-PERP", "tick": "0.0001", "lot": "1"}]}
        if (method, path) == ("GET", "/v1/ticker"):
            return 200, {"last": str(self.last[p["symbol"]])}
        if (method, path) == ("GET", "/v1/positions"):
            return 200, {"positions": [{"symbol": s, "qty": str(q)}
                                       for s, q in self.position.items() if q]}
        if (method, path) == ("GET", "/v1/stops"):
            return 200, {"stops": [self._shown(o) for o in self.orders.values()
                                   if o["type"] == "stop" and o["status"] == "NEW"
                                   and p.get("symbol") in (None, o["symbol"])]}
        order = self.orders.get(p.get("client_id") or "") or next(
            (o for o in self.orders.values() if o["id"] == p.get("id")), None)
        if (method, path) == ("GET", "/v1/orders"):
            if order is None or self._now() < order["ts"] + self.hidden_for:
                return _err(404, "NO_ORDER")
            return 200, {"order": self._shown(order)}
        if (method, path) == ("DELETE", "/v1/orders"):
            if order is None or order["status"] != "NEW":
                return _err(404, "NO_ORDER")
            order["status"] = "CANCELLED"
            return 200, {"order": {"id": order["id"], "client_id": order["client_id"]}}
        return self._create(p)

    def _create(self, p: Body) -> tuple[int, Body]:
        sym, side, qty = p["symbol"], p["side"], float(p["qty"])
        if p["client_id"] in self.orders:
            return _err(409, "DUP_ID")
        held = self.position.get(sym, 0.0)
        closes = (side == "sell" and held > 0) or (side == "buy" and held < 0)
        reducible = abs(held) if closes else 0.0
        if p.get("reduce_only") and reducible <= 0:
            return _err(400, "REJECTED", "reduce-only would increase the position")
        if p["type"] == "stop":
            trigger = float(p["trigger"])
            if (side == "sell") == (trigger >= self.last[sym]):
                return _err(400, "REJECTED", "trigger on the wrong side of the market")
        elif self.reject_next:
            self.reject_next = False
            return _err(400, "REJECTED", "insufficient margin")
        order: Body = {"id": str(next(self._ids)), "client_id": p["client_id"], "symbol": sym,
                       "side": side, "qty": str(qty), "filled": "0", "status": "NEW",
                       "reduce_only": bool(p.get("reduce_only")), "type": p["type"],
                       "trigger": p.get("trigger"), "ts": self._now()}
        self.orders[p["client_id"]] = order
        if p["type"] == "market" and not self.rest_next:
            fill = min(qty, reducible) if p.get("reduce_only") else qty
            self.position[sym] = held + (fill if side == "buy" else -fill)
            order.update(filled=str(fill), status="FILLED", avg_price=str(self.last[sym]))
        self.rest_next = False
        return 200, {"order": self._shown(order)}

    def _shown(self, order: Body) -> Body:
        if self.ids_only:
            return {"id": order["id"], "client_id": order["client_id"]}
        return {k: v for k, v in order.items() if v is not None}


class TernDriver:
    """The conformance kit's knobs on :class:`TernVenue`."""

    def __init__(self, venue: TernVenue) -> None:
        self.venue = venue

    def set_price(self, symbol: str, price: float) -> None:
        """Tern's last price."""
        self.venue.last["AVL-PERP"] = price

    def next_order(self, outcome: Outcome) -> None:
        """Refuse, or leave resting, the next market order."""
        self.venue.reject_next = outcome == "reject"
        self.venue.rest_next = outcome == "rest"

    def fail_next(self, call: Call, failure: Failure) -> None:
        """Queue the failure for the call's route."""
        self.venue.faults.append((_ROUTES[call], failure, None))

    def delay_next(self, call: Call, seconds: float) -> None:
        """The request arrives ``seconds`` later, judged by its window then."""
        self.venue.faults.append((_ROUTES[call], "delayed", seconds))

    def venue_error(self, call: Call, code: str) -> None:
        """Answer the call's route with Tern's error ``code``."""
        self.venue.faults.append((_ROUTES[call], "code", code))

    def hide_orders(self, seconds: float) -> None:
        """Look-ups miss orders younger than ``seconds``."""
        self.venue.hidden_for = seconds

    def ids_only_replies(self) -> Collection[Call]:
        """Order replies carry ``id`` and ``client_id`` only."""
        self.venue.ids_only = True
        stripped: tuple[Call, ...] = ("create", "fetch_order")
        return stripped

    def set_position(self, symbol: str, signed: float) -> None:
        """The net position Tern holds."""
        self.venue.position["AVL-PERP"] = signed

    def hedge_legs(self, symbol: str, long: float, short: float) -> None:
        """Tern has no hedge mode."""
        raise Unsupported("Tern has no hedge mode")

    def push_position(self, symbol: str, signed: float, at: float) -> None:
        """Tern has no stream."""
        raise Unsupported("Tern has no stream")

    def received(self, client_id: str) -> Received | None:
        """The order Tern holds under ``client_id``."""
        o = self.venue.orders.get(client_id)
        if o is None:
            return None
        return Received(side=Side(o["side"]), amount=float(o["qty"]),
                        reduce_only=o["reduce_only"],
                        trigger_price=None if o["trigger"] is None else float(o["trigger"]))
