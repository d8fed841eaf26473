"""The promises an adapter makes to the engine, each with a name a failure
quotes. The kit (:mod:`adapters.conformance.kit`) has one or more cases per
promise; a broken one fails with ``promise '<name>' broken on venue
'<venue>': <what was seen>``."""

from __future__ import annotations

import enum
from typing import NoReturn

__all__ = ["Promise", "PromiseBroken", "broken"]


class Promise(enum.Enum):
    """One promise the engine's safety rests on. The value is its name."""

    UNKNOWN_IS_NONE = "unknown-is-none"
    REPORTED_AS_IS = "reported-as-is"
    NOT_FOUND_IS_A_MISS = "not-found-is-a-miss"
    REFUSED_IS_DEFINITIVE = "refused-is-definitive"
    AMBIGUOUS_WRITE = "ambiguous-write"
    FAILED_READ_IS_NOT_A_MISS = "failed-read-is-not-a-miss"
    RATE_LIMITED = "rate-limited-says-retry"
    VENUE_CODES = "venue-codes-map-right"
    LOOKUP_OPEN_AND_CLOSED = "lookup-finds-open-and-closed"
    LOOKUP_AUTHORITATIVE = "lookup-authoritative-after-window"
    REDUCE_ONLY_SENT = "reduce-only-sent"
    REDUCE_ONLY_NEVER_INCREASES = "reduce-only-never-increases"
    STOP_AS_PLACED = "stop-reads-back-as-placed"
    STOP_LISTED = "stop-listed-by-client-id"
    POSITIONS = "positions-side-and-size"
    SYMBOL_CANONICAL = "symbol-canonical"
    HEDGE_MODE = "hedge-mode-reported-or-refused"
    STREAM_IN_ORDER = "stream-in-order"
    STALE_PUSH = "stale-push-never-wins"
    RECEIVE_WINDOW = "receive-window-true"
    ATTACHED_STOP = "attached-stop-true"

    @property
    def text(self) -> str:
        """The promise in one sentence."""
        return _TEXT[self]


_TEXT: dict[Promise, str] = {
    Promise.UNKNOWN_IS_NONE: "a field the venue did not report (side, status, amount, filled, "
    "average, time, reduce-only) is None, never a default",
    Promise.REPORTED_AS_IS: "a field the venue reported is reported as the venue said it",
    Promise.NOT_FOUND_IS_A_MISS: "a look-up of an order the venue does not hold raises "
    "OrderNotFound",
    Promise.REFUSED_IS_DEFINITIVE: "an order the venue refused raises OrderRejected, never a "
    "transient or ambiguous error",
    Promise.AMBIGUOUS_WRITE: "a write whose fate is unknown (timeout, reply lost, 5xx) raises "
    "AmbiguousError",
    Promise.FAILED_READ_IS_NOT_A_MISS: "a read that failed (timeout, 5xx, rate limit) raises "
    "TransientError, never OrderNotFound",
    Promise.RATE_LIMITED: "a rate-limit refusal raises TransientError with retry_after, never "
    "OrderRejected or OrderNotFound",
    Promise.VENUE_CODES: "each venue error code the profile lists maps to its class",
    Promise.LOOKUP_OPEN_AND_CLOSED: "look-up by client id finds an order open or closed",
    Promise.LOOKUP_AUTHORITATIVE: "after the declared visibility window a look-up by client id "
    "is authoritative: it finds an accepted order and misses one never accepted",
    Promise.REDUCE_ONLY_SENT: "every close and every stop reaches the venue reduce-only",
    Promise.REDUCE_ONLY_NEVER_INCREASES: "a reduce-only order that would increase the position "
    "raises OrderRejected and moves nothing",
    Promise.STOP_AS_PLACED: "a stop reads back with the side, size, trigger price and reduce-only "
    "it was placed with, and fires in the direction that closes",
    Promise.STOP_LISTED: "the stop listing finds a stop by its client id; cancel by client id "
    "removes it, and cancelling it again raises OrderNotFound",
    Promise.POSITIONS: "positions report side and size per symbol under the canonical symbol",
    Promise.SYMBOL_CANONICAL: "a market found by either spelling reports the canonical symbol; "
    "an unknown one raises UnknownSymbol",
    Promise.HEDGE_MODE: "a hedge-mode account is reported leg by leg or refused, never netted "
    "silently",
    Promise.STREAM_IN_ORDER: "the position stream delivers the venue's views in order",
    Promise.STALE_PUSH: "a stale stream push never replaces a newer view",
    Promise.RECEIVE_WINDOW: "the declared receive window is what the venue enforces on every write",
    Promise.ATTACHED_STOP: "a declared attached-stop capability arms a reduce-only stop on the "
    "opposite side, at the price, for the entry's fill",
}


class PromiseBroken(AssertionError):
    """A promise failed on a venue. The message names both."""

    def __init__(self, promise: Promise, venue: str, detail: str) -> None:
        super().__init__(
            f"promise {promise.value!r} broken on venue {venue!r}: {detail}"
            f"\n  the promise: {promise.text}"
        )
        self.promise = promise
        self.venue = venue


def broken(promise: Promise, venue: str, detail: str) -> NoReturn:
    """Fail the running case, naming the promise and the venue."""
    raise PromiseBroken(promise, venue, detail)
