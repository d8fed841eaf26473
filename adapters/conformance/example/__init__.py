"""The worked example of ``adapters/README.md``: an adapter for the
imaginary Tern exchange, its fake, and the factory the kit runs::

    ADAPTER_CONFORMANCE_VENUE=adapters.conformance.example:make_venue \\
        python -m pytest --pyargs adapters.conformance
"""

from __future__ import annotations

from adapters.conformance.example.adapter import ERROR_CODES, TernAdapter
from adapters.conformance.example.venue import TernDriver, TernVenue
from adapters.conformance.venue import ErrorKind, Venue

__all__ = ["TernAdapter", "TernDriver", "TernVenue", "make_venue"]


async def make_venue() -> Venue:
    """A fresh Tern fake, the adapter on it, and the knobs."""
    venue = TernVenue(last=0.1343)
    codes: dict[str, ErrorKind] = dict(ERROR_CODES)  # type: ignore[arg-type]
    return Venue(name="tern", adapter=TernAdapter(venue), driver=TernDriver(venue),
                 symbol="AVL/USDT:USDT", native_symbol="AVL-PERP", amount=43.0, price=0.1343,
                 error_codes=codes)
