"""Deadlines and back-off: every number the engine waits by, documented."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

import attrs

__all__ = ["MAX_WAIT", "MIN_REQUEST_TIMEOUT", "MIN_WINDOW", "PROTECTION_MODES", "Policy",
           "seconds_in"]


def seconds_in(
    owner: str, low: float, high: float, *, low_open: bool = False
) -> Callable[[object, attrs.Attribute[float], float], None]:
    """An attrs validator: a real number (not a bool), finite, within
    ``[low, high]`` (``(low, high]`` with ``low_open``); the error names the
    field, the range and the value."""
    lo = "(" if low_open else "["

    def check(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and math.isfinite(value)
              and (value > low if low_open else value >= low) and value <= high)
        if not ok:
            raise ValueError(f"{owner}.{attr.name} must be a finite number in "
                             f"{lo}{low:g}, {high:g}], got {value!r}")

    return check


#: Upper bound on every deadline: an hour. Longer is a mistake (a position
#: unprotected for hours is not a setting), and it keeps ``max_duration``
#: (law L3) finite.
MAX_WAIT: Final = 3600.0

#: Lower bound on ``request_timeout``: below ~50 ms no exchange answers, so
#: every call would time out before it could be sent and an attempt could
#: end ORPHANED without having sent anything.
MIN_REQUEST_TIMEOUT: Final = 0.05

#: Lower bound on the verify, protect and close windows: each must leave
#: room for at least one request.
MIN_WINDOW: Final = 0.1

_window = seconds_in("Policy", MIN_WINDOW, MAX_WAIT)

#: How the stop-loss reaches the exchange (``Policy.protection``).
PROTECTION_MODES: Final = ("auto", "attached", "separate")


def _protection(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or value not in PROTECTION_MODES:
        raise ValueError(f"Policy.{attr.name} must be one of "
                         f"{', '.join(repr(m) for m in PROTECTION_MODES)}, got {value!r}")


@attrs.frozen
class Policy:
    """How long the engine waits, and how it polls.

    No value here is a fixed sleep: every wait ends early on the first real
    evidence; these are only the bounds.

    Every field is a real number of seconds (a bool is refused, as are NaN
    and infinities), within the range its comment states; a value outside
    it raises ``ValueError`` naming the field.
    """

    #: Seconds from the entry being sent until its fill must be known and the
    #: position confirmed (seed plan: 10 s). Past it, the attempt rolls back.
    #: Generous on purpose: a false rollback costs a round trip of fees and
    #: slippage, and a lagging REST view is never proof of absence.
    #: Range: 0.1 to 3600 s (as for the two windows below).
    verify_timeout: float = attrs.field(default=10.0, validator=_window)

    #: Seconds from entering ROLLING_BACK until the position must be proven
    #: flat (seed plan: 10 s). Past it, the attempt is ORPHANED and alerted.
    close_timeout: float = attrs.field(default=10.0, validator=_window)

    #: Seconds for the stop-loss to be accepted, including retries of
    #: transient errors. Short: this is the window with no protection.
    protect_timeout: float = attrs.field(default=5.0, validator=_window)

    #: Upper bound on any single exchange call. A write that exceeds it is
    #: ambiguous (it may have reached the exchange) and is looked up by
    #: client id before anything is sent again. Range: 0.05 to 3600 s.
    request_timeout: float = attrs.field(
        default=5.0, validator=seconds_in("Policy", MIN_REQUEST_TIMEOUT, MAX_WAIT))

    #: First poll interval after a fetch that did not settle the question.
    #: Short, because a market order is usually visible within tens of ms.
    #: Range: 0.001 to 60 s.
    backoff_initial: float = attrs.field(
        default=0.05, validator=seconds_in("Policy", 0.001, 60.0))

    #: Growth factor of the poll interval (0.05, 0.075, 0.11, ...).
    #: Range: 1 to 10 (a factor, not seconds).
    backoff_factor: float = attrs.field(
        default=1.5, validator=seconds_in("Policy", 1.0, 10.0))

    #: Cap on the poll interval, to keep within exchange rate limits while
    #: still noticing a late fill within about a second. Range: 0.001 to
    #: 600 s, and at least ``backoff_initial``.
    backoff_max: float = attrs.field(
        default=1.0, validator=seconds_in("Policy", 0.001, 600.0))

    #: Seconds by which the exchange's clock may be ahead of ours, added to
    #: the exchange's receive window before a request lost on the way is
    #: taken as proven never to execute (rule 10). Generous: ccxt signs with
    #: the local clock, and NTP-synced hosts stay well within 1 s.
    #: Range: above 0, up to 60 s.
    clock_skew_margin: float = attrs.field(
        default=1.0, validator=seconds_in("Policy", 0.0, 60.0, low_open=True))

    #: Seconds an async ``alerts`` callback may take before the engine gives
    #: up on it (logged; ``recover()`` delivers it again). The attempt's
    #: outcome never waits on a pager longer than this. Range: 0.1 to 3600 s.
    alert_timeout: float = attrs.field(default=10.0, validator=_window)

    #: How the stop-loss reaches the exchange. ``"attached"``: it travels
    #: with the entry and the exchange arms it at the fill (no unprotected
    #: window); the adapter must support it (:class:`~adapters.port.AttachedStopPort`),
    #: else ``open()`` refuses with nothing sent. ``"separate"``: a stop
    #: order placed once the fill is verified (the window is one round trip
    #: after the fill is known). ``"auto"`` (default): attached where the
    #: adapter says the venue arms attached stops, separate elsewhere. Either
    #: way the stop must be shown by the exchange before ``PROTECTED``; an
    #: attached stop that is missing, wrong or refused falls back to a
    #: separate stop, then to the rollback.
    protection: str = attrs.field(default="auto", validator=_protection)

    #: Seconds after the fill is verified for the exchange to show the stop
    #: it armed with the entry. Past it, the engine places a separate stop
    #: (within a fresh ``protect_timeout``). Range: 0.1 to 3600 s.
    attached_stop_timeout: float = attrs.field(default=1.0, validator=_window)

    #: Seconds an ``(account, symbol)`` lease lasts unless renewed (see
    #: :mod:`fsm.lease`; only with a journal that keeps leases). A holder
    #: that is paused or cut off longer than this is fenced out and another
    #: process may take the attempt over; so it bounds how long a dead
    #: process keeps a symbol. Range: 0.5 to 3600 s.
    lease_duration: float = attrs.field(
        default=30.0, validator=seconds_in("Policy", 0.5, MAX_WAIT))

    #: Seconds between renewals of a held lease. Range: 0.1 to 3600 s, and
    #: at most half of ``lease_duration``, so one late renewal does not lose it.
    lease_renew: float = attrs.field(default=10.0, validator=_window)

    #: Seconds ``open()`` or ``recover()`` waits for a lease held by someone
    #: else before raising :class:`fsm.lease.LeaseBusy` (nothing sent).
    #: Range: 0.1 to 3600 s; the default outlasts a dead holder's lease.
    lease_wait: float = attrs.field(default=60.0, validator=_window)

    def __attrs_post_init__(self) -> None:
        if self.backoff_max < self.backoff_initial:
            raise ValueError("Policy.backoff_max must be >= backoff_initial")
        if self.lease_renew > self.lease_duration / 2:
            raise ValueError("Policy.lease_renew must be at most half of lease_duration, got "
                             f"{self.lease_renew!r} for {self.lease_duration!r}")

    def backoff(self, attempt: int) -> float:
        """The wait before poll number ``attempt`` (0-based)."""
        try:
            grown = self.backoff_initial * self.backoff_factor**attempt
        except OverflowError:
            # A tight cap polls hundreds of times in one window; the power
            # then overflows a float long after the cap made it irrelevant.
            return self.backoff_max
        return min(grown, self.backoff_max)

    @property
    def max_duration(self) -> float:
        """An upper bound on the duration of one attempt (law L3): the window
        the reads before the entry share, the create, verification, protection
        and rollback windows, each of which may be overrun by at most one
        in-flight request, and the alert's delivery. Waiting for a busy lease
        (a shared journal, at most ``lease_wait``) comes before it and on top."""
        return (
            (self.verify_timeout + self.request_timeout)
            + self.request_timeout
            + (self.verify_timeout + self.request_timeout)
            + (self.attached_stop_timeout + self.request_timeout)
            + (self.protect_timeout + self.request_timeout)
            + (self.close_timeout + 2 * self.request_timeout)
            + self.alert_timeout
        )
