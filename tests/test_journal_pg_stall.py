"""PostgreSQL only: a process paused in the middle of a journal transaction
(SIGSTOP, a debugger, a swap storm) does not hold its row locks, the lease
row's included, for as long as it stays paused: the server ends the
transaction after ``stalled_transaction_timeout``, so another process can
take the lease over once it expired, as the lease design requires."""

from __future__ import annotations

import threading

import pytest

from fsm.fence import Lease
from fsm.journal import JournalError
from tests import pg

ACCOUNT, SYMBOL = "pg:acct", "AVL/USDT:USDT"


def test_a_stalled_transaction_does_not_hold_up_a_take_over(pg_server: pg.Server) -> None:
    from fsm.journal_pg import PostgresStore

    dsn = pg_server.new_database()
    paused = PostgresStore(dsn, stalled_transaction_timeout=1.0)
    other = PostgresStore(dsn)
    try:
        assert paused.acquire(ACCOUNT, SYMBOL, "paused", 0.5) is not None
        taken: list[Lease | None] = []
        with pytest.raises(JournalError), paused._tx() as c:
            # A renewal, stopped half-way: it locked the row.
            c.execute("SELECT token FROM leases WHERE account = %s AND symbol = %s "
                      "FOR UPDATE", (ACCOUNT, SYMBOL))
            worker = threading.Thread(target=lambda: taken.append(
                other.acquire(ACCOUNT, SYMBOL, "taker", 30.0)), daemon=True)
            worker.start()
            # The paused process sends nothing more; the taker must get in.
            worker.join(15)
            assert not worker.is_alive(), "the take-over waited on the paused transaction"
            c.execute("SELECT 1")  # resumed: its session is gone
        (lease,) = taken
        assert lease is not None and (lease.owner, lease.token) == ("taker", 2)
    finally:
        paused.close()
        other.close()
