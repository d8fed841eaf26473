"""What an adapter author hands the conformance kit: the adapter, and a
venue it talks to that the kit can steer.

The venue is whatever the adapter's requests reach in a test: a fake of the
exchange's HTTP API, an emulator, the simulator. The kit never talks to it
directly except through a :class:`VenueDriver`, a handful of knobs that say
what the venue does next (fill or refuse the next order, lose a reply, hide
orders for a while, hold a position...). A knob the venue cannot turn raises
:class:`Unsupported`; the cases that need it are then skipped, by name, and
never counted as passed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Literal, Protocol

import attrs

from adapters.port import ExchangePort, Side

__all__ = [
    "Call",
    "ErrorKind",
    "Failure",
    "Outcome",
    "Received",
    "Unsupported",
    "Venue",
    "VenueDriver",
]

#: The port calls a knob can aim at.
Call = Literal["create", "fetch_order", "place_stop", "fetch_stops", "fetch_positions", "cancel"]

#: How the next call fails: lost on the way (``timeout_before``: the venue
#: never sees it), reply lost (``timeout_after``: the venue acted on it),
#: an HTTP 503 from the venue's gateway, or a rate-limit refusal.
Failure = Literal["timeout_before", "timeout_after", "unavailable", "rate_limit"]

#: What the venue does with the next order: fill it at once, refuse it (as
#: for insufficient margin), or accept it and leave it resting unfilled.
Outcome = Literal["fill", "reject", "rest"]

#: The engine's error classes, as the venue's own error codes must map:
#:
#: * ``not_found``: a look-up answered "no such order" -> ``OrderNotFound``;
#: * ``refused``: a write definitively refused -> ``OrderRejected``;
#: * ``ambiguous``: fate unknown -> ``AmbiguousError`` on a write, a
#:   ``TransientError`` (never a miss) on a read;
#: * ``rate_limited``: refused at the gateway before matching (rate limit,
#:   expired timestamp) -> ``TransientError`` with ``retry_after``, never a
#:   refusal or a miss;
#: * ``duplicate_client_id``: a create refused because the client id exists
#:   -> ``AmbiguousError`` or ``DuplicateClientId`` (either sends the engine
#:   to look the order up).
ErrorKind = Literal["not_found", "refused", "ambiguous", "rate_limited", "duplicate_client_id"]


class Unsupported(Exception):
    """Raised by a :class:`VenueDriver` knob the venue cannot turn."""


@attrs.frozen
class Received:
    """An order as it reached the venue (the venue's ground truth, not the
    adapter's report)."""

    side: Side
    amount: float
    reduce_only: bool
    trigger_price: float | None = None


class VenueDriver(Protocol):
    """Knobs on the venue. Each applies to the *next* matching request
    unless it says otherwise. Raise :class:`Unsupported` for a knob the
    venue does not have."""

    def set_price(self, symbol: str, price: float) -> None:
        """The market (last and mark) price of ``symbol`` from now on."""
        ...

    def next_order(self, outcome: Outcome) -> None:
        """What the venue does with the next (non-reduce-only) order."""
        ...

    def fail_next(self, call: Call, failure: Failure) -> None:
        """The next ``call`` fails this way."""
        ...

    def delay_next(self, call: Call, seconds: float) -> None:
        """The client gives up on the next ``call`` at once (a timeout), but
        the request is still in transit and reaches the venue ``seconds``
        later, where the venue's receive window decides its fate."""
        ...

    def venue_error(self, call: Call, code: str) -> None:
        """The venue answers the next ``call`` with its own error ``code``."""
        ...

    def hide_orders(self, seconds: float) -> None:
        """Orders accepted from now on stay invisible to look-ups for
        ``seconds`` (the venue's visibility window)."""
        ...

    def ids_only_replies(self) -> Collection[Call]:
        """From now on the venue's replies about orders carry the ids only:
        no side, status, amounts, prices or times. Returns the calls whose
        replies it strips (``"create"``, ``"fetch_order"``)."""
        ...

    def set_position(self, symbol: str, signed: float) -> None:
        """The account holds this net position now (positive long), as if
        someone traded by hand."""
        ...

    def hedge_legs(self, symbol: str, long: float, short: float) -> None:
        """The account is in hedge mode and holds both legs."""
        ...

    def push_position(self, symbol: str, signed: float, at: float) -> None:
        """The venue's position stream pushes this position with exchange
        time ``at`` (seconds on the event loop's clock)."""
        ...

    def received(self, client_id: str) -> Received | None:
        """The order the venue accepted under ``client_id``, or ``None``."""
        ...


@attrs.frozen
class Venue:
    """One adapter under test and the venue behind it.

    ``symbol`` is a canonical symbol the venue lists and ``amount`` a valid
    order size on it (on the lot grid, above the minimums, such that twice
    the amount is valid too); ``price`` its price when the venue is built.
    ``error_codes`` maps each venue error code the adapter's profile lists
    to the class the engine must see. ``close`` releases what the factory
    opened (sessions, tasks)."""

    name: str
    adapter: ExchangePort
    driver: VenueDriver
    symbol: str
    amount: float
    price: float
    native_symbol: str | None = None
    error_codes: Mapping[str, ErrorKind] = attrs.field(factory=dict)
    close: Callable[[], Awaitable[None]] | None = None
