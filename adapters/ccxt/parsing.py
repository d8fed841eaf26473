"""ccxt structures → the engine's value types, with no guessing and no I/O.

A field ccxt did not report is ``None``; nothing here is inferred from our
own request. Pure functions, so the parsing is testable on a dict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from ccxt.base.decimal_to_precision import DECIMAL_PLACES, TICK_SIZE

from fsm.model import OrderSnapshot, OrderStatus, PositionSide, Side, StopSnapshot

__all__ = [
    "ack_snapshot",
    "client_id_in",
    "grid_step",
    "num",
    "order_snapshot",
    "order_time",
    "reported_fill",
    "seconds",
    "side_of",
    "signed_contracts",
    "stop_snapshot",
]

#: ccxt's unified order statuses, onto the port's. ``canceling`` is still
#: open as far as exposure goes; anything else unknown stays ``None``.
_STATUS: Mapping[str, OrderStatus] = {
    "open": OrderStatus.OPEN,
    "canceling": OrderStatus.OPEN,
    "closed": OrderStatus.CLOSED,
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "rejected": OrderStatus.REJECTED,
    "expired": OrderStatus.EXPIRED,
}


def num(value: object) -> float | None:
    """A finite non-negative float, or ``None``: ccxt values arrive as
    float, int, numeric string or ``None``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v) or v < 0:
        return None
    return v


def seconds(ms: object) -> float | None:
    """An exchange timestamp in milliseconds as seconds; ``None`` when absent or 0."""
    v = num(ms)
    return None if v is None or v == 0 else v / 1000.0


def order_time(raw: Mapping[str, Any]) -> float | None:
    """The exchange's time of the order's latest change (for a filled market
    order: its fill), falling back to its creation time. The engine compares
    it with a flat position's ``as_of``, so it must not be the earlier
    creation time when the exchange reports a later one."""
    for key in ("lastUpdateTimestamp", "lastTradeTimestamp", "timestamp"):
        t = seconds(raw.get(key))
        if t is not None:
            return t
    return None


def grid_step(value: object, mode: object) -> float | None:
    """A market's price or amount step from ccxt's ``precision`` entry:
    the step itself in ccxt's TICK_SIZE mode (Bybit, Binance in ccxt 4.5),
    ``10**-n`` in DECIMAL_PLACES mode, and ``None`` (no grid we can state)
    otherwise."""
    v = num(value)
    if v is None or v == 0:
        return None
    if mode == TICK_SIZE:
        return v
    if mode == DECIMAL_PLACES:
        return float(10.0**-v)
    return None


def side_of(signed: float) -> PositionSide | None:
    """The side of a signed net position; flat has none."""
    if signed == 0:
        return None
    return PositionSide.LONG if signed > 0 else PositionSide.SHORT


def client_id_in(info: object) -> str | None:
    """Our client order id in a trade's raw ``info``, under whichever name the
    venue uses (Bybit ``orderLinkId``, Binance ``clientOrderId``, OKX
    ``clOrdId``); ``None`` when there is none."""
    if isinstance(info, Mapping):
        for key in ("orderLinkId", "clientOrderId", "clOrdId"):
            value = info.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def reported_fill(raw: Mapping[str, Any], filled_keys: Sequence[str] = ()) -> float | None:
    """The filled quantity the venue reported: ``None`` when the raw order
    (ccxt's ``info``) carries none of ``filled_keys``, however ccxt filled
    it in (binance.parse_order defaults a missing ``executedQty`` to 0)."""
    info = raw.get("info")
    if filled_keys and isinstance(info, Mapping) and all(
        info.get(k) in (None, "") for k in filled_keys
    ):
        return None
    return num(raw.get("filled"))


def order_snapshot(
    raw: Mapping[str, Any], symbol: str, filled_keys: Sequence[str] = ()
) -> OrderSnapshot:
    """One ccxt order as the port's snapshot (``symbol`` when ccxt gives
    none). ``filled_keys``: the profile's :attr:`filled_info_keys`."""
    amount = num(raw.get("amount"))
    filled = reported_fill(raw, filled_keys)
    status = _STATUS.get(str(raw.get("status"))) if raw.get("status") is not None else None
    if (
        status is OrderStatus.CLOSED
        and amount is not None
        and filled is not None
        and filled < amount
    ):
        # ccxt reports Bybit "PartiallyFilledCanceled" as "closed"; the
        # port's CLOSED means fully filled, so this is an ended order
        # with a partial fill.
        status = OrderStatus.CANCELED
    reduce_only = raw.get("reduceOnly")
    info = raw.get("info")
    if isinstance(info, Mapping) and "reduceOnly" not in info:
        # ccxt turns an absent field into False (okx.parse_order: OKX's
        # algo replies carry no reduceOnly): absent is unknown, not false.
        reduce_only = None
    sym = raw.get("symbol")
    order_id = raw.get("id")
    client_id = raw.get("clientOrderId")
    if (client_id is None or client_id == "") and isinstance(info, Mapping):
        client_id = info.get("algoClOrdId") or None  # OKX algo orders
    return OrderSnapshot(
        symbol=sym if isinstance(sym, str) else symbol,
        order_id=None if order_id is None else str(order_id),
        client_id=client_id if isinstance(client_id, str) and client_id else None,
        side=Side.parse(raw.get("side")),
        amount=amount,
        filled=filled,
        status=status,
        reduce_only=reduce_only if isinstance(reduce_only, bool) else None,
        average=num(raw.get("average")),
        timestamp=order_time(raw),
    )


def ack_snapshot(
    raw: Mapping[str, Any], symbol: str, filled_keys: Sequence[str] = ()
) -> OrderSnapshot:
    """A create's reply. ccxt's okx.create_order copies the *requested* side
    into the parsed reply; a side the venue did not send is not a fact
    (rule 1), so it is dropped when the raw reply has none."""
    snap = order_snapshot(raw, symbol, filled_keys)
    info = raw.get("info")
    if isinstance(info, Mapping) and info and not any(k in info for k in ("side", "S")):
        snap = attrs.evolve(snap, side=None)
    return snap


def stop_snapshot(raw: Mapping[str, Any], symbol: str | None) -> StopSnapshot:
    """One ccxt conditional order as the port's stop snapshot (its trigger
    price ``None`` when the order is not conditional)."""
    order = order_snapshot(raw, symbol or str(raw.get("symbol") or ""))
    trigger = num(raw.get("triggerPrice"))
    if trigger is None:
        trigger = num(raw.get("stopLossPrice"))
    return StopSnapshot(
        symbol=order.symbol,
        order_id=order.order_id,
        client_id=order.client_id,
        side=order.side,
        amount=order.amount,
        trigger_price=trigger,
        reduce_only=order.reduce_only,
        status=order.status,
    )


def signed_contracts(raw: Mapping[str, Any]) -> float | None:
    """Signed size of one ccxt position entry; ``None`` when it cannot
    be stated (size > 0 with no known direction)."""
    size = num(raw.get("contracts"))
    if size is None:
        return None
    if size == 0:
        return 0.0
    side = PositionSide.parse(raw.get("side"))
    if side is None:
        return None
    return size if side is PositionSide.LONG else -size
