"""Recovery from the journal: the cases the crash specs reach only by chance,
pinned one by one; those that recover from a durable journal run on each
store (``journal_at``: SQLite, and PostgreSQL where a server can start)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from adapters.port import Side
from adapters.simulated import AckStyle, SimConfig, SimulatedExchange
from adapters.virtual_time import run_virtual
from fsm import Alert, MemoryJournal, OpenRequest, PositionOpener, State, client_ids
from fsm.journal import JournalLog, summarize
from fsm.lease import LeaseStore
from tests.helpers import PRICE, SYMBOL, request
from tests.pg import open_journal

AID = "0123456789abcdef01234567"
ENTRY, STOP, CLOSE = client_ids(AID)
BTC = "BTC/USDT:USDT"


def _sim(**knobs: Any) -> SimulatedExchange:
    return SimulatedExchange(SimConfig(prices={SYMBOL: PRICE, BTC: 67_000.0}, **knobs))


def _recover(ex: SimulatedExchange, journal: JournalLog,
             alerts: list[Alert] | None = None) -> list[Any]:
    async def go() -> list[Any]:
        sink = alerts.append if alerts is not None else None
        return await PositionOpener(ex, journal=journal, alerts=sink).recover()

    return run_virtual(go())


def test_recovery_needs_a_journal_it_can_read() -> None:
    async def go() -> None:
        await PositionOpener(_sim()).recover()

    with pytest.raises(TypeError, match="read back"):
        run_virtual(go())


def test_nothing_unfinished_nothing_done(journal_at: str) -> None:
    with open_journal(journal_at) as j:
        assert _recover(_sim(), j) == []


def test_begin_without_an_entry_intent_is_rejected_and_nothing_is_sent(journal_at: str) -> None:
    ex = _sim()
    with open_journal(journal_at) as j:
        j.begin(AID, request(), ENTRY, 0.0)
        (a,) = _recover(ex, j)
        recs = j.read()
    assert a.state is State.REJECTED
    assert ex.log == [] and ex.total_calls == 0
    assert [r.kind for r in recs] == ["begin", "recover", "transition", "end"]
    step = recs[2].data
    assert step["trigger"] == "reject" and step["evidence"] == "journal"


def test_an_entry_intent_is_looked_up_never_resent_and_then_protected() -> None:
    """Works from a MemoryJournal too: the entry was sent (it is on the
    exchange) but nothing else was journalled."""
    ex = _sim()
    j = MemoryJournal()
    req = request()

    async def go() -> list[Any]:
        j.begin(AID, req, ENTRY, 0.0)
        j.intent(AID, "entry", ENTRY, 0.0, {"side": "buy", "amount": 43.0})
        await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=43, client_id=ENTRY,
                              reduce_only=False)
        return await PositionOpener(ex, journal=j).recover()

    (a,) = run_virtual(go())
    assert a.state is State.PROTECTED
    assert [(o.kind, o.client_id) for o in ex.log] == [("market", ENTRY), ("stop", STOP)]
    assert [s.trigger.value for s in a.history] == ["submit", "fetched", "verified", "protected"]
    assert a.history[0].evidence is not None and a.history[0].evidence.value == "journal"


def test_a_terminal_transition_without_its_end_is_finished(journal_at: str) -> None:
    """Died while cancelling the leftover stop after a verified close: the
    stop is cancelled and the end written; nothing is resumed."""
    ex = _sim(initial_positions={SYMBOL: 43.0})

    async def place_stop() -> None:
        await ex.place_stop(symbol=SYMBOL, side=Side.SELL, amount=43, trigger_price=0.129,
                            client_id=STOP)

    run_virtual(place_stop())
    with open_journal(journal_at) as j:
        j.begin(AID, request(), ENTRY, 0.0)
        j.intent(AID, "entry", ENTRY, 0.0, {})
        j.intent(AID, "stop", STOP, 1.0, {"side": "sell", "amount": 43.0,
                                          "trigger_price": 0.129})
        j.transition(AID, 2.0, {"dest": "ROLLING_BACK"})
        j.transition(AID, 3.0, {"dest": "CLOSE_VERIFIED"})
        assert _recover(ex, j) == []
        (s,) = summarize(j.read())
        assert _recover(ex, j) == []  # idempotent: finished now
    assert s.ended is State.CLOSE_VERIFIED
    assert ex.resting_stops() == []


def test_an_orphaned_attempt_without_its_end_alerts_once(journal_at: str) -> None:
    alerts: list[Alert] = []
    with open_journal(journal_at) as j:
        j.begin(AID, request(), ENTRY, 0.0)
        j.intent(AID, "entry", ENTRY, 0.0, {})
        j.transition(AID, 9.0, {"dest": "ORPHANED", "detail": "could not prove flat"})
        _recover(_sim(), j, alerts)
        _recover(_sim(), j, alerts)
        (s,) = summarize(j.read())
    assert s.ended is State.ORPHANED
    assert len(alerts) == 1 and alerts[0].attempt_id == AID
    assert "could not prove flat" in alerts[0].message


def test_several_attempts_on_several_symbols_are_all_recovered(journal_at: str) -> None:
    """Two attempts die while their entries are not visible yet; recovery
    finds both by client id and protects both, one entry each."""
    ex = _sim(ack=AckStyle.MINIMAL, order_visibility_lag=1.0)
    counter = itertools.count(1)
    reqs = [request(), OpenRequest(symbol=BTC, side="sell", amount=0.5, stop_loss=70_000,
                                   reference_price=67_000.0)]
    path = journal_at

    async def go() -> list[Any]:
        j = open_journal(path)
        opener = PositionOpener(ex, journal=j, ids=lambda: f"{next(counter):024x}")
        tasks = [asyncio.ensure_future(opener.open(r)) for r in reqs]
        await asyncio.sleep(0.5)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        j.close()
        j2 = open_journal(path)
        try:
            return await PositionOpener(ex, journal=j2).recover()
        finally:
            j2.close()

    got = run_virtual(go())
    assert [a.state for a in got] == [State.PROTECTED, State.PROTECTED]
    entries = [o for o in ex.log if o.kind == "market" and not o.reduce_only]
    assert len(entries) == 2
    assert ex.net_position(SYMBOL) == 43 and ex.net_position(BTC) == -0.5
    assert len(ex.resting_stops()) == 2


def test_a_taken_over_lease_recovers_the_dead_holders_attempt_begun_after_the_listing(
        journal_at: str) -> None:
    """recover() lists the unfinished attempts, then takes each one's lease.
    A holder that began an attempt after the listing and died leaves an
    expired lease, which the recovery takes over for its listed attempt:
    that attempt of the dead holder is recovered too, under the same lease.
    (Before, it was left unfinished while the released lease hid that its
    holder had died, so the next open() sent an entry on top of it: seen
    as an ORPHANED attempt in the fleet's kill-and-recover test.)"""
    ex = _sim()
    late = "fedcba9876543210fedcba98"
    with open_journal(journal_at) as j, open_journal(journal_at) as dead:
        store = j.store
        assert isinstance(store, LeaseStore)
        j.begin(AID, request(), ENTRY, 0.0)  # listed: the entry was never sent
        listed = False
        real_read = j.read

        def read(attempt_id: str | None = None) -> list[Any]:
            nonlocal listed
            out = real_read(attempt_id)
            if not listed:  # right after the listing: the dead holder's attempt
                listed = True
                assert store.acquire("acct", SYMBOL, "dead-holder", 0.001) is not None
                dead.begin(late, request(), client_ids(late)[0], 0.0)
            return out

        j.read = read  # type: ignore[method-assign]

        async def go() -> list[Any]:
            return await PositionOpener(ex, journal=j, account="acct").recover()

        run_virtual(go())
        ended = {s.attempt_id: s.finished for s in summarize(real_read())}
    assert ended == {AID: True, late: True}
