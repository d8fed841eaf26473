"""The exchange port, as adapter authors import it.

The engine owns these names (:mod:`fsm.model` for the vocabulary and errors,
:mod:`fsm.port` for :class:`ExchangePort` and :class:`PositionCache`); this
module re-exports them so an adapter keeps importing ``adapters.port``.
"""

from fsm.model import (
    AmbiguousError,
    DuplicateClientId,
    ExchangeError,
    Fill,
    Market,
    OrderNotFound,
    OrderRejected,
    OrderSnapshot,
    OrderStatus,
    PositionSide,
    PositionSnapshot,
    Side,
    Source,
    StopSnapshot,
    TransientError,
    UnknownSymbol,
    qty_eq,
)
from fsm.port import AttachedStopPort, ExchangePort, PositionCache

__all__ = [
    "AmbiguousError",
    "AttachedStopPort",
    "DuplicateClientId",
    "ExchangeError",
    "ExchangePort",
    "Fill",
    "Market",
    "OrderNotFound",
    "OrderRejected",
    "OrderSnapshot",
    "OrderStatus",
    "PositionCache",
    "PositionSide",
    "PositionSnapshot",
    "Side",
    "Source",
    "StopSnapshot",
    "TransientError",
    "UnknownSymbol",
    "qty_eq",
]
