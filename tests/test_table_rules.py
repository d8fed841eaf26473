"""The transition table, row by row, as the rules of ``DESIGN.md`` state it.

Every expected row below is written by hand from the rules (its reference
is on the row), not read from :data:`fsm.table.TABLE`. For each row: facts
where all its guards hold fire it (the step names the row's guards), and for
each of its guards, facts where exactly that one fails (the others holding)
are refused. Where two rows of one trigger can both hold, the step must name
the reason the rules put first. A wrong table (a guard dropped, two rows
swapped, a row added) turns this file red without the diagram drift test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import pytest

from adapters.port import OrderStatus, PositionSide, Side
from fsm import Attempt, GuardsFailed, InvalidTransition, State, Trigger
from fsm.attempt import Recorder
from fsm.evidence import Facts
from fsm.guards import GUARDS
from fsm.table import TABLE
from tests.test_guards import CLOSE, FILLED, STOP_INTENT, STOP_OK, facts, order, pos

S, T = State, Trigger

NOTHING = order(side=Side.BUY, amount=43.0, filled=0.0, status=OrderStatus.CANCELED)
FOREIGN = "the operator sold 5 since the fill"


@attrs.frozen
class Rule:
    """One expected row: what may happen, from where, on which evidence."""

    trigger: Trigger
    sources: frozenset[State]
    dest: State
    guards: tuple[str, ...]
    rule: str  # the DESIGN.md rule it states
    holds: Mapping[str, Any]  # facts under which every guard holds
    breaks: Mapping[str, Mapping[str, Any]]  # guard -> facts where only it fails


def rule(trigger: Trigger, sources: State | tuple[State, ...], dest: State,
         guards: tuple[str, ...], why: str, holds: Mapping[str, Any],
         breaks: Mapping[str, Mapping[str, Any]]) -> Rule:
    srcs = frozenset(sources if isinstance(sources, tuple) else (sources,))
    assert set(breaks) == set(guards), f"{trigger}: break each guard once"
    return Rule(trigger, srcs, dest, guards, why, holds, breaks)


STOPPED = dict(entry=FILLED, stop_intent=STOP_INTENT)

RULES: tuple[Rule, ...] = (
    rule(T.SUBMIT, S.NEW, S.PLACED, ("entry_may_exist",),
         "rule 7: acknowledged, or its outcome unknown: an order may exist, look it up",
         dict(ack=order()),
         {"entry_may_exist": dict(ack=order(order_id=None, client_id=None))}),
    rule(T.REJECT, S.NEW, S.REJECTED, ("entry_refused",),
         "rule 3 / lifecycle: refused at submit, definitively, is no exposure",
         dict(create_error="refused"),
         {"entry_refused": dict(create_error="refused", create_ambiguous=True)}),
    rule(T.FETCHED, S.PLACED, S.FETCHED,
         ("order_terminal", "order_filled", "side_matches_request"),
         "rules 1-2: fetched after create, terminal with a fill, on the side we asked",
         dict(entry=FILLED),
         {"order_terminal": dict(entry=attrs.evolve(FILLED, status=OrderStatus.OPEN)),
          "order_filled": dict(entry=attrs.evolve(FILLED, filled=None)),
          "side_matches_request": dict(entry=attrs.evolve(FILLED, side=None))}),
    rule(T.NOT_FILLED, S.PLACED, S.REJECTED, ("order_terminal", "nothing_filled"),
         "rule 3: an order closed with zero filled is proof of no exposure",
         dict(entry=NOTHING),
         {"order_terminal": dict(entry=attrs.evolve(NOTHING, status=OrderStatus.OPEN)),
          "nothing_filled": dict(entry=attrs.evolve(NOTHING, filled=None))}),
    rule(T.NOT_FILLED, (S.PLACED, S.ROLLING_BACK), S.REJECTED, ("entry_never_arrived",),
         "rule 10: past the receive window, not found by client id: it can never execute",
         dict(create_ambiguous=True, entry_missing=True),
         {"entry_never_arrived": dict(create_ambiguous=True)}),
    rule(T.FETCH_FAILED, S.PLACED, S.ROLLING_BACK, ("side_contradicted",),
         "rule 1: a side reported and not ours is an anomaly, never traded on",
         dict(entry=order(side=Side.SELL)),
         {"side_contradicted": dict(entry=order(side=None))}),
    rule(T.FETCH_FAILED, S.PLACED, S.ROLLING_BACK, ("fetch_deadline_passed",),
         "rule 2: no terminal order by the deadline: exposure unknown, roll back",
         dict(fetch_deadline=0.5),
         {"fetch_deadline_passed": dict(fetch_deadline=5.0)}),
    rule(T.VERIFIED, S.FETCHED, S.VERIFIED, ("position_confirmed",),
         "rule 3: first evidence wins, absence in a lagging REST view proves nothing",
         dict(entry=FILLED, position=pos(None, 0.0)),
         {"position_confirmed": dict(entry=FILLED, position=pos(PositionSide.SHORT, 1.0))}),
    rule(T.VERIFY_FAILED, S.FETCHED, S.ROLLING_BACK, ("position_contradicted",),
         "rule 3: a source showing the opposite side is an anomaly",
         dict(entry=FILLED, position=pos(PositionSide.SHORT, 43.0)),
         {"position_contradicted": dict(entry=FILLED, position=pos(PositionSide.LONG, 43.0))}),
    rule(T.VERIFY_FAILED, S.FETCHED, S.ROLLING_BACK, ("verify_deadline_passed",),
         "rule 3 / FIX 2.1: not confirmed within the bounded verification",
         dict(entry=FILLED, verify_deadline=0.5),
         {"verify_deadline_passed": dict(entry=FILLED, verify_deadline=5.0)}),
    rule(T.PROTECTED, S.VERIFIED, S.PROTECTED,
         ("stop_accepted", "stop_reduce_only", "stop_opposite_side", "stop_covers_size",
          "stop_at_requested_price", "stop_shown_in_full"),
         "rule 4: reduce-only, opposite side, at the requested price, exactly the verified "
         "size, accepted (a stop attached to the entry: shown by the exchange in full)",
         dict(STOPPED, stop=STOP_OK),
         {"stop_accepted": dict(STOPPED, stop=attrs.evolve(STOP_OK,
                                                           status=OrderStatus.CANCELED)),
          "stop_reduce_only": dict(STOPPED, stop=attrs.evolve(STOP_OK, reduce_only=False)),
          "stop_opposite_side": dict(STOPPED, stop=attrs.evolve(STOP_OK, side=Side.BUY)),
          "stop_covers_size": dict(STOPPED, stop=attrs.evolve(STOP_OK, amount=42.0)),
          "stop_at_requested_price": dict(STOPPED, stop=attrs.evolve(STOP_OK,
                                                                     trigger_price=0.128)),
          # attached to the entry, and the exchange has not shown it live yet
          "stop_shown_in_full": dict(STOPPED, stop_attached=True,
                                     stop=attrs.evolve(STOP_OK, status=None))}),
    rule(T.FALL_BACK, S.VERIFIED, S.VERIFIED, ("attached_stop_failed",),
         "rule 4: a stop attached to the entry and not shown by its deadline cannot be "
         "trusted: place a separate one",
         dict(entry=FILLED, stop_attached=True, attached_deadline=0.5),
         {"attached_stop_failed": dict(entry=FILLED, stop_attached=True,
                                       attached_deadline=5.0)}),
    rule(T.PROTECT_FAILED, S.VERIFIED, S.ROLLING_BACK, ("stop_refused",),
         "rule 4: no accepted stop (refused, or none by the deadline): roll back",
         dict(STOPPED, stop_error="refused"),
         {"stop_refused": dict(STOPPED, protect_deadline=5.0)}),
    rule(T.PROTECT_FAILED, S.VERIFIED, S.ROLLING_BACK, ("exposure_unattributable",),
         "rule 9: someone else traded since the fill: the exposure may not be ours",
         dict(STOPPED, foreign_fill=FOREIGN),
         {"exposure_unattributable": dict(STOPPED, fills_checked=True)}),
    rule(T.CLOSE_SENDING, S.ROLLING_BACK, S.ROLLING_BACK,
         ("close_side_derivable", "exposure_attributable", "no_close_in_flight"),
         "rules 5, 9, 10: close side from the exchange's position agreeing with ours, only "
         "our own orders traded since the fill, no earlier close may still execute",
         dict(entry=FILLED, close_basis=pos(PositionSide.LONG, 43.0), fills_checked=True),
         {"close_side_derivable": dict(entry=FILLED, close_basis=pos(None, 0.0),
                                       fills_checked=True),
          "exposure_attributable": dict(entry=FILLED, close_basis=pos(PositionSide.LONG, 43.0)),
          "no_close_in_flight": dict(entry=FILLED, close_basis=pos(PositionSide.LONG, 43.0),
                                     fills_checked=True, close_intent=CLOSE)}),
    rule(T.CLOSE_VERIFIED, S.ROLLING_BACK, S.CLOSE_VERIFIED, ("position_flat",),
         "rule 6: a rollback ends only once flat is proven",
         dict(entry=FILLED, close_intent=CLOSE,
              close_order=order(status=OrderStatus.CLOSED, filled=43.0)),
         {"position_flat": dict(entry=FILLED, close_intent=CLOSE,
                                close_order=order(status=OrderStatus.CANCELED, filled=20.0))}),
    rule(T.CLOSE_UNVERIFIED, S.ROLLING_BACK, S.ORPHANED, ("close_side_contradicted",),
         "rule 5: the exchange's side disagrees with ours: send nothing, alert",
         dict(entry=FILLED, close_basis=pos(PositionSide.SHORT, 43.0)),
         {"close_side_contradicted": dict(entry=FILLED,
                                          close_basis=pos(PositionSide.LONG, 43.0))}),
    rule(T.CLOSE_UNVERIFIED, S.ROLLING_BACK, S.ORPHANED, ("exposure_unattributable",),
         "rule 9: our exposure cannot be told from someone else's: send nothing, alert",
         dict(entry=FILLED, foreign_fill=FOREIGN),
         {"exposure_unattributable": dict(entry=FILLED, fills_checked=True)}),
    rule(T.CLOSE_UNVERIFIED, S.ROLLING_BACK, S.ORPHANED, ("close_deadline_passed",),
         "rule 6: flat not proven by the deadline: alert, the monitor takes over",
         dict(entry=FILLED, close_deadline=0.5),
         {"close_deadline_passed": dict(entry=FILLED, close_deadline=5.0)}),
)

#: Where two reasons hold at once, the one the rules name first. Each: the
#: trigger, its source, the facts, the guards the step must name, and why.
PRIORITIES: tuple[tuple[Trigger, State, Mapping[str, Any], tuple[str, ...], str], ...] = (
    (T.FETCH_FAILED, S.PLACED, dict(entry=order(side=Side.SELL), fetch_deadline=0.5),
     ("side_contradicted",),
     "rule 1: an anomaly is named as one, not hidden behind a timeout"),
    (T.VERIFY_FAILED, S.FETCHED,
     dict(entry=FILLED, position=pos(PositionSide.SHORT, 43.0), verify_deadline=0.5),
     ("position_contradicted",),
     "rule 3: an opposite position is an anomaly first, a late confirmation second"),
    (T.PROTECT_FAILED, S.VERIFIED, dict(STOPPED, stop_error="refused", foreign_fill=FOREIGN),
     ("exposure_unattributable",),
     "rule 9: once someone else traded since the fill, nothing may be placed or sent for "
     "this exposure, whatever the stop's fate: that is the reason to name"),
    (T.CLOSE_UNVERIFIED, S.ROLLING_BACK,
     dict(entry=FILLED, close_basis=pos(PositionSide.SHORT, 43.0), foreign_fill=FOREIGN,
          close_deadline=0.5),
     ("exposure_unattributable",),
     "rule 9: a foreign trade is why nothing may be sent, whatever else is seen"),
    (T.CLOSE_UNVERIFIED, S.ROLLING_BACK,
     dict(entry=FILLED, close_basis=pos(PositionSide.SHORT, 43.0), close_deadline=0.5),
     ("close_deadline_passed",),
     "rule 6: once the deadline has passed the rollback ends on it; a contradicted side "
     "is the reason only while time remains"),
    # NOT_FILLED's two rows cannot both hold: one needs the entry seen, the
    # other never seen.
)


def fire(source: State, trigger: Trigger, kw: Mapping[str, Any]) -> tuple[State, tuple[str, ...]]:
    f: Facts = facts(**kw)
    a = Attempt("a1", f.request, "c1", 0.0)
    rec = Recorder()
    rec.track(a, source)
    step = rec.fire(a, trigger, f, evidence=None, detail="test")
    return step.dest, tuple(name for name, _ in step.guards)


CASES = [(r, s) for r in RULES for s in sorted(r.sources, key=lambda x: x.value)]


@pytest.mark.parametrize(("r", "source"), CASES,
                         ids=[f"{r.trigger.value}-{s.value}-{'+'.join(r.guards)}"
                              for r, s in CASES])
def test_a_row_fires_when_all_its_guards_hold(r: Rule, source: State) -> None:
    dest, named = fire(source, r.trigger, r.holds)
    assert (dest, named) == (r.dest, r.guards), r.rule


BREAKS = [(r, s, g) for r, s in CASES for g in r.guards]


@pytest.mark.parametrize(("r", "source", "guard"), BREAKS,
                         ids=[f"{r.trigger.value}-{s.value}-without-{g}" for r, s, g in BREAKS])
def test_a_row_is_refused_when_exactly_one_guard_fails(r: Rule, source: State,
                                                       guard: str) -> None:
    kw = r.breaks[guard]
    f = facts(**kw)
    # The facts are honest: the named guard fails and every other one holds.
    assert GUARDS[guard](f) is False
    assert all(GUARDS[g](f) for g in r.guards if g != guard), r.rule
    with pytest.raises(GuardsFailed):
        fire(source, r.trigger, kw)


@pytest.mark.parametrize(("trigger", "source", "kw", "named", "why"), PRIORITIES,
                         ids=[f"{t.value}-{'+'.join(n)}" for t, _, _, n, _ in PRIORITIES])
def test_when_two_reasons_hold_the_rules_pick_the_first(
        trigger: Trigger, source: State, kw: Mapping[str, Any], named: tuple[str, ...],
        why: str) -> None:
    _, got = fire(source, trigger, kw)
    assert got == named, why


def test_no_trigger_moves_a_state_the_rules_do_not_name() -> None:
    allowed = {(s, r.trigger) for r in RULES for s in r.sources}
    for state in State:
        for trigger in Trigger:
            if (state, trigger) in allowed:
                continue
            with pytest.raises(InvalidTransition):
                fire(state, trigger, RULES[0].holds)


def test_every_row_of_the_table_is_one_the_rules_state() -> None:
    """A row added to the table (or changed) needs its rule here too."""
    expected = {(r.trigger, r.sources, r.dest, r.guards) for r in RULES}
    actual = {(row.trigger, row.sources, row.dest, row.guards) for row in TABLE}
    assert actual == expected
