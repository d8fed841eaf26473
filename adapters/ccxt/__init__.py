"""Real exchanges through ``ccxt.async_support``.

``from adapters.ccxt import CcxtAdapter`` is the public import. The package:

* :mod:`adapters.ccxt.adapter`: :class:`CcxtAdapter`, the port's methods;
* :mod:`adapters.ccxt.parsing`: ccxt structures → the engine's value types;
* :mod:`adapters.ccxt.errors`: ccxt exceptions → the engine's errors;
* :mod:`adapters.ccxt.stream`: the one ccxt pro watch loop;
* :mod:`adapters.ccxt.profiles`: each venue's facts, as data.
"""

from adapters.ccxt.adapter import CcxtAdapter
from adapters.ccxt.errors import InvalidClientId
from adapters.ccxt.profiles import (
    BINANCE_USDM,
    BYBIT_LINEAR,
    GENERIC,
    OKX_SWAP,
    ExchangeProfile,
    LookupStyle,
    StopStyle,
    profile_for,
)

__all__ = [
    "BINANCE_USDM",
    "BYBIT_LINEAR",
    "GENERIC",
    "OKX_SWAP",
    "CcxtAdapter",
    "ExchangeProfile",
    "InvalidClientId",
    "LookupStyle",
    "StopStyle",
    "profile_for",
]
