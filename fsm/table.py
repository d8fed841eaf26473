"""The lifecycle of one attempt to open a position: states, triggers, table.

Rule 1 of this module (after h11): everything that decides which transition
may happen lives here, as data. The runtime machine, the rendered diagrams and
the Hypothesis specs are all built from :data:`TABLE`, so they cannot drift.
The guards named in the table are pure predicates defined in
:mod:`fsm.guards`; this module only names them.

Reading a row: ``Row(trigger, sources, dest, guards)`` means "from any state
in ``sources``, the trigger may move the attempt to ``dest`` only if every
guard holds over the evidence collected so far". Two rows may share a trigger
and a source (``fetch_failed`` has two independent reasons); the first row
whose guards all hold wins, in table order.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

__all__ = [
    "TABLE",
    "TERMINAL",
    "GuardsFailed",
    "InvalidTransition",
    "Row",
    "State",
    "TransitionError",
    "Trigger",
    "rows_for",
]


class State(enum.Enum):
    """Where an attempt is. The names are part of the public API."""

    NEW = "NEW"  # nothing sent yet
    PLACED = "PLACED"  # entry sent; acknowledged, or its fate is ambiguous
    FETCHED = "FETCHED"  # the entry is known terminal with a fill, on our side
    VERIFIED = "VERIFIED"  # the position is confirmed: side and size
    PROTECTED = "PROTECTED"  # a reduce-only stop covers the position
    ROLLING_BACK = "ROLLING_BACK"  # undoing exposure with reduce-only closes
    CLOSE_VERIFIED = "CLOSE_VERIFIED"  # rolled back and proven flat
    ORPHANED = "ORPHANED"  # exposure may exist and we cannot prove it safe
    REJECTED = "REJECTED"  # definitively no exposure

    # Members are unique objects compared by identity: hash them as such, in
    # C, instead of Enum's hash of the name in Python (states key every
    # look-up of a decision, many per attempt).
    __hash__ = object.__hash__

    @property
    def terminal(self) -> bool:
        """Whether the state is terminal (no row leaves it)."""
        return self in TERMINAL


TERMINAL: frozenset[State] = frozenset(
    {State.PROTECTED, State.CLOSE_VERIFIED, State.ORPHANED, State.REJECTED}
)

#: What each terminal state means for the money (used by docs and diagrams).
TERMINAL_MEANING: Mapping[State, str] = {
    State.PROTECTED: "position open, a reduce-only stop covers exactly its size",
    State.CLOSE_VERIFIED: "position was rolled back and is proven flat",
    State.ORPHANED: "exposure may exist unprotected: one alert sent, monitor takes over",
    State.REJECTED: "nothing filled: no exposure was ever taken",
}


class Trigger(enum.Enum):
    """What moves an attempt; each names one or more rows of the table."""

    __hash__ = object.__hash__  # as State's
    SUBMIT = "submit"
    REJECT = "reject"
    FETCHED = "fetched"
    NOT_FILLED = "not_filled"
    FETCH_FAILED = "fetch_failed"
    VERIFIED = "verified"
    VERIFY_FAILED = "verify_failed"
    PROTECTED = "protected"
    FALL_BACK = "fall_back"
    PROTECT_FAILED = "protect_failed"
    CLOSE_SENDING = "close_sending"
    CLOSE_VERIFIED = "close_verified"
    CLOSE_UNVERIFIED = "close_unverified"


@attrs.frozen(cache_hash=True)  # rows key the step function's look-ups
class Row:
    """One row of the table: trigger, source states, destination, guards, why."""
    trigger: Trigger
    sources: frozenset[State]
    dest: State
    guards: tuple[str, ...]
    why: str  # one line, for the diagrams' legend and for reviewers


def _row(
    trigger: Trigger, sources: State | Iterable[State], dest: State, guards: Iterable[str], why: str
) -> Row:
    srcs = frozenset([sources]) if isinstance(sources, State) else frozenset(sources)
    return Row(trigger, srcs, dest, tuple(guards), why)


S, T = State, Trigger

#: The transition table. Written once; everything else is built from it.
TABLE: tuple[Row, ...] = (
    # -- entry ----------------------------------------------------------------
    _row(T.SUBMIT, S.NEW, S.PLACED, ["entry_may_exist"],
         "the create was acknowledged, or its outcome is unknown (rule 7): "
         "either way an order may exist and must be looked up"),
    _row(T.REJECT, S.NEW, S.REJECTED, ["entry_refused"],
         "the exchange definitively refused the create: nothing was placed"),
    # -- fetch after create (rule 2) -------------------------------------------
    _row(T.FETCH_FAILED, S.PLACED, S.ROLLING_BACK, ["side_contradicted"],
         "the exchange reports a side other than ours: an anomaly, never traded on"),
    _row(T.FETCHED, S.PLACED, S.FETCHED,
         ["order_terminal", "order_filled", "side_matches_request"],
         "the entry is terminal with a fill, and the exchange's side is ours (rule 1)"),
    _row(T.NOT_FILLED, S.PLACED, S.REJECTED, ["order_terminal", "nothing_filled"],
         "closed with zero filled is proof of no exposure (rule 3)"),
    _row(T.NOT_FILLED, [S.PLACED, S.ROLLING_BACK], S.REJECTED, ["entry_never_arrived"],
         "the create was lost on the way: past the receive window, the look-up by client "
         "id says no such order, so it can never execute (rule 10)"),
    _row(T.FETCH_FAILED, S.PLACED, S.ROLLING_BACK, ["fetch_deadline_passed"],
         "no terminal order by the deadline: exposure unknown, so roll back"),
    # -- verification (rule 3) --------------------------------------------------
    _row(T.VERIFIED, S.FETCHED, S.VERIFIED, ["position_confirmed"],
         "first evidence wins: stream position or the order's fill, never absence in REST"),
    _row(T.VERIFY_FAILED, S.FETCHED, S.ROLLING_BACK, ["position_contradicted"],
         "a position source shows the opposite side: an anomaly"),
    _row(T.VERIFY_FAILED, S.FETCHED, S.ROLLING_BACK, ["verify_deadline_passed"],
         "no confirmation by the deadline"),
    # -- protection (rule 4) ----------------------------------------------------
    _row(T.PROTECT_FAILED, S.VERIFIED, S.ROLLING_BACK, ["exposure_unattributable"],
         "recovered after a crash: someone else traded the symbol since the fill, so the "
         "exposure may not be the attempt's; place nothing (rule 9)"),
    _row(T.PROTECTED, S.VERIFIED, S.PROTECTED,
         ["stop_accepted", "stop_reduce_only", "stop_opposite_side", "stop_covers_size",
          "stop_at_requested_price", "stop_shown_in_full"],
         "a reduce-only stop on the opposite side, at the requested price, for exactly the "
         "verified size, was accepted (a stop attached to the entry: shown by the exchange)"),
    # A self-loop, like close_sending: a separate stop may be placed for an
    # entry sent with its stop attached only once this row has fired, so two
    # stops of the attempt never rest at once by the driver's mistake.
    _row(T.FALL_BACK, S.VERIFIED, S.VERIFIED, ["attached_stop_failed"],
         "the stop attached to the entry is missing, wrong or refused at the fill: "
         "place a separate stop instead"),
    _row(T.PROTECT_FAILED, S.VERIFIED, S.ROLLING_BACK, ["stop_refused"],
         "the stop was refused, or not accepted by the deadline"),
    # -- rollback (rules 5 and 6) -------------------------------------------------
    _row(T.CLOSE_VERIFIED, S.ROLLING_BACK, S.CLOSE_VERIFIED, ["position_flat"],
         "the position is proven flat (close fill, or a source that had seen it)"),
    _row(T.CLOSE_UNVERIFIED, S.ROLLING_BACK, S.ORPHANED, ["exposure_unattributable"],
         "someone else traded the symbol since our fill: our exposure cannot be told from "
         "theirs, so send nothing and alert (rule 9)"),
    _row(T.CLOSE_UNVERIFIED, S.ROLLING_BACK, S.ORPHANED, ["close_deadline_passed"],
         "flat could not be proven by the deadline: alert, the monitor takes over"),
    _row(T.CLOSE_UNVERIFIED, S.ROLLING_BACK, S.ORPHANED, ["close_side_contradicted"],
         "the exchange's position disagrees with the request: send nothing, alert"),
    # A self-loop: the close order may be sent only once this row has fired,
    # so the rule "close side from the exchange's position, cross-checked with
    # the request" is enforced by the machine, not by the driver's goodwill.
    _row(T.CLOSE_SENDING, S.ROLLING_BACK, S.ROLLING_BACK,
         ["close_side_derivable", "exposure_attributable", "no_close_in_flight"],
         "the exchange's position agrees with the requested side, only our own orders traded "
         "the symbol since our fill, and no earlier close may still execute"),
)

del S, T


def rows_for(state: State, trigger: Trigger) -> tuple[Row, ...]:
    """The rows that ``trigger`` may take from ``state``, in table order."""
    return _INDEX.get((state, trigger), ())


_INDEX: dict[tuple[State, Trigger], tuple[Row, ...]] = {}
for _r in TABLE:
    for _s in sorted(_r.sources, key=lambda s: s.value):
        _INDEX[(_s, _r.trigger)] = (*_INDEX.get((_s, _r.trigger), ()), _r)
del _r, _s


# --------------------------------------------------------------------------
# Errors: named, and they say the state and the trigger.
# --------------------------------------------------------------------------


class TransitionError(Exception):
    """Base of the machine's refusals."""

    def __init__(self, state: State, trigger: Trigger, message: str) -> None:
        super().__init__(message)
        self.state = state
        self.trigger = trigger


class InvalidTransition(TransitionError):
    """The trigger is not defined from this state in :data:`TABLE`."""

    def __init__(self, state: State, trigger: Trigger) -> None:
        allowed = sorted({t.value for (s, t) in _INDEX if s is state})
        super().__init__(
            state,
            trigger,
            f"trigger {trigger.value!r} is not allowed in state {state.value}"
            f" (allowed: {', '.join(allowed) or 'none, the state is terminal'})",
        )


class GuardsFailed(TransitionError):
    """The trigger exists from this state, but no row's guards all held."""

    def __init__(
        self, state: State, trigger: Trigger, results: Mapping[str, bool], detail: Any = None
    ) -> None:
        failed = [name for name, ok in results.items() if not ok]
        super().__init__(
            state,
            trigger,
            f"trigger {trigger.value!r} refused in state {state.value}: "
            f"guard(s) {', '.join(failed)} did not hold",
        )
        self.results = dict(results)
        self.detail = detail
