"""A conformance kit for exchange adapters: one pytest suite that checks,
on any adapter and a venue it can steer, every promise the engine relies on.

Use it from your own tests::

    from adapters.conformance import AdapterConformance, Venue

    class TestMyVenue(AdapterConformance):
        async def make_venue(self) -> Venue:
            ...  # your adapter, your fake venue and its driver

or without writing a test file::

    ADAPTER_CONFORMANCE_VENUE=mybot.venue:make_venue \\
        python -m pytest --pyargs adapters.conformance

The promises are listed in :class:`Promise`; the guide is
``adapters/README.md``. Importing this package imports pytest.
"""

from adapters.conformance.kit import AdapterConformance
from adapters.conformance.promises import Promise, PromiseBroken
from adapters.conformance.venue import (
    Call,
    ErrorKind,
    Failure,
    Outcome,
    Received,
    Unsupported,
    Venue,
    VenueDriver,
)

__all__ = [
    "AdapterConformance",
    "Call",
    "ErrorKind",
    "Failure",
    "Outcome",
    "Promise",
    "PromiseBroken",
    "Received",
    "Unsupported",
    "Venue",
    "VenueDriver",
]
