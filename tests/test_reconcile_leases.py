"""The reconciliation monitor writes only under the ``(account, symbol)``
lease (rule 11), on each store: a symbol whose lease another process holds
(an attempt is being driven there) is skipped this round, with nothing sent
and nothing journalled, and said so; once free, the monitor takes the lease,
acts, and lets it go.

"Another process" is a second opening of the same journal (its own
connection, as another process has), holding the lease as a live attempt's
opener does.
"""

from __future__ import annotations

import asyncio
import time

from adapters.simulated import SimConfig, SimulatedExchange
from fsm import State, client_ids
from fsm.journal import Journal, JournalRecord
from fsm.lease import Lease, LeaseStore
from fsm.reconcile import ActionKind, OrphanAction, ReconcilePolicy, Reconciler, ReconcileReport
from tests.helpers import PRICE, SYMBOL, request
from tests.pg import open_journal

ACCOUNT = "sim:acct"
A1 = "a00000000000000000000001"


def _orphaned(j: Journal, aid: str) -> None:
    """Journal an attempt that ended ORPHANED with 43 filled."""
    entry = client_ids(aid)[0]
    j.begin(aid, request(stop_loss=0.1290), entry, 0.0)
    j.intent(aid, "entry", entry, 0.0, {"side": "buy", "amount": 43.0})
    j.transition(aid, 0.1, {"dest": "PLACED", "entry_order_id": "x", "filled": None})
    j.transition(aid, 0.2, {"dest": "ORPHANED", "filled": 43.0})
    j.end(aid, State.ORPHANED, 0.3)


def _store(j: Journal) -> LeaseStore:
    assert isinstance(j.store, LeaseStore)
    return j.store


def test_the_monitor_skips_a_symbol_whose_lease_a_live_process_holds(journal_at: str) -> None:
    ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}, initial_positions={SYMBOL: 43.0}))
    with open_journal(journal_at) as mine, open_journal(journal_at) as other:
        _orphaned(mine, A1)
        rec = Reconciler(ex, mine, account=ACCOUNT, policy=ReconcilePolicy(
            settle_time=0, orphans=OrphanAction.PROTECT))
        held = _store(other).acquire(ACCOUNT, SYMBOL, "opener-elsewhere", 30.0)
        assert held is not None
        before = mine.read()

        busy: ReconcileReport = asyncio.run(rec.check_once())
        assert busy.orphans and busy.actions == ()
        (why,) = busy.skipped
        assert SYMBOL in why and "opener-elsewhere" in why and "nothing written" in why
        assert "skipped this round" in busy.render()
        assert ex.log == []  # nothing sent
        assert mine.read() == before  # nothing journalled
        assert _store(other).holder(ACCOUNT, SYMBOL) == held  # the holder keeps it

        _store(other).release(held)
        free = asyncio.run(rec.check_once())
        assert free.skipped == ()
        (act,) = free.actions
        assert (act.kind, act.ok, act.attempt_id) == (ActionKind.PROTECT, True, A1)
        assert [o.client_id for o in ex.log] == [act.client_id]
        (note,) = [r for r in mine.read() if r.kind == "reconcile"]
        assert note.data["client_id"] == act.client_id
        # The monitor held the key's next lease while it acted, then let it go.
        after = _store(other).holder(ACCOUNT, SYMBOL)
        assert after is not None
        assert (after.owner, after.token) == (rec.owner, held.token + 1)
        assert _store(other).acquire(ACCOUNT, SYMBOL, "opener-elsewhere", 30.0) is not None


def test_the_monitor_does_not_act_on_a_view_an_attempt_changed_meanwhile(
    journal_at: str,
) -> None:
    """The lease was busy during the check's read and freed before its
    write: an attempt ran meanwhile (here: wrote a record), so what the
    check concluded is stale; it writes nothing and says so."""
    ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}, initial_positions={SYMBOL: 43.0}))
    with open_journal(journal_at) as mine, open_journal(journal_at) as other:
        _orphaned(mine, A1)
        rec = Reconciler(ex, mine, account=ACCOUNT, policy=ReconcilePolicy(
            settle_time=0, orphans=OrphanAction.PROTECT))
        real_read = mine.read
        reads = 0

        def read(attempt_id: str | None = None) -> list[JournalRecord]:
            nonlocal reads
            reads += 1
            if reads == 2:  # the monitor re-reads once it holds the lease
                other.note(A1, "lease", 1.0, {"account": ACCOUNT, "symbol": SYMBOL,
                                              "owner": "opener-elsewhere", "fence": 0})
            return real_read(attempt_id)

        mine.read = read  # type: ignore[method-assign]
        report = asyncio.run(rec.check_once())
        (why,) = report.skipped
        assert "changed" in why and report.actions == ()
        assert ex.log == []


def test_a_monitor_paused_past_its_lease_writes_nothing_and_sends_nothing(
    journal_at: str,
) -> None:
    """The monitor holds the lease, then stalls (here: inside its journal
    re-read, its loop blocked as a paused process's is) until its lease
    expired and an opener took the symbol over. Its record is refused by the
    fence, nothing is sent, and the symbol is reported skipped."""
    ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}, initial_positions={SYMBOL: 43.0}))
    with open_journal(journal_at) as mine, open_journal(journal_at) as other:
        _orphaned(mine, A1)
        rec = Reconciler(ex, mine, account=ACCOUNT, lease_duration=0.5, policy=ReconcilePolicy(
            settle_time=0, orphans=OrphanAction.PROTECT))
        real_read = mine.read
        reads = 0
        taken: list[Lease] = []

        def read(attempt_id: str | None = None) -> list[JournalRecord]:
            nonlocal reads
            reads += 1
            if reads == 2:  # holding the lease: stall until another process took it
                deadline = time.monotonic() + 30
                while not taken:
                    assert time.monotonic() < deadline, "the monitor's lease never expired"
                    got = _store(other).acquire(ACCOUNT, SYMBOL, "opener-elsewhere", 30.0)
                    if got is not None:
                        taken.append(got)
            return real_read(attempt_id)

        mine.read = read  # type: ignore[method-assign]
        before = real_read()
        report = asyncio.run(rec.check_once())
        (why,) = report.skipped
        assert "fenced out" in why and report.actions == ()
        assert ex.log == []
        assert real_read() == before
        now = _store(other).holder(ACCOUNT, SYMBOL)
        assert now is not None and (now.owner, now.token) == (taken[0].owner, taken[0].token)
