"""Deadlines and back-off: every number the engine waits by, documented."""

from __future__ import annotations

import math

import attrs

__all__ = ["Policy"]


def _pos(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"Policy.{attr.name} must be a finite number > 0, got {value!r}")


@attrs.frozen
class Policy:
    """How long the engine waits, and how it polls.

    No value here is a fixed sleep: every wait ends early on the first real
    evidence; these are only the bounds.
    """

    #: Seconds from the entry being sent until its fill must be known and the
    #: position confirmed (seed plan: 10 s). Past it, the attempt rolls back.
    #: Generous on purpose: a false rollback costs a round trip of fees and
    #: slippage, and a lagging REST view is never proof of absence.
    verify_timeout: float = attrs.field(default=10.0, validator=_pos)

    #: Seconds from entering ROLLING_BACK until the position must be proven
    #: flat (seed plan: 10 s). Past it, the attempt is ORPHANED and alerted.
    close_timeout: float = attrs.field(default=10.0, validator=_pos)

    #: Seconds for the stop-loss to be accepted, including retries of
    #: transient errors. Short: this is the window with no protection.
    protect_timeout: float = attrs.field(default=5.0, validator=_pos)

    #: Upper bound on any single exchange call. A write that exceeds it is
    #: ambiguous (it may have reached the exchange) and is looked up by
    #: client id before anything is sent again.
    request_timeout: float = attrs.field(default=5.0, validator=_pos)

    #: First poll interval after a fetch that did not settle the question.
    #: Short, because a market order is usually visible within tens of ms.
    backoff_initial: float = attrs.field(default=0.05, validator=_pos)

    #: Growth factor of the poll interval (0.05, 0.075, 0.11, ...).
    backoff_factor: float = attrs.field(default=1.5, validator=_pos)

    #: Cap on the poll interval, to keep within exchange rate limits while
    #: still noticing a late fill within about a second.
    backoff_max: float = attrs.field(default=1.0, validator=_pos)

    def __attrs_post_init__(self) -> None:
        if self.backoff_factor < 1:
            raise ValueError("Policy.backoff_factor must be >= 1")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("Policy.backoff_max must be >= backoff_initial")

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
        """An upper bound on the duration of one attempt (law L3): the create,
        verification, protection and rollback windows, each of which may be
        overrun by at most one in-flight request."""
        return (
            self.request_timeout
            + (self.verify_timeout + self.request_timeout)
            + (self.protect_timeout + self.request_timeout)
            + (self.close_timeout + 2 * self.request_timeout)
        )
