"""Issue 11, reproductions 1-3: alerts that always arrive, and a journal
that fails safe. Everything runs on the simulator in virtual time, with a
real journal on each store (``journal_at``: SQLite, and PostgreSQL where a
server can start). A journal that fails is each store's own failure: for
SQLite a full disk (SQLITE_FULL, made by capping the database's page count
at the moment the entry leaves), for PostgreSQL a session whose writes the
server refuses (read-only from that moment)."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from adapters.port import OrderSnapshot, Side
from adapters.simulated import SimConfig, SimulatedExchange
from adapters.virtual_time import run_virtual
from fsm import (
    Alert,
    Journal,
    JournalFailed,
    MemoryJournal,
    Policy,
    PositionOpener,
    State,
)
from fsm.journal import JournalError, SQLiteStore, summarize
from tests.helpers import PRICE, SYMBOL, ids, request
from tests.pg import open_journal


def _sim(**knobs: Any) -> SimulatedExchange:
    return SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}, **knobs))


# -- 1. an alert lost in a crash is delivered again ---------------------------------------------


def test_an_alert_interrupted_by_a_crash_is_delivered_again_by_recovery(journal_at: str) -> None:
    """The process dies while the pager is being called. The alert was
    queued in the journal before delivery and no end was written, so
    recovery delivers it again, with the same alert_id."""
    ex = _sim(stop_rejected=True, close_rejected=True)
    path = journal_at
    started: list[Alert] = []
    delivered: list[Alert] = []
    paging = asyncio.Event()

    async def dies_while_paging(alert: Alert) -> None:
        started.append(alert)
        paging.set()
        await asyncio.sleep(3600)  # the process is killed during this

    async def go() -> list[Any]:
        j = open_journal(path)
        task = asyncio.ensure_future(
            PositionOpener(ex, journal=j, alerts=dies_while_paging, ids=ids()).open(request()))
        await paging.wait()
        task.cancel()  # the crash
        await asyncio.gather(task, return_exceptions=True)
        j.close()
        with open_journal(path) as j2:
            got = await PositionOpener(ex, journal=j2, alerts=delivered.append).recover()
            again = await PositionOpener(ex, journal=j2, alerts=delivered.append).recover()
            (s,) = summarize(j2.read())
        return [got, again, s]

    got, again, s = run_virtual(go())
    assert got == [] and again == []
    assert [a.alert_id for a in delivered] == [started[0].alert_id]  # exactly once more
    assert delivered[0].alert_id == f"{started[0].attempt_id}:orphaned"
    assert s.ended is State.ORPHANED and s.alerts_pending == ()
    assert ex.net_position(SYMBOL) == 43  # what the alert is about


def test_an_alert_whose_receiver_failed_is_delivered_again_at_the_next_start() -> None:
    ex = _sim(stop_rejected=True, close_rejected=True)
    journal = MemoryJournal()
    delivered: list[str] = []

    def pager_down(alert: Alert) -> None:
        raise ConnectionError("pager down")

    async def go() -> None:
        a = await PositionOpener(ex, journal=journal, alerts=pager_down, ids=ids()).open(
            request())
        assert a.state is State.ORPHANED
        await PositionOpener(ex, journal=journal,
                             alerts=lambda al: delivered.append(al.alert_id)).recover()
        await PositionOpener(ex, journal=journal,
                             alerts=lambda al: delivered.append(al.alert_id)).recover()

    run_virtual(go())
    assert delivered == ["000000000000000000000001:orphaned"]


# -- 2. an alert that hangs hangs nothing --------------------------------------------------------


def test_a_hanging_alert_callback_neither_holds_open_nor_blocks_the_symbol() -> None:
    ex = _sim(stop_rejected=True, close_rejected=True)
    policy = Policy(alert_timeout=2.0)
    never = asyncio.Event()

    async def hangs(alert: Alert) -> None:
        await never.wait()

    async def go() -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        opener = PositionOpener(ex, policy=policy, alerts=hangs, ids=ids())
        t0 = loop.time()
        first = asyncio.ensure_future(opener.open(request()))
        await asyncio.sleep(0.001)
        second = asyncio.ensure_future(opener.open(request(amount=1)))
        a = await first
        ended_first = loop.time() - t0
        b = await second
        assert a.state is State.ORPHANED and b.state is State.ORPHANED
        second_entry = next(x.at for x in ex.log if x.kind == "market" and x.amount == 1)
        alerted_at = a.history[-1].at
        return ended_first, second_entry - t0, alerted_at - t0

    ended_first, second_sent, alerted = run_virtual(go())
    assert ended_first <= policy.max_duration
    assert ended_first == pytest.approx(alerted + 2.0, abs=0.01)  # gave up after alert_timeout
    assert second_sent < alerted + 0.5  # the lock was free while the pager hung


def test_recovery_bounds_the_alert_callback_too() -> None:
    ex = _sim()
    journal = MemoryJournal()
    journal.begin("a1", request(), "spa1e", 0.0)
    journal.intent("a1", "entry", "spa1e", 0.0, {})
    journal.transition("a1", 1.0, {"dest": "ORPHANED", "detail": "could not prove flat"})

    async def hangs(alert: Alert) -> None:
        await asyncio.Event().wait()

    async def go() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await PositionOpener(ex, journal=journal, alerts=hangs,
                             policy=Policy(alert_timeout=1.0)).recover()
        return loop.time() - t0

    assert run_virtual(go()) == pytest.approx(1.0, abs=0.01)
    (s,) = summarize(journal.read())
    assert s.ended is State.ORPHANED and len(s.alerts_pending) == 1  # delivered next start


# -- 3. a journal that fails after the entry: protect first, then complain --------------------


class DiskFillsAsTheEntryLeaves(SimulatedExchange):
    """The world: the journal fails exactly when the entry is sent (after
    its intent was written), and refuses every later write with its store's
    own error (:func:`_break`)."""

    journal: Journal

    async def create_order(self, *, symbol: str, side: Side, amount: float, client_id: str,
                           reduce_only: bool) -> OrderSnapshot:
        if not reduce_only:
            _break(self.journal)
        return await super().create_order(symbol=symbol, side=side, amount=amount,
                                          client_id=client_id, reduce_only=reduce_only)


def _break(journal: Journal) -> str:
    """Make every later write of ``journal`` fail as its store fails; the
    words its error says."""
    if isinstance(journal.store, SQLiteStore):
        _fill_disk(journal)
        return "database or disk is full"
    # PostgreSQL: the server refuses the writes of the journal's own session.
    journal.store._conn().execute(  # type: ignore[attr-defined]
        "SET default_transaction_read_only = on")
    return "read-only transaction"


def _broken_says(journal_at: str) -> str:
    return "read-only transaction" if journal_at.startswith("host=") \
        else "database or disk is full"


def _fill_disk(journal: Journal) -> None:
    conn = sqlite3.connect(str(journal.path))
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    assert isinstance(journal.store, SQLiteStore)
    store_conn = journal.store._conn  # the journal's own connection: cap it there
    assert store_conn is not None
    store_conn.execute(f"PRAGMA max_page_count={pages}")
    for size in (4096, 1024, 256, 64, 16, 1):  # fill what is left of the last page
        while True:
            try:
                journal.note("disk", "reconcile", 0.0, {"pad": "x" * size})
            except sqlite3.OperationalError as exc:
                assert "full" in str(exc)
                break


@pytest.mark.parametrize(("knobs", "end"), [({}, State.PROTECTED),
                                            ({"stop_rejected": True}, State.CLOSE_VERIFIED)])
def test_a_journal_failing_after_the_entry_still_protects_then_alerts_and_raises(
        journal_at: str, knobs: dict[str, Any], end: State) -> None:
    ex = DiskFillsAsTheEntryLeaves(SimConfig(prices={SYMBOL: PRICE}, **knobs))
    alerts: list[Alert] = []

    async def go() -> JournalFailed:
        with open_journal(journal_at) as j:
            ex.journal = j
            opener = PositionOpener(ex, journal=j, alerts=alerts.append, ids=ids())
            with pytest.raises(JournalFailed, match=_broken_says(journal_at)) as info:
                await opener.open(request())
            return info.value

    failed = run_virtual(go())
    assert failed.attempt.state is end
    if end is State.PROTECTED:
        assert [(s.side, s.amount) for s in ex.resting_stops(SYMBOL)] == [(Side.SELL, 43)]
    else:
        assert ex.net_position(SYMBOL) == 0
    (alert,) = alerts
    assert alert.reason == "journal" and _broken_says(journal_at) in alert.message


def test_an_orphaned_attempt_with_a_failed_journal_alerts_once_saying_both(
        journal_at: str) -> None:
    ex = DiskFillsAsTheEntryLeaves(SimConfig(prices={SYMBOL: PRICE}, stop_rejected=True,
                                             close_rejected=True))
    alerts: list[Alert] = []

    async def go() -> JournalFailed:
        with open_journal(journal_at) as j:
            ex.journal = j
            with pytest.raises(JournalFailed) as info:
                await PositionOpener(ex, journal=j, alerts=alerts.append, ids=ids()).open(
                    request())
            return info.value

    failed = run_virtual(go())
    assert failed.attempt.state is State.ORPHANED
    (alert,) = alerts
    assert alert.reason == "orphaned" and "journal also failed" in alert.message


def test_a_journal_failing_before_the_entry_sends_nothing(journal_at: str) -> None:
    ex = _sim()

    async def go() -> None:
        with open_journal(journal_at) as j:
            _break(j)
            # JournalFailed once the attempt exists; a journal that cannot
            # even grant the lease (PostgreSQL refuses that write too) fails
            # before it, as the JournalError it derives from.
            with pytest.raises(JournalError, match=r"(?i)nothing was sent"):
                await PositionOpener(ex, journal=j, ids=ids()).open(request())

    run_virtual(go())
    assert ex.log == []
