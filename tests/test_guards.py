"""Every guard, both ways. Guards are pure: facts in, bool out."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from adapters.port import (
    OrderSnapshot,
    OrderStatus,
    PositionSide,
    PositionSnapshot,
    Side,
    Source,
    StopSnapshot,
)
from fsm import guards as G
from fsm.evidence import CloseIntent, Facts, StopIntent
from tests.helpers import SYMBOL, request

REQ = request()  # buy 43


def order(**kw: Any) -> OrderSnapshot:
    base: dict[str, Any] = dict(symbol=SYMBOL, order_id="o1", client_id="c1")
    base.update(kw)
    return OrderSnapshot(**base)


FILLED = order(side=Side.BUY, amount=43.0, filled=43.0, status=OrderStatus.CLOSED, timestamp=5.0)


def pos(side: PositionSide | None, size: float, source: Source = Source.REST,
        as_of: float | None = None) -> PositionSnapshot:
    return PositionSnapshot(symbol=SYMBOL, side=side, size=size, source=source,
                            received_at=1.0, as_of=as_of)


def facts(**kw: Any) -> Facts:
    return Facts(request=REQ, now=kw.pop("now", 1.0), **kw)


STOP_INTENT = StopIntent(side=Side.SELL, amount=43.0, trigger_price=0.129, client_id="s")
STOP_OK = StopSnapshot(symbol=SYMBOL, order_id="s1", client_id="s", side=Side.SELL, amount=43.0,
                       trigger_price=0.129, reduce_only=True)
STOP_MINIMAL = StopSnapshot(symbol=SYMBOL, order_id="s1", client_id=None, side=None, amount=None,
                            trigger_price=None, reduce_only=None, status=None)
CLOSE = CloseIntent(side=Side.SELL, amount=43.0, client_id="c")

CASES: list[tuple[str, Facts, bool]] = [
    ("entry_may_exist", facts(ack=order()), True),
    ("entry_may_exist", facts(create_ambiguous=True), True),
    ("entry_may_exist", facts(ack=order(order_id=None, client_id=None)), False),
    ("entry_may_exist", facts(create_error="refused"), False),
    ("entry_refused", facts(create_error="refused"), True),
    ("entry_refused", facts(create_error="refused", create_ambiguous=True), False),
    ("entry_refused", facts(), False),
    ("order_terminal", facts(entry=FILLED), True),
    ("order_terminal", facts(entry=order(status=OrderStatus.OPEN)), False),
    ("order_terminal", facts(entry=order()), False),  # status unknown is not terminal
    ("order_filled", facts(entry=FILLED), True),
    ("order_filled", facts(entry=order(filled=0.0)), False),
    ("order_filled", facts(entry=order()), False),  # unreported fill is not a fill
    ("nothing_filled", facts(entry=order(filled=0.0, status=OrderStatus.CANCELED)), True),
    ("nothing_filled", facts(entry=order()), False),  # unreported fill is not zero
    ("nothing_filled", facts(entry=FILLED), False),
    ("side_matches_request", facts(entry=FILLED), True),
    ("side_matches_request", facts(entry=order(side=None)), False),  # None is not agreement
    ("side_matches_request", facts(entry=order(side=Side.SELL)), False),
    ("side_contradicted", facts(entry=order(side=Side.SELL)), True),
    ("side_contradicted", facts(ack=order(side=Side.SELL)), True),
    ("side_contradicted", facts(ack=order(side=None), entry=order(side=None)), False),
    ("side_contradicted", facts(entry=FILLED), False),
    ("fetch_deadline_passed", facts(fetch_deadline=1.0, now=1.0), True),
    ("fetch_deadline_passed", facts(fetch_deadline=1.5, now=1.0), False),
    ("fetch_deadline_passed", facts(), False),
    ("position_confirmed", facts(entry=FILLED), True),
    ("position_confirmed", facts(entry=FILLED, position=pos(PositionSide.LONG, 43.0,
                                                             Source.STREAM)), True),
    ("position_confirmed", facts(entry=FILLED, position=pos(PositionSide.SHORT, 43.0)), False),
    ("position_confirmed", facts(entry=order(side=Side.BUY, status=OrderStatus.OPEN)), False),
    ("position_contradicted", facts(position=pos(PositionSide.SHORT, 5.0)), True),
    ("position_contradicted", facts(position=pos(PositionSide.LONG, 5.0)), False),
    ("position_contradicted", facts(position=pos(None, 0.0)), False),
    ("verify_deadline_passed", facts(verify_deadline=0.5), True),
    ("verify_deadline_passed", facts(verify_deadline=5.0), False),
    ("stop_accepted", facts(stop=STOP_OK), True),
    ("stop_accepted", facts(stop=STOP_MINIMAL), True),
    ("stop_accepted", facts(stop=attrs.evolve(STOP_OK, status=OrderStatus.REJECTED)), False),
    ("stop_accepted", facts(stop=attrs.evolve(STOP_OK, order_id=None, client_id=None)), False),
    ("stop_reduce_only", facts(stop_intent=STOP_INTENT, stop=STOP_OK), True),
    ("stop_reduce_only", facts(stop_intent=STOP_INTENT, stop=STOP_MINIMAL), True),
    ("stop_reduce_only", facts(stop_intent=STOP_INTENT,
                               stop=attrs.evolve(STOP_OK, reduce_only=False)), False),
    ("stop_reduce_only", facts(stop_intent=attrs.evolve(STOP_INTENT, reduce_only=False),
                               stop=STOP_OK), False),
    ("stop_opposite_side", facts(stop_intent=STOP_INTENT, stop=STOP_OK), True),
    ("stop_opposite_side", facts(stop_intent=STOP_INTENT,
                                 stop=attrs.evolve(STOP_OK, side=Side.BUY)), False),
    ("stop_opposite_side", facts(stop_intent=attrs.evolve(STOP_INTENT, side=Side.BUY),
                                 stop=STOP_OK), False),
    ("stop_covers_size", facts(entry=FILLED, stop_intent=STOP_INTENT, stop=STOP_OK), True),
    ("stop_covers_size", facts(entry=attrs.evolve(FILLED, filled=20.0),
                               stop_intent=STOP_INTENT, stop=STOP_OK), False),
    ("stop_covers_size", facts(entry=FILLED, stop_intent=STOP_INTENT,
                               stop=attrs.evolve(STOP_OK, amount=42.0)), False),
    ("stop_covers_size", facts(entry=FILLED, stop_intent=STOP_INTENT, stop=STOP_MINIMAL), True),
    ("stop_refused", facts(stop_error="refused"), True),
    ("stop_refused", facts(protect_deadline=0.5), True),
    ("stop_refused", facts(protect_deadline=0.5, stop=STOP_OK), False),
    ("stop_refused", facts(protect_deadline=5.0), False),
    ("close_side_derivable", facts(entry=FILLED, close_basis=pos(PositionSide.LONG, 43.0)), True),
    # A position our own order does not account for is not ours to close.
    ("close_side_derivable", facts(close_basis=pos(PositionSide.LONG, 43.0)), False),
    ("close_side_derivable", facts(entry=FILLED, close_basis=pos(PositionSide.SHORT, 43.0)),
     False),
    ("close_side_derivable", facts(close_basis=pos(None, 0.0)), False),
    ("close_side_derivable", facts(), False),
    ("close_side_contradicted", facts(entry=FILLED, close_basis=pos(PositionSide.SHORT, 43.0)),
     True),
    ("close_side_contradicted", facts(close_basis=pos(PositionSide.SHORT, 43.0)), False),
    ("close_side_contradicted", facts(close_basis=pos(PositionSide.LONG, 43.0)), False),
    ("close_side_contradicted", facts(), False),
    ("position_flat", facts(close_intent=CLOSE, close_order=order(
        status=OrderStatus.CLOSED, filled=43.0)), True),
    ("position_flat", facts(close_intent=CLOSE, close_order=order(
        status=OrderStatus.CANCELED, filled=20.0)), False),
    # Rule 9: in a shared account, a flat view that may predate the fill
    # proves nothing about it, whatever the same source showed before.
    ("position_flat", facts(position=pos(None, 0.0)).with_position(
        pos(PositionSide.LONG, 43.0)).with_position(pos(None, 0.0)), False),
    # The other side, stamped after the fill: nothing of ours is open.
    ("position_flat", facts(entry=FILLED, position=pos(PositionSide.SHORT, 20.0, as_of=6.0)),
     True),
    ("position_flat", facts(entry=FILLED, position=pos(PositionSide.SHORT, 20.0, as_of=None)),
     False),
    ("position_flat", facts(entry=FILLED, position=pos(PositionSide.LONG, 20.0, as_of=6.0)),
     False),
    # A timestamped flat view after the fill, but our close may still arrive.
    ("position_flat", facts(entry=FILLED, position=pos(None, 0.0, as_of=6.0),
                            close_intent=CLOSE), False),
    ("position_flat", facts(entry=FILLED, position=pos(None, 0.0, as_of=6.0),
                            close_intent=CLOSE, close_error="refused"), True),
    ("position_flat", facts(entry=FILLED, position=pos(None, 0.0, as_of=6.0),
                            close_intent=CLOSE, close_missing=True), True),
    # An untimestamped view (ccxt's REST) is never newer than a fill.
    ("position_flat", facts(entry=FILLED, position=pos(None, 0.0, as_of=None)), False),
    # Same instant as the fill: may have been taken just before it.
    ("position_flat", facts(entry=FILLED, position=pos(None, 0.0, as_of=5.0)), False),
    # A lagging REST that never showed the fill says nothing about now.
    ("position_flat", facts(position=pos(None, 0.0)), False),
    ("position_flat", facts(entry=FILLED, position=pos(None, 0.0, as_of=6.0)), True),
    ("position_flat", facts(entry=FILLED, position=pos(None, 0.0, as_of=4.0)), False),
    ("position_flat", facts(entry=order(status=OrderStatus.CANCELED, filled=0.0),
                            position=pos(PositionSide.LONG, 5.0)), True),
    ("position_flat", facts(position=pos(PositionSide.LONG, 1.0)), False),
    ("entry_never_arrived", facts(create_ambiguous=True, entry_missing=True), True),
    ("entry_never_arrived", facts(create_ambiguous=True), False),
    ("entry_never_arrived", facts(create_ambiguous=True, entry_missing=True, ack=order()),
     False),
    ("entry_never_arrived", facts(create_ambiguous=True, entry_missing=True, entry=FILLED),
     False),
    ("entry_never_arrived", facts(entry_missing=True), False),
    ("exposure_attributable", facts(fills_checked=True), True),
    ("exposure_attributable", facts(), False),
    ("exposure_attributable", facts(fills_checked=True, foreign_fill="someone sold 5"), False),
    ("exposure_unattributable", facts(fills_checked=True, foreign_fill="someone sold 5"), True),
    ("exposure_unattributable", facts(fills_checked=True), False),
    ("no_close_in_flight", facts(), True),
    ("no_close_in_flight", facts(close_intent=CLOSE), False),
    ("no_close_in_flight", facts(close_intent=CLOSE, close_missing=True), True),
    ("no_close_in_flight", facts(close_intent=CLOSE, close_error="refused"), False),
    ("no_close_in_flight", facts(close_intent=CLOSE, close_order=order(
        status=OrderStatus.CLOSED, filled=43.0)), False),
    ("close_deadline_passed", facts(close_deadline=1.0), True),
    ("close_deadline_passed", facts(close_deadline=2.0), False),
    # -- the requested price, and stops attached to the entry --------------------------
    ("stop_at_requested_price", facts(stop_intent=STOP_INTENT, stop=STOP_OK), True),
    ("stop_at_requested_price", facts(stop_intent=STOP_INTENT, stop=STOP_MINIMAL), True),
    ("stop_at_requested_price", facts(stop_intent=STOP_INTENT,
                                      stop=attrs.evolve(STOP_OK, trigger_price=0.128)), False),
    ("stop_at_requested_price", facts(stop_intent=attrs.evolve(STOP_INTENT, trigger_price=0.1),
                                      stop=STOP_OK), False),
    # A separate stop's reply is its own evidence; an attached one must be shown in full.
    ("stop_shown_in_full", facts(entry=FILLED, stop_intent=STOP_INTENT, stop=STOP_MINIMAL),
     True),
    ("stop_shown_in_full", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                 stop=STOP_OK), True),
    ("stop_shown_in_full", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                 stop=attrs.evolve(STOP_OK, reduce_only=None)), False),
    ("stop_shown_in_full", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                 stop=attrs.evolve(STOP_OK, amount=42.0)), False),
    ("stop_shown_in_full", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                 stop=None), False),
    ("attached_stop_failed", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                   stop=attrs.evolve(STOP_OK, status=OrderStatus.REJECTED)),
     True),
    ("attached_stop_failed", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                   stop=attrs.evolve(STOP_OK, amount=86.0)), True),
    ("attached_stop_failed", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                   attached_deadline=1.0), True),
    ("attached_stop_failed", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                   attached_deadline=2.0), False),
    ("attached_stop_failed", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                   stop=STOP_OK), False),
    # Unknown reduce-only: not failed yet, not trusted either, until the deadline.
    ("attached_stop_failed", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                   stop=attrs.evolve(STOP_OK, reduce_only=None),
                                   attached_deadline=2.0), False),
    ("attached_stop_failed", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                   stop=attrs.evolve(STOP_OK, reduce_only=None),
                                   attached_deadline=1.0), True),
    ("attached_stop_failed", facts(entry=FILLED, stop_attached=True, attached_failed="gone",
                                   attached_deadline=1.0), False),
    # Shown without a status (the venue's word unknown): never trusted, and once
    # the deadline passes it is a failure like any other stop not shown in full.
    ("attached_stop_failed", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                   stop=attrs.evolve(STOP_OK, status=None),
                                   attached_deadline=2.0), False),
    ("attached_stop_failed", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                   stop=attrs.evolve(STOP_OK, status=None),
                                   attached_deadline=1.0), True),
    # Each way a live attached stop can be wrong fails at once, before the deadline.
    ("attached_stop_failed", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                   stop=attrs.evolve(STOP_OK, reduce_only=False),
                                   attached_deadline=2.0), True),
    ("attached_stop_failed", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                   stop=attrs.evolve(STOP_OK, side=Side.BUY),
                                   attached_deadline=2.0), True),
    ("attached_stop_failed", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                   stop=attrs.evolve(STOP_OK, trigger_price=0.1),
                                   attached_deadline=2.0), True),
    # A field the venue did not report is not evidence of a wrong stop: wait.
    ("attached_stop_failed", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                   stop=attrs.evolve(STOP_OK, side=None),
                                   attached_deadline=2.0), False),
    ("attached_stop_failed", facts(entry=FILLED, stop_attached=True, stop_intent=STOP_INTENT,
                                   stop=attrs.evolve(STOP_OK, trigger_price=None),
                                   attached_deadline=2.0), False),
    # Prices agree to the venue's precision, not to the last bit, and no further.
    ("stop_at_requested_price", facts(
        stop_intent=STOP_INTENT, stop=attrs.evolve(STOP_OK, trigger_price=0.129 * (1 + 1e-12))),
     True),
    ("stop_at_requested_price", facts(
        stop_intent=STOP_INTENT, stop=attrs.evolve(STOP_OK, trigger_price=0.129 * (1 + 1e-7))),
     False),
    # While the attached stop is relied on, its failure falls back first.
    ("stop_refused", facts(stop_attached=True, stop_error="refused"), False),
]


@pytest.mark.parametrize(("name", "f", "expected"), CASES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)])
def test_guard(name: str, f: Facts, expected: bool) -> None:
    assert G.GUARDS[name](f) is expected


def test_every_guard_is_tested_both_ways() -> None:
    outcomes: dict[str, set[bool]] = {}
    for name, _, expected in CASES:
        outcomes.setdefault(name, set()).add(expected)
    assert set(outcomes) == set(G.GUARDS)
    assert all(v == {True, False} for v in outcomes.values()), outcomes


def test_guards_are_pure() -> None:
    f = facts(entry=FILLED, stop_intent=STOP_INTENT, stop=STOP_OK)
    before = attrs.asdict(f, recurse=False)
    for g in G.GUARDS.values():
        assert g(f) == g(f)
    assert attrs.asdict(f, recurse=False) == before


def test_with_position_keeps_the_latest_view() -> None:
    f = facts().with_position(pos(PositionSide.LONG, 43.0, Source.REST))
    f = f.with_position(pos(PositionSide.SHORT, 43.0, Source.STREAM))
    assert f.position is not None and f.position.source is Source.STREAM
