"""Every guard at its boundaries: the smallest sizes, equal timestamps, one
id of two, missing evidence. Each case states the rule it defends (DESIGN
rules 1-10); none is read from the guards' code."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from adapters.port import OrderStatus, PositionSide, Side, Source
from fsm import guards as G
from tests.test_guards import (
    CLOSE,
    FILLED,
    STOP_INTENT,
    STOP_MINIMAL,
    STOP_OK,
    facts,
    order,
    pos,
)

PARTIAL = attrs.evolve(FILLED, filled=20.0, status=OrderStatus.CANCELED)
HALF = attrs.evolve(FILLED, amount=0.5, filled=0.5)  # half a contract: below one lot of most
OPEN_ENTRY = order(side=Side.BUY, amount=43.0, filled=0.0, status=OrderStatus.OPEN)
NOTHING = order(side=Side.BUY, amount=43.0, filled=0.0, status=OrderStatus.CANCELED,
                timestamp=5.0)
AFTER, SAME, BEFORE = 6.0, 5.0, 4.0  # view times against FILLED's fill at 5.0

Case = tuple[str, str, dict[str, Any], bool]

CASES: list[Case] = [
    # -- rule 7: an acknowledgement carrying either id means the order may exist
    ("ack with the exchange id only", "entry_may_exist",
     dict(ack=order(client_id=None)), True),
    ("ack with our client id only", "entry_may_exist",
     dict(ack=order(order_id=None)), True),
    ("ack with no id, outcome unknown", "entry_may_exist",
     dict(ack=order(order_id=None, client_id=None), create_ambiguous=True), True),
    # -- rule 10: lost only when nothing ever showed the order, by either id
    ("an ack with the client id only shows the order arrived", "entry_never_arrived",
     dict(create_ambiguous=True, entry_missing=True, ack=order(order_id=None)), False),
    ("an ack with the exchange id only shows the order arrived", "entry_never_arrived",
     dict(create_ambiguous=True, entry_missing=True, ack=order(client_id=None)), False),
    ("an ack without ids proves nothing arrived", "entry_never_arrived",
     dict(create_ambiguous=True, entry_missing=True, ack=order(order_id=None, client_id=None)),
     True),
    # -- a refusal is definitive only when nothing acknowledged the order
    ("refused yet acknowledged is not a refusal", "entry_refused",
     dict(create_error="refused", ack=order()), False),
    # -- rule 3: any fill, however small, is exposure; unreported is not zero
    ("half a contract filled is a fill", "order_filled", dict(entry=HALF), True),
    ("one contract filled is a fill", "order_filled",
     dict(entry=attrs.evolve(FILLED, filled=1.0)), True),
    ("nothing known about the entry", "order_filled", dict(), False),
    ("nothing known is not terminal", "order_terminal", dict(), False),
    ("nothing known is not zero filled", "nothing_filled", dict(), False),
    ("half a contract filled is not nothing", "nothing_filled", dict(entry=HALF), False),
    ("no entry has no side", "side_matches_request", dict(), False),
    # -- rule 1: a side reported anywhere must be ours
    ("ack silent, fetched order on the other side", "side_contradicted",
     dict(ack=order(side=None), entry=order(side=Side.SELL)), True),
    ("ack on our side, fetched order on the other", "side_contradicted",
     dict(ack=order(side=Side.BUY), entry=order(side=Side.SELL)), True),
    ("ack on our side, fetched order silent", "side_contradicted",
     dict(ack=order(side=Side.BUY), entry=order(side=None)), False),
    # -- rule 3: an opposite position of any size is an anomaly
    ("opposite position of one contract", "position_contradicted",
     dict(position=pos(PositionSide.SHORT, 1.0)), True),
    ("opposite position of half a contract", "position_contradicted",
     dict(position=pos(PositionSide.SHORT, 0.5)), True),
    ("flat view, no side", "position_contradicted", dict(position=pos(None, 0.0)), False),
    ("no view at all", "position_contradicted", dict(), False),
    # -- rule 3: confirmed by our terminal fill on our side, never against a source
    ("terminal fill on our side", "position_confirmed", dict(entry=FILLED), True),
    ("partial fill on our side, lagging REST flat", "position_confirmed",
     dict(entry=PARTIAL, position=pos(None, 0.0)), True),
    ("fill, yet one contract on the other side", "position_confirmed",
     dict(entry=FILLED, position=pos(PositionSide.SHORT, 1.0)), False),
    ("a terminal entry with nothing filled", "position_confirmed",
     dict(entry=NOTHING), False),
    ("a stream showing our side does not confirm an open entry", "position_confirmed",
     dict(entry=OPEN_ENTRY, position=pos(PositionSide.LONG, 43.0, Source.STREAM, 5.0)), False),
    ("a fill whose side was not reported", "position_confirmed",
     dict(entry=attrs.evolve(FILLED, side=None)), False),
    ("nothing known", "position_confirmed", dict(), False),
    # -- deadlines: the deadline instant itself has passed
    ("verify deadline exactly now", "verify_deadline_passed",
     dict(verify_deadline=1.0, now=1.0), True),
    ("no verify deadline", "verify_deadline_passed", dict(), False),
    ("close deadline exactly now", "close_deadline_passed",
     dict(close_deadline=1.0, now=1.0), True),
    ("no close deadline", "close_deadline_passed", dict(), False),
    ("protect deadline exactly now, no stop", "stop_refused",
     dict(protect_deadline=1.0, now=1.0), True),
    ("no protect deadline, no stop", "stop_refused", dict(), False),
    # -- rule 4: accepted means acknowledged by either id and resting
    ("stop acknowledged by exchange id only", "stop_accepted",
     dict(stop=attrs.evolve(STOP_OK, client_id=None)), True),
    ("stop acknowledged by client id only", "stop_accepted",
     dict(stop=attrs.evolve(STOP_OK, order_id=None)), True),
    ("stop open", "stop_accepted", dict(stop=attrs.evolve(STOP_OK, status=OrderStatus.OPEN)),
     True),
    ("stop already triggered is not resting protection", "stop_accepted",
     dict(stop=attrs.evolve(STOP_OK, status=OrderStatus.CLOSED)), False),
    ("stop cancelled", "stop_accepted",
     dict(stop=attrs.evolve(STOP_OK, status=OrderStatus.CANCELED)), False),
    ("no stop", "stop_accepted", dict(), False),
    # -- rule 4: reduce-only, as asked and as the exchange reports it
    ("no stop placed", "stop_reduce_only", dict(stop_intent=STOP_INTENT), False),
    ("no intent on record", "stop_reduce_only", dict(stop=STOP_OK), False),
    # -- rule 4: opposite side, as asked and as reported
    ("exchange silent on the side", "stop_opposite_side",
     dict(stop_intent=STOP_INTENT, stop=STOP_MINIMAL), True),
    ("no stop placed", "stop_opposite_side", dict(stop_intent=STOP_INTENT), False),
    ("no intent on record", "stop_opposite_side", dict(stop=STOP_OK), False),
    ("asked on our own side, reported opposite", "stop_opposite_side",
     dict(stop_intent=attrs.evolve(STOP_INTENT, side=Side.BUY), stop=STOP_MINIMAL), False),
    # -- rule 4: exactly the verified fill, partial fills included
    ("partial fill, stop for the partial fill", "stop_covers_size",
     dict(entry=PARTIAL, stop_intent=attrs.evolve(STOP_INTENT, amount=20.0),
          stop=attrs.evolve(STOP_OK, amount=20.0)), True),
    ("partial fill, stop for the requested amount", "stop_covers_size",
     dict(entry=PARTIAL, stop_intent=STOP_INTENT, stop=STOP_OK), False),
    ("stop asked for one contract less", "stop_covers_size",
     dict(entry=FILLED, stop_intent=attrs.evolve(STOP_INTENT, amount=42.0), stop=STOP_MINIMAL),
     False),
    ("exchange echoes one contract more", "stop_covers_size",
     dict(entry=FILLED, stop_intent=STOP_INTENT, stop=attrs.evolve(STOP_OK, amount=44.0)),
     False),
    ("a missing stop", "stop_covers_size", dict(entry=FILLED, stop_intent=STOP_INTENT), False),
    ("a missing intent", "stop_covers_size", dict(entry=FILLED, stop=STOP_OK), False),
    ("a missing fill", "stop_covers_size", dict(stop_intent=STOP_INTENT, stop=STOP_OK), False),
    ("an unreported fill", "stop_covers_size",
     dict(entry=attrs.evolve(FILLED, filled=None), stop_intent=STOP_INTENT, stop=STOP_OK), False),
    ("a terminal entry with nothing filled", "stop_covers_size",
     dict(entry=NOTHING, stop_intent=attrs.evolve(STOP_INTENT, amount=0.0),
          stop=attrs.evolve(STOP_OK, amount=0.0)), False),
    # -- rule 5: the close side only from a position of ours, of any size
    ("our side, one contract", "close_side_derivable",
     dict(entry=FILLED, close_basis=pos(PositionSide.LONG, 1.0)), True),
    ("our side, half a contract", "close_side_derivable",
     dict(entry=FILLED, close_basis=pos(PositionSide.LONG, 0.5)), True),
    ("a flat basis with side None", "close_side_derivable",
     dict(entry=FILLED, close_basis=pos(None, 0.0)), False),
    ("our side, entry fill not known", "close_side_derivable",
     dict(entry=order(side=Side.BUY), close_basis=pos(PositionSide.LONG, 43.0)), False),
    ("opposite, one contract", "close_side_contradicted",
     dict(entry=FILLED, close_basis=pos(PositionSide.SHORT, 1.0)), True),
    ("opposite, half a contract", "close_side_contradicted",
     dict(entry=FILLED, close_basis=pos(PositionSide.SHORT, 0.5)), True),
    ("a flat basis with side None", "close_side_contradicted",
     dict(entry=FILLED, close_basis=pos(None, 0.0)), False),
    ("opposite, yet our entry filled nothing known", "close_side_contradicted",
     dict(entry=order(side=Side.BUY), close_basis=pos(PositionSide.SHORT, 43.0)), False),
    # -- rule 9: attributable only once read, and only if nothing foreign
    ("foreign fill known though not re-read", "exposure_unattributable",
     dict(foreign_fill="operator sold 1"), True),
    ("nothing foreign", "exposure_unattributable", dict(), False),
    # -- rule 10: a close found, even proven missing before, is in flight
    ("close found after being thought missing", "no_close_in_flight",
     dict(close_intent=CLOSE, close_missing=True,
          close_order=order(status=OrderStatus.OPEN, filled=0.0)), False),
    # -- rule 6: flat needs proof
    ("entry terminal with nothing filled", "position_flat", dict(entry=NOTHING), True),
    ("entry open with nothing filled yet", "position_flat",
     dict(entry=OPEN_ENTRY, position=pos(None, 0.0, as_of=AFTER)), False),
    ("close filled exactly the partial exposure", "position_flat",
     dict(entry=PARTIAL, close_intent=attrs.evolve(CLOSE, amount=20.0),
          close_order=order(status=OrderStatus.CLOSED, filled=20.0)), True),
    ("close filled its amount, less than the attempt's exposure", "position_flat",
     dict(entry=FILLED, close_intent=attrs.evolve(CLOSE, amount=20.0),
          close_order=order(status=OrderStatus.CLOSED, filled=20.0)), False),
    ("close filled for the position only, less than asked", "position_flat",
     dict(entry=PARTIAL, close_intent=CLOSE,
          close_order=order(status=OrderStatus.CANCELED, filled=20.0)), False),
    ("close reported filled beyond its amount", "position_flat",
     dict(entry=FILLED, close_intent=CLOSE,
          close_order=order(status=OrderStatus.CLOSED, filled=44.0)), True),
    ("close still open, though filled", "position_flat",
     dict(entry=FILLED, close_intent=CLOSE,
          close_order=order(status=OrderStatus.OPEN, filled=43.0)), False),
    ("close terminal, fill unreported", "position_flat",
     dict(entry=FILLED, close_intent=CLOSE, close_order=order(status=OrderStatus.CLOSED)),
     False),
    ("a close order without our intent on record", "position_flat",
     dict(entry=FILLED, close_order=order(status=OrderStatus.CLOSED, filled=43.0)), False),
    ("a flat view stamped the fill's instant", "position_flat",
     dict(entry=FILLED, position=pos(None, 0.0, as_of=SAME)), False),
    ("the other side, stamped the fill's instant", "position_flat",
     dict(entry=FILLED, position=pos(PositionSide.SHORT, 1.0, as_of=SAME)), False),
    ("a flat view a moment after the fill", "position_flat",
     dict(entry=FILLED, position=pos(None, 0.0, as_of=SAME + 1e-6)), True),
    ("a flat view before the fill", "position_flat",
     dict(entry=FILLED, position=pos(None, 0.0, as_of=BEFORE)), False),
    ("our side, half a contract, after the fill", "position_flat",
     dict(entry=FILLED, position=pos(PositionSide.LONG, 0.5, as_of=AFTER)), False),
    ("our side, one contract, after the fill", "position_flat",
     dict(entry=FILLED, position=pos(PositionSide.LONG, 1.0, as_of=AFTER)), False),
    ("a stamped flat view, fill time unknown", "position_flat",
     dict(entry=attrs.evolve(FILLED, timestamp=None), position=pos(None, 0.0, as_of=AFTER)),
     False),
    ("a stamped flat view, entry never seen", "position_flat",
     dict(position=pos(None, 0.0, as_of=AFTER)), False),
    ("no view, nothing else", "position_flat", dict(entry=FILLED), False),
]


@pytest.mark.parametrize(("why", "name", "kw", "expected"), CASES,
                         ids=[f"{n}: {w}" for w, n, _, _ in CASES])
def test_guard_boundary(why: str, name: str, kw: dict[str, Any], expected: bool) -> None:
    assert G.GUARDS[name](facts(**kw)) is expected, why


def test_a_guard_raises_on_no_facts_it_is_given() -> None:
    """Guards are total over the evidence record: no combination of missing
    fields raises (a raising guard would escape the driver with no alert)."""
    empty = facts()
    for name, g in G.GUARDS.items():
        assert g(empty) in (True, False), name
