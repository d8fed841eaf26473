"""The guards: pure, named predicates over :class:`~fsm.evidence.Facts`.

No I/O, no clock reads, no mutation: a guard sees only the record it is
given, so the same facts always give the same answer (laws L7 and L9). Each
guard's name appears in :data:`fsm.table.TABLE` and on the diagrams.

The side rule (rule 1) runs through all of them: a field the exchange did not
report (``None``) never counts as agreement *or* as contradiction; a field it
did report must agree with what we asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from fsm.evidence import Facts
from fsm.model import OrderStatus, qty_eq

__all__ = ["GUARDS", "Guard", "evaluate"]

Guard = Callable[[Facts], bool]


def _passed(deadline: float | None, now: float) -> bool:
    return deadline is not None and now >= deadline


# -- entry --------------------------------------------------------------------


def entry_may_exist(f: Facts) -> bool:
    """The create was acknowledged with an id, or its outcome is unknown."""
    acked = f.ack is not None and (f.ack.order_id is not None or f.ack.client_id is not None)
    return acked or f.create_ambiguous


def entry_never_arrived(f: Facts) -> bool:
    """The create's outcome was unknown, nothing ever showed the order, and a
    look-up by client id sent after the exchange's receive window (plus clock
    skew and visibility lag) answered "no such order": the request can never
    execute, so there is no exposure (rule 10)."""
    acked = f.ack is not None and (f.ack.order_id is not None or f.ack.client_id is not None)
    return f.create_ambiguous and not acked and f.entry is None and f.entry_missing


def entry_refused(f: Facts) -> bool:
    """The exchange definitively refused the create; nothing is ambiguous."""
    return f.create_error is not None and not f.create_ambiguous and f.ack is None


# -- fetch ----------------------------------------------------------------------


def order_terminal(f: Facts) -> bool:
    return f.entry is not None and f.entry.terminal


def order_filled(f: Facts) -> bool:
    return f.entry is not None and f.entry.filled is not None and f.entry.filled > 0


def nothing_filled(f: Facts) -> bool:
    """Reported filled of exactly zero; an unreported fill is not zero."""
    return f.entry is not None and f.entry.filled == 0


def side_matches_request(f: Facts) -> bool:
    """The fetched order's side is present and equals the requested side."""
    return f.entry is not None and f.entry.side is f.request.side


def side_contradicted(f: Facts) -> bool:
    """The ack or the fetched order reports a side, and it is not ours."""
    for order in (f.ack, f.entry):
        if order is not None and order.side is not None and order.side is not f.request.side:
            return True
    return False


def fetch_deadline_passed(f: Facts) -> bool:
    return _passed(f.fetch_deadline, f.now)


# -- verification -----------------------------------------------------------------


def position_contradicted(f: Facts) -> bool:
    """A position source shows exposure on the side opposite to our request."""
    p = f.position
    return p is not None and p.size > 0 and p.side is not f.request.side.opens


def position_confirmed(f: Facts) -> bool:
    """Exposure on our side is confirmed: the entry is terminal with a fill
    on our side (rule 3's order fill status, the first evidence the attempt
    holds once fetched) and no position source shows the opposite side.
    Absence in a lagging view proves nothing, so it is not consulted.

    (A stream position at least our fill used to confirm too; every attempt
    reaching FETCHED already holds the order's fill, so that branch could
    never decide anything and was removed.)"""
    return (not position_contradicted(f) and order_terminal(f) and order_filled(f)
            and side_matches_request(f))


def verify_deadline_passed(f: Facts) -> bool:
    return _passed(f.verify_deadline, f.now)


# -- protection -----------------------------------------------------------------


def stop_accepted(f: Facts) -> bool:
    s = f.stop
    return (
        s is not None
        and (s.order_id is not None or s.client_id is not None)
        and s.status in (None, OrderStatus.OPEN)
    )


def stop_reduce_only(f: Facts) -> bool:
    i, s = f.stop_intent, f.stop
    return i is not None and i.reduce_only and s is not None and s.reduce_only in (None, True)


def stop_opposite_side(f: Facts) -> bool:
    i, s = f.stop_intent, f.stop
    want = f.request.side.closing_side
    return i is not None and i.side is want and s is not None and s.side in (None, want)


def stop_covers_size(f: Facts) -> bool:
    """The stop is for exactly the verified size: the entry's fill, partial
    fills included; an amount the exchange echoes must agree too."""
    i, s = f.stop_intent, f.stop
    if i is None or s is None or not order_filled(f) or f.entry is None:
        return False
    size = f.entry.filled
    assert size is not None
    return qty_eq(i.amount, size) and (s.amount is None or qty_eq(s.amount, size))


def stop_at_requested_price(f: Facts) -> bool:
    """The stop triggers at the requested stop-loss price; a price the
    exchange echoes must agree too."""
    i, s = f.stop_intent, f.stop
    return (i is not None and s is not None and _price_eq(i.trigger_price, f.request.stop_loss)
            and (s.trigger_price is None or _price_eq(s.trigger_price, i.trigger_price)))


def stop_shown_in_full(f: Facts) -> bool:
    """A stop that travelled with the entry is a claim until the exchange
    shows it: then every field must be the exchange's own, and right (live,
    reduce-only, opposite side, requested price, exactly the fill); an
    unreported field is not evidence. A separate stop's acceptance reply is
    its own evidence (the other guards check it)."""
    if not f.relying_on_attached:
        return True
    s = f.stop
    return (s is not None and s.status is OrderStatus.OPEN and s.reduce_only is True
            and s.side is not None and s.amount is not None and s.trigger_price is not None
            and stop_accepted(f) and stop_opposite_side(f) and stop_covers_size(f)
            and stop_at_requested_price(f))


def attached_stop_failed(f: Facts) -> bool:
    """The stop attached to the entry cannot be trusted: the exchange shows
    it refused or gone, or shows a stop that is not the one asked for, or
    shows none by the deadline. The attempt then places a separate stop."""
    if not f.relying_on_attached:
        return False
    s = f.stop
    if s is None:
        return _passed(f.attached_deadline, f.now)
    if s.status is not None and s.status is not OrderStatus.OPEN:
        return True
    if not stop_shown_in_full(f):
        # Shown live (or with no status) but wrong, or with fields missing
        # that never arrive: an unknown status is not evidence either.
        wrong = (s.reduce_only is False
                 or (s.side is not None and s.side is not f.request.side.closing_side)
                 or (s.amount is not None and not stop_covers_size(f))
                 or (s.trigger_price is not None and not stop_at_requested_price(f)))
        return wrong or _passed(f.attached_deadline, f.now)
    return False


def stop_refused(f: Facts) -> bool:
    if f.relying_on_attached:
        return False  # the attached stop's failure falls back first
    return f.stop_error is not None or (
        not stop_accepted(f) and _passed(f.protect_deadline, f.now)
    )


def _price_eq(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


# -- rollback ---------------------------------------------------------------------


def close_side_derivable(f: Facts) -> bool:
    """The exchange reports a position, its side is the one our request
    opens, and the exchange has shown our entry filled: then, and only then,
    the close side (the position's opposite) is known and the exposure is
    ours to close. A position our own order does not account for may be
    another attempt's, another bot's or a hand-opened one; closing it would
    be a wrong order."""
    b = f.close_basis
    return (
        b is not None and b.size > 0 and b.side is f.request.side.opens and order_filled(f)
    )


def exposure_attributable(f: Facts) -> bool:
    """The symbol's executions since our fill were read, and every one is
    the attempt's own: the exposure to close is still the attempt's (rule 9)."""
    return f.fills_checked and f.foreign_fill is None


def exposure_unattributable(f: Facts) -> bool:
    """Something other than the attempt's own orders traded the symbol since
    its fill (the operator, another process): the attempt can no longer tell
    its exposure from anyone else's, so it must send nothing (rule 9)."""
    return f.foreign_fill is not None


def no_close_in_flight(f: Facts) -> bool:
    """No close of ours may still execute: none sent, or the one sent is
    proven never to have arrived. A close is never re-sent on the strength of
    client-id uniqueness (rule 10)."""
    return f.close_intent is None or (f.close_order is None and f.close_missing)


def close_side_contradicted(f: Facts) -> bool:
    """Our entry filled, yet the exchange's position is on the other side
    from our request."""
    b = f.close_basis
    return (
        b is not None
        and b.size > 0
        and b.side is not f.request.side.opens
        and order_filled(f)
    )


def position_flat(f: Facts) -> bool:
    """The attempt's own exposure is proven gone, by any of:

    * the entry, found at last, ended with nothing filled: this attempt holds
      nothing, whatever the account holds;
    * our reduce-only close is terminal and filled for its whole amount, and
      that amount covers all the exposure this attempt added;
    * a view whose exchange time is strictly after the entry's fill showing
      nothing open on our side (flat, or the other side), with no close of
      ours still able to execute: on a netted account nothing of ours can
      be open then, whoever closed it. A view without a timestamp (ccxt's
      REST positions) is never newer than a fill, and such a view says
      nothing while our close may still arrive and reduce what someone opens
      next.

    In a shared account "a source that had shown our exposure now shows none"
    proves nothing: the exposure it showed may have been anyone's.
    """
    if order_terminal(f) and nothing_filled(f):
        return True
    c, ci = f.close_order, f.close_intent
    if (
        c is not None
        and ci is not None
        and c.terminal
        and c.filled is not None
        and (c.filled > ci.amount or qty_eq(c.filled, ci.amount))
        and (c.filled > f.exposure or qty_eq(c.filled, f.exposure))
    ):
        return True
    p = f.position
    if p is None or (p.size > 0 and p.side is f.request.side.opens) or f.close_in_flight:
        return False
    fill_time = f.entry.timestamp if f.entry is not None else None
    # Strictly after: a view stamped the same instant as the fill may have been
    # taken just before it (a move of the same instant sequenced earlier).
    return p.as_of is not None and fill_time is not None and p.as_of > fill_time


def close_deadline_passed(f: Facts) -> bool:
    return _passed(f.close_deadline, f.now)


#: Every guard by the name the table uses.
GUARDS: Mapping[str, Guard] = {
    g.__name__: g
    for g in (
        entry_may_exist,
        entry_refused,
        entry_never_arrived,
        order_terminal,
        order_filled,
        nothing_filled,
        side_matches_request,
        side_contradicted,
        fetch_deadline_passed,
        position_confirmed,
        position_contradicted,
        verify_deadline_passed,
        stop_accepted,
        stop_reduce_only,
        stop_opposite_side,
        stop_covers_size,
        stop_at_requested_price,
        stop_shown_in_full,
        attached_stop_failed,
        stop_refused,
        close_side_derivable,
        close_side_contradicted,
        exposure_attributable,
        exposure_unattributable,
        no_close_in_flight,
        position_flat,
        close_deadline_passed,
    )
}


def evaluate(names: tuple[str, ...], facts: Facts) -> dict[str, bool]:
    """Evaluate the named guards over ``facts``, in order."""
    return {name: GUARDS[name](facts) for name in names}
