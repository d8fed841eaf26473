"""Exchange adapters: the port the engine speaks, and its implementations.

* :mod:`adapters.port`: the protocol and value types.
* :mod:`adapters.simulated`: a deterministic exchange in virtual time.
* :mod:`adapters.ccxt`: real exchanges through ``ccxt.async_support``.
"""

from adapters.port import (
    AmbiguousError,
    DuplicateClientId,
    ExchangeError,
    ExchangePort,
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

__all__ = [
    "AmbiguousError",
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
]
