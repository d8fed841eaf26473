"""The journal's store contract, once for every durable store: SQLite and a
real PostgreSQL (started by the session fixture; skipped locally without
it, a failure under CI). Schema and migrations, append-only, transactions,
ordering, durability across a process's death, the records the engine
writes, and the leases with their fencing tokens.

What only one store has (SQLite's file permissions, WAL, read-only opening)
is in ``test_journal.py``."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from adapters.simulated import SimConfig, SimulatedExchange
from adapters.virtual_time import run_virtual
from fsm import MemoryJournal, PositionOpener, State
from fsm.journal import (
    MIGRATIONS,
    Journal,
    JournalError,
    JournalLog,
    JournalRecord,
    JournalStore,
    NewRecord,
    SQLiteStore,
)
from fsm.lease import Lease, LeaseLost, LeaseStore
from tests.helpers import PRICE, SYMBOL, ids, request
from tests.pg import open_journal

ROOT = Path(__file__).resolve().parents[1]


def _is_pg(where: str) -> bool:
    return where.startswith("host=")


def _raw(where: str, sql: str) -> list[tuple[Any, ...]]:
    """Run SQL on the store's database directly, bypassing the journal."""
    if _is_pg(where):
        import psycopg

        with psycopg.connect(where, autocommit=True) as c:
            cur = c.execute(sql.encode())
            return list(cur.fetchall()) if cur.description else []
    con = sqlite3.connect(where, isolation_level=None)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _raw_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _store(where: str, **kw: Any) -> JournalStore:
    return open_journal(where).store if not kw else SQLiteStore(where, **kw)


# -- schema --------------------------------------------------------------------------------------


def test_schema_is_at_the_latest_version_and_reopening_keeps_it(journal_at: str) -> None:
    with open_journal(journal_at) as j:
        assert j.store.schema_version == MIGRATIONS[-1].version
        j.begin("a1", request(), "spa1e", 1.0)
    with open_journal(journal_at) as j:
        assert j.store.schema_version == MIGRATIONS[-1].version
        assert [r.kind for r in j.read()] == ["begin"]


def test_refuses_a_schema_newer_than_the_code(journal_at: str) -> None:
    open_journal(journal_at).close()
    if _is_pg(journal_at):
        _raw(journal_at, "INSERT INTO journal_schema (version, why) VALUES (99, 'future')")
    else:
        _raw(journal_at, "PRAGMA user_version=99")
    with pytest.raises(JournalError, match="newer than this code"):
        open_journal(journal_at)


def test_reading_only_refuses_a_schema_newer_than_the_code_and_changes_nothing(
        journal_at: str) -> None:
    open_journal(journal_at).close()
    if _is_pg(journal_at):
        _raw(journal_at, "INSERT INTO journal_schema (version, why) VALUES (99, 'future')")
        version = "SELECT MAX(version) FROM journal_schema"
    else:
        _raw(journal_at, "PRAGMA user_version=99")
        version = "PRAGMA user_version"
    with pytest.raises(JournalError, match=r"newer than this code.*upgrade the library"):
        open_journal(journal_at, read_only=True)
    assert _raw(journal_at, version) == [(99,)]


def test_refuses_a_database_that_is_not_a_journal(journal_at: str) -> None:
    _raw(journal_at, "CREATE TABLE records (x INTEGER)")
    with pytest.raises(JournalError, match="not a journal"):
        open_journal(journal_at)


def test_migrates_an_older_schema_in_place_keeping_records(journal_at: str) -> None:
    if _is_pg(journal_at):
        from fsm.journal_pg import PG_MIGRATIONS, PostgresStore

        old: JournalStore = PostgresStore(journal_at, migrations=PG_MIGRATIONS[:1])
    else:
        old = SQLiteStore(journal_at, migrations=MIGRATIONS[:1])
    assert old.schema_version == 1
    Journal(store=old).begin("a1", request(), "spa1e", 1.0)
    old.close()
    with open_journal(journal_at) as j:
        assert j.store.schema_version == MIGRATIONS[-1].version
        assert [r.kind for r in j.read()] == ["begin"]
    # The view migration 2 added sees the old record.
    assert _raw(journal_at, "SELECT attempt_id, symbol, final_state FROM attempts") == [
        ("a1", SYMBOL, None)]


def test_the_record_table_is_append_only(journal_at: str) -> None:
    with open_journal(journal_at) as j:
        j.begin("a1", request(), "spa1e", 1.0)
    for sql in ("UPDATE records SET kind = 'end'", "DELETE FROM records"):
        with pytest.raises(_raw_errors(), match="append-only"):
            _raw(journal_at, sql)
    if _is_pg(journal_at):
        with pytest.raises(_raw_errors(), match="append-only"):
            _raw(journal_at, "TRUNCATE records")
    assert len(_raw(journal_at, "SELECT * FROM records")) == 1


# -- the store's contract ------------------------------------------------------------------------


def test_a_batch_is_one_transaction(journal_at: str) -> None:
    store = open_journal(journal_at).store
    good = NewRecord("a1", "begin", 1.0, 2.0, "{}")
    bad = NewRecord("a1", "intent", 1.0, 2.0, "not json")  # violates the CHECK
    with pytest.raises((JournalError, sqlite3.IntegrityError)):
        store.append([good, bad])
    assert store.read() == []
    seqs = store.append([good, good])
    assert seqs[1] == seqs[0] + 1 and [r.seq for r in store.read()] == seqs
    store.close()


def test_seqs_increase_in_commit_order_and_read_filters(journal_at: str) -> None:
    store = open_journal(journal_at).store
    seqs = store.append([NewRecord(f"a{i % 2}", "intent", 0.0, 0.0, "{}") for i in range(6)])
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    assert [r.seq for r in store.read()] == seqs
    assert [r.seq for r in store.read("a1")] == seqs[1::2]
    assert [r.seq for r in store.read(after=seqs[3])] == seqs[4:]
    store.close()


def test_concurrent_writers_never_let_a_reader_skip_a_record(journal_at: str) -> None:
    """Four connections append at once while a reader follows with
    ``after=``: a seq committed after a higher one would be skipped. The
    reader must see every record exactly once, in order."""
    n, each = 4, 40
    done = threading.Event()
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            with open_journal(journal_at) as j:
                for i in range(each):
                    j.note(f"w{k}", "reconcile", float(i), {"i": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with open_journal(journal_at) as reader:
        threads = [threading.Thread(target=write, args=(k,)) for k in range(n)]
        for t in threads:
            t.start()
        seen: list[int] = []
        after = 0
        deadline = time.monotonic() + 60
        while len(seen) < n * each and time.monotonic() < deadline:
            got = reader.store.read(after=after)
            seen += [r.seq for r in got]
            after = seen[-1] if seen else 0
        for t in threads:
            t.join(60)
        done.set()
        assert not errors, errors
        assert seen == sorted(set(seen)) and len(seen) == n * each
        assert seen == [r.seq for r in reader.store.read()]


def test_note_kinds_are_checked(journal_at: str) -> None:
    with open_journal(journal_at) as j, pytest.raises(ValueError, match="unknown"):
        j.note("a1", "whatever", 0.0, {})


def test_an_intent_survives_the_death_of_the_process_that_wrote_it(journal_at: str) -> None:
    """Write-ahead: once intent() returns, the record is stored. The child
    writes begin and an intent, then dies without closing anything."""
    code = textwrap.dedent(f"""
        import os
        from tests.pg import open_journal
        from tests.helpers import request
        j = open_journal({journal_at!r})
        j.begin("a1", request(), "spa1e", 1.0)
        j.intent("a1", "entry", "spa1e", 1.5, {{"side": "buy", "amount": 43.0}})
        os._exit(9)  # no close, no checkpoint, no atexit
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          timeout=60, check=False)
    assert proc.returncode == 9, proc.stderr.decode()
    with open_journal(journal_at) as j:
        recs = j.read()
    assert [(r.kind, r.data.get("action")) for r in recs] == [("begin", None),
                                                            ("intent", "entry")]


# -- records -------------------------------------------------------------------------------------


def test_records_read_back_in_the_same_shape_as_the_memory_journal(journal_at: str) -> None:
    clock = iter(range(100, 200))
    j = open_journal(journal_at)
    j._wall = lambda: float(next(clock))
    mem = MemoryJournal()
    req = request()
    for sink in (j, mem):
        sink.begin("a1", req, "spa1e", 1.0)
        sink.intent("a1", "entry", "spa1e", 1.1, {"side": "buy", "amount": 43.0,
                                                  "reduce_only": False})
        sink.transition("a1", 1.2, {"trigger": "submit", "source": "NEW", "dest": "PLACED",
                                    "guards": ["entry_may_exist"], "filled": None})
        sink.end("a1", State.PROTECTED, 2.0)
    got = j.read()
    assert [(r.attempt_id, r.kind, r.at, dict(r.data)) for r in got] == [
        (r.attempt_id, r.kind, r.at, dict(r.data)) for r in mem.read()]
    assert got[0].data["request"] == req
    assert got[-1].data["state"] is State.PROTECTED
    assert [r.seq for r in got] == sorted({r.seq for r in got if r.seq is not None})
    assert [r.wall for r in got] == [100.0, 101.0, 102.0, 103.0]
    assert isinstance(j, JournalLog) and isinstance(mem, JournalLog)
    j.close()


def test_the_engine_journals_exactly_what_it_journals_in_memory(journal_at: str) -> None:
    """The same world through a MemoryJournal and through the durable store:
    the same records, in the same order, after the attempt's lease record."""

    def run(journal: JournalLog) -> None:
        ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}))

        async def go() -> None:
            await PositionOpener(ex, journal=journal, ids=ids()).open(request())

        run_virtual(go())

    mem = MemoryJournal()
    run(mem)
    with open_journal(journal_at) as j:
        run(j)
        durable = j.read()

    def norm(recs: list[JournalRecord]) -> list[tuple[str, str, float, dict[str, object]]]:
        return [(r.attempt_id, r.kind, r.at, dict(r.data)) for r in recs]

    lease, *rest = durable
    assert lease.kind == "lease" and lease.data["account"] == "simulated"
    assert lease.data["fence"] == 1 and lease.data["symbol"] == SYMBOL
    assert norm(rest) == norm(mem.records)
    kinds = [(r.kind, r.data.get("action") or r.data.get("dest")) for r in rest]
    assert kinds == [("begin", None), ("intent", "entry"), ("transition", "PLACED"),
                     ("transition", "FETCHED"), ("transition", "VERIFIED"),
                     ("intent", "stop"), ("transition", "PROTECTED"), ("end", None)]


# -- leases and fencing --------------------------------------------------------------------------


def _leases(where: str) -> tuple[JournalStore, LeaseStore]:
    store = open_journal(where).store
    assert isinstance(store, LeaseStore)
    return store, store


def test_a_lease_is_exclusive_until_released_and_tokens_only_grow(journal_at: str) -> None:
    _, a = _leases(journal_at)
    _, b = _leases(journal_at)
    first = a.acquire("acct", SYMBOL, "a", 30.0)
    assert first is not None and first.token == 1
    assert b.acquire("acct", SYMBOL, "b", 30.0) is None
    assert b.acquire("acct", "BTC/USDT:USDT", "b", 30.0) is not None  # another key
    assert b.acquire("other", SYMBOL, "b", 30.0) is not None  # another account
    held = b.holder("acct", SYMBOL)
    assert held is not None and (held.owner, held.token) == ("a", 1)
    a.release(first)
    second = b.acquire("acct", SYMBOL, "b", 30.0)
    assert second is not None and second.token == 2
    assert not first.taken_over and not second.taken_over  # given back, not expired
    a.release(first)  # a stale release changes nothing
    assert a.acquire("acct", SYMBOL, "a", 30.0) is None


def test_a_fenced_out_writer_is_refused_and_writes_nothing(journal_at: str) -> None:
    """The first holder's lease expires; a second takes the key over. The
    first one's write with its old token is refused, its renewal too."""
    js, a = _leases(journal_at)
    _, b = _leases(journal_at)
    old = a.acquire("acct", SYMBOL, "a", 0.5)
    assert old is not None
    js.append([NewRecord("x", "intent", 0.0, 0.0, "{}")], fence=old)  # live: accepted
    deadline = time.monotonic() + 30
    new: Lease | None = None
    while new is None:  # poll until the store's clock says it expired
        assert time.monotonic() < deadline
        new = b.acquire("acct", SYMBOL, "b", 30.0)
        time.sleep(0.05) if new is None else None
    assert new.token == old.token + 1
    assert new.taken_over  # the old one expired: it may have left an attempt behind
    with pytest.raises(LeaseLost, match="stale token 1"):
        js.append([NewRecord("x", "intent", 0.0, 0.0, '{"late": true}')], fence=old)
    with pytest.raises(LeaseLost):
        a.renew(old, 30.0)
    assert [r.data for r in js.read()] == ["{}"]
    js.append([NewRecord("x", "intent", 0.0, 0.0, "{}")], fence=new)


def test_an_expired_lease_cannot_write_even_before_a_take_over(journal_at: str) -> None:
    js, a = _leases(journal_at)
    lease = a.acquire("acct", SYMBOL, "a", 0.5)
    assert lease is not None
    renewed = a.renew(lease, 0.5)
    assert renewed.expires >= lease.expires
    deadline = time.monotonic() + 30
    while True:
        try:
            js.append([NewRecord("x", "intent", 0.0, 0.0, "{}")], fence=lease)
        except LeaseLost as exc:
            assert "expired" in str(exc)
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
