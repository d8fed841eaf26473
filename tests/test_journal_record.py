"""The typed transition record, and the in-memory journal's encoding.

* a transition encodes to plain JSON and decodes back to the same
  :class:`~fsm.attempt.Transition`, for every step of real attempts;
* :class:`~fsm.journal.MemoryJournal` keeps the same JSON text as the SQLite
  journal, so it redacts what the durable one redacts and refuses what it
  cannot store;
* the monitor's judgement (:func:`fsm.reconcile.assess`) runs without I/O.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.port import Side, Source
from adapters.simulated import SimConfig
from fsm import MemoryJournal, State, Trigger
from fsm.attempt import Transition
from fsm.journal import Journal, decode_step, encode_step, summarize
from fsm.reconcile import AlertKind, Observed, ReconcilePolicy, assess
from tests.helpers import PRICE, SYMBOL, request, run_attempt


@pytest.mark.parametrize("config", [
    SimConfig(prices={SYMBOL: PRICE}),
    SimConfig(prices={SYMBOL: PRICE}, stop_rejected=True),
], ids=["protected", "rolled-back"])
def test_every_step_of_an_attempt_decodes_back_exactly(config: SimConfig) -> None:
    run = run_attempt(config)
    a = run.attempt
    records = [r for r in run.journal.read(a.attempt_id) if r.kind == "transition"]
    assert [r.step.step for r in records if r.step] == list(a.history)
    for r in records:
        # The stored text is plain JSON, and what it decodes to encodes back
        # to the same text.
        assert json.loads(json.dumps(r.data)) == dict(r.data)
        decoded = decode_step(r.at, r.data)
        assert decoded.step is not None and decoded.dest is decoded.step.dest


def test_a_transition_round_trips_through_encode_and_decode() -> None:
    from fsm.evidence import Facts

    step = Transition(at=12.5, trigger=Trigger.CLOSE_SENDING, source=State.ROLLING_BACK,
                      dest=State.ROLLING_BACK,
                      guards=(("close_side_derivable", True), ("exposure_attributable", True)),
                      evidence=Source.REST, detail="sending reduce-only sell 43")
    data = encode_step(step, Facts(request=request(), now=12.5))
    back = decode_step(12.5, json.loads(json.dumps(data)))
    assert back.step == step and back.detail == step.detail and back.dest is State.ROLLING_BACK
    assert (back.entry_order_id, back.filled, back.stop_order_id) == (None, None, None)


def test_memory_journal_keeps_the_same_text_as_sqlite(tmp_path: Path) -> None:
    mem = MemoryJournal()
    with Journal(tmp_path / "j.sqlite3") as disk:
        for j in (mem, disk):
            j.begin("a1", request(), "spa1e", 1.0)
            j.note("a1", "recover", 2.0, {"why": "GET /x?timestamp=1&signature=" + "ab" * 32})
        assert [r.data for r in mem.read()] == [r.data for r in disk.read()]
        assert disk.store.read()[1].data == mem.store.read()[1].data
    assert "signature=<redacted>" in mem.read()[1].data["why"]
    assert mem.records[0].data["request"] == request()
    with pytest.raises(TypeError):  # what SQLite cannot keep, memory does not pretend to
        mem.note("a1", "recover", 3.0, {"obj": object()})


def _journal_orphaned(j: MemoryJournal, aid: str) -> None:
    j.begin(aid, request(), "sp" + aid + "e", 0.0)
    j.transition(aid, 0.1, {"dest": "ROLLING_BACK", "filled": 43.0, "detail": "x"})
    j.transition(aid, 0.2, {"dest": "ORPHANED", "detail": "could not prove flat"})
    j.end(aid, State.ORPHANED, 0.3)


def test_assess_is_pure_judgement_over_one_observation() -> None:
    j = MemoryJournal(wall_clock=lambda: 0.0)
    aid = "a" * 24
    _journal_orphaned(j, aid)
    attempts = summarize(j.read())
    pol = ReconcilePolicy(settle_time=1.0)
    from adapters.port import PositionSnapshot

    long43 = PositionSnapshot(symbol=SYMBOL, side=Side.BUY.opens, size=43.0,
                              source=Source.REST, received_at=0.0)
    open_now = assess(Observed(10.0, [long43], [], attempts), pol)
    assert [f.attempts for f in open_now.findings] == [(aid,)]
    assert [a.kind for a in open_now.alerts] == [AlertKind.ORPHAN_POSITION]
    assert open_now.act_on == open_now.findings and open_now.still_orphaned == (aid,)
    # Alerted already: the same finding does not alert again.
    again = assess(Observed(20.0, [long43], [], attempts), pol, open_now.alerted)
    assert again.alerts == () and again.alerted == open_now.alerted
    # A failed query judges nothing: not flat, and the alert is not forgotten.
    blind = assess(Observed(30.0, None, None, attempts), pol, open_now.alerted)
    assert blind.resolved == () and blind.still_orphaned == (aid,)
    assert blind.alerted == open_now.alerted
    # Flat, and settled: resolved.
    flat = assess(Observed(40.0, [], [], attempts), pol, open_now.alerted)
    assert flat.resolved == (aid,) and flat.alerted == frozenset()
    # Flat but inside the settle time: not yet.
    early = assess(Observed(0.5, [], [], attempts), pol)
    assert early.resolved == () and early.still_orphaned == (aid,)
