"""The engine's writes (:mod:`fsm.send`), judged by what the venue received.

Rule 8 says an intent is journalled before its order is sent; recovery
trusts that intent to describe the order it may find. So each intent must
describe exactly what went out (side, amount, reduce-only, trigger), and
every order of the attempt that reached the venue must have been announced.
The other rules here: a stop the attempt may have left is cancelled by its
own ids once the close is verified; a write that fails in a way no adapter
should raise is treated as ambiguous; a close refused before matching is
retried only until the close deadline. The simulator's ground truth
(``log``, ``cancel_requests``, ``resting_stops``, ``net_position``) is the
judge.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from adapters.port import Side
from adapters.simulated import Fault, SimConfig
from fsm import State, attached_stop_id, client_ids
from tests.helpers import PRICE, SYMBOL, Outcome, request, run_attempt

CALM = SimConfig(prices={SYMBOL: PRICE})

#: Worlds in which every write of the engine happens: a stop accepted, a
#: partial fill (the stop and close are for the fill, not the request), a
#: short entry, a refused stop rolled back, a close lost on the way and sent
#: again once proven absent, an attached stop refused and a separate one
#: placed, an attached stop armed with the entry and rolled back.
INTENT_WORLDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "stop accepted": ({}, {}),
    "partial fill": ({"fill_ratio": 0.5}, {}),
    "short": ({}, {"side": "sell", "stop_loss": 0.1420}),
    "stop refused, rolled back": ({"stop_rejected": True}, {}),
    "short, stop refused, rolled back": ({"stop_rejected": True},
                                         {"side": "sell", "stop_loss": 0.1420}),
    "close lost, sent again": ({"stop_rejected": True,
                                "faults": {"close": (Fault.TIMEOUT_BEFORE,)}}, {}),
    "attached stop refused, separate stop": ({"attached_stops": True,
                                              "attached_stop_refused": True}, {}),
    "attached stop, rolled back": ({"attached_stops": True, "misreport_side": True}, {}),
}


def _run(world: str) -> Outcome:
    knobs, req = INTENT_WORLDS[world]
    return run_attempt(attrs.evolve(CALM, **knobs), request(**req))


@pytest.mark.parametrize("world", sorted(INTENT_WORLDS))
def test_each_intent_describes_exactly_the_order_the_venue_received(world: str) -> None:
    o = _run(world)
    assert o.attempt.terminal
    intents = [r for r in o.journal.records
               if r.kind == "intent" and r.data["action"] in ("entry", "stop", "close")]
    assert intents
    for r in intents:
        d = r.data
        kind = "stop" if d["action"] == "stop" else "market"
        sent = [s for s in o.exchange.log
                if s.client_id == d["client_id"] and s.kind == kind and s.at >= r.at]
        assert sent, f"{d['action']} intent {d} never reached the venue"
        first = sent[0]
        assert (d.get("side"), d.get("amount"), d.get("reduce_only")) == (
            first.side.value, first.amount, first.reduce_only), (d, first)
        if d["action"] == "stop":
            assert d.get("trigger_price") == o.attempt.request.stop_loss, d
    # The other way round: every order of the attempt the venue received was
    # announced first, with the same words.
    announced: dict[str, dict[str, Any]] = {}
    for r in intents:
        announced[r.data["client_id"]] = {**r.data, "at": r.at}
        if "attached_stop_client_id" in r.data:
            closing = Side(r.data["side"]).closing_side.value
            announced[r.data["attached_stop_client_id"]] = {
                "side": closing, "reduce_only": True, "at": r.at}
    ours = set(client_ids(o.attempt.attempt_id)) | {attached_stop_id(o.attempt.attempt_id)}
    received = [s for s in o.exchange.log if s.client_id in ours]
    assert received
    for s in received:
        assert s.client_id in announced, f"{s} was sent without an intent"
        said = announced[s.client_id]
        assert said["at"] <= s.at and said["side"] == s.side.value, (said, s)
        assert said["reduce_only"] == s.reduce_only, (said, s)


def test_a_stop_intent_names_the_trigger_the_resting_stop_has() -> None:
    o = _run("partial fill")
    assert o.attempt.state is State.PROTECTED
    (stop,) = o.exchange.resting_stops(SYMBOL)
    (intent,) = [r.data for r in o.journal.records
                 if r.kind == "intent" and r.data["action"] == "stop"]
    assert (intent["client_id"], intent["trigger_price"], intent["amount"], intent["side"]) == (
        stop.client_id, stop.trigger_price, stop.amount, stop.side.value if stop.side else None)
    assert stop.amount == o.exchange.net_position(SYMBOL) == 21
