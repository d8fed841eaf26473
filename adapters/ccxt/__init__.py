"""Real exchanges through ``ccxt.async_support``.

``from adapters.ccxt import CcxtAdapter`` is the public import; the adapter
lives in :mod:`adapters.ccxt.adapter`.
"""

from adapters.ccxt.adapter import (
    BINANCE_USDM,
    BYBIT_LINEAR,
    GENERIC,
    OKX_SWAP,
    CcxtAdapter,
    ExchangeProfile,
    InvalidClientId,
)

__all__ = [
    "BINANCE_USDM",
    "BYBIT_LINEAR",
    "GENERIC",
    "OKX_SWAP",
    "CcxtAdapter",
    "ExchangeProfile",
    "InvalidClientId",
]
