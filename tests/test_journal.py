"""The durable journal: file, schema, ordering, durability, and the records
the engine writes through it."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adapters.simulated import SimConfig, SimulatedExchange
from adapters.virtual_time import run_virtual
from fsm import MemoryJournal, PositionOpener, State
from fsm.journal import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Journal,
    JournalError,
    JournalLog,
    JournalRecord,
    NewRecord,
    SQLiteStore,
    summarize,
)
from tests.helpers import PRICE, SYMBOL, ids, request

ROOT = Path(__file__).resolve().parents[1]


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _journal_files(path: Path) -> list[Path]:
    return [p for p in path.parent.iterdir() if p.name.startswith(path.name)]


# -- the file ----------------------------------------------------------------------------------


def test_file_is_created_owner_only_even_with_a_permissive_umask(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    old = os.umask(0)
    try:
        with Journal(path) as j:
            j.begin("a1", request(), "spa1e", 0.0)  # makes SQLite create -wal and -shm
            files = _journal_files(path)
            assert {p.name for p in files} >= {"journal.sqlite3", "journal.sqlite3-wal"}
            for p in files:
                assert _mode(p) == 0o600, f"{p.name} has mode {oct(_mode(p))}"
    finally:
        os.umask(old)


def test_an_existing_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    Journal(path).close()
    assert _mode(path) == 0o600


def test_wal_mode_schema_version_and_application_id(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    assert j.store.schema_version == SCHEMA_VERSION == MIGRATIONS[-1].version
    assert j.store.durable
    other = sqlite3.connect(path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert other.execute("PRAGMA application_id").fetchone()[0] != 0
    other.close()
    j.close()


def test_open_existing_only(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Journal(tmp_path / "missing.sqlite3", create=False)
    assert not (tmp_path / "missing.sqlite3").exists()


def test_refuses_a_database_that_is_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(JournalError, match="not a journal"):
        Journal(path)


def test_refuses_a_schema_newer_than_the_code(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(JournalError, match="newer than this code"):
        Journal(path)


def test_migrates_an_older_schema_in_place_keeping_records(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    old = SQLiteStore(path, migrations=MIGRATIONS[:1])
    assert old.schema_version == 1
    Journal(store=old).begin("a1", request(), "spa1e", 1.0)
    old.close()

    j = Journal(path)
    assert j.store.schema_version == SCHEMA_VERSION
    assert [r.kind for r in j.read()] == ["begin"]
    con = sqlite3.connect(path)
    # The view migration 2 added sees the old record.
    assert con.execute("SELECT attempt_id, symbol, final_state FROM attempts").fetchall() == [
        ("a1", SYMBOL, None)]
    con.close()
    j.close()


def test_the_record_table_is_append_only(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal(path) as j:
        j.begin("a1", request(), "spa1e", 1.0)
    con = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("UPDATE records SET kind = 'end'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("DELETE FROM records")
    con.close()


# -- the store's contract ----------------------------------------------------------------------


def test_a_batch_is_one_transaction(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "j.sqlite3")
    good = NewRecord("a1", "begin", 1.0, 2.0, "{}")
    bad = NewRecord("a1", "intent", 1.0, 2.0, "not json")  # violates the CHECK
    with pytest.raises(sqlite3.IntegrityError):
        store.append([good, bad])
    assert store.read() == []
    seqs = store.append([good, good])
    assert seqs[1] == seqs[0] + 1 and [r.seq for r in store.read()] == seqs
    store.close()


def test_seqs_increase_in_commit_order_and_read_filters(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "j.sqlite3")
    seqs = store.append([NewRecord(f"a{i % 2}", "intent", 0.0, 0.0, "{}") for i in range(6)])
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    assert [r.seq for r in store.read()] == seqs
    assert [r.seq for r in store.read("a1")] == seqs[1::2]
    assert [r.seq for r in store.read(after=seqs[3])] == seqs[4:]
    store.close()
    with pytest.raises(JournalError, match="closed"):
        store.read()


def test_note_kinds_are_checked(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as j, pytest.raises(ValueError, match="unknown"):
        j.note("a1", "whatever", 0.0, {})
    with pytest.raises(ValueError):
        MemoryJournal().note("a1", "whatever", 0.0, {})


def test_an_intent_survives_the_death_of_the_process_that_wrote_it(tmp_path: Path) -> None:
    """Write-ahead: once intent() returns, the record is on disk. The child
    writes begin and an intent, then dies without closing anything."""
    path = tmp_path / "j.sqlite3"
    code = textwrap.dedent(f"""
        import os
        from fsm.journal import Journal
        from tests.helpers import request
        j = Journal({str(path)!r})
        j.begin("a1", request(), "spa1e", 1.0)
        j.intent("a1", "entry", "spa1e", 1.5, {{"side": "buy", "amount": 43.0}})
        os._exit(9)  # no close, no checkpoint, no atexit
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          timeout=60, check=False)
    assert proc.returncode == 9, proc.stderr.decode()
    with Journal(path, create=False) as j:
        recs = j.read()
    assert [(r.kind, r.data.get("action")) for r in recs] == [("begin", None),
                                                            ("intent", "entry")]


# -- records -----------------------------------------------------------------------------------


def test_records_read_back_in_the_same_shape_as_the_memory_journal(tmp_path: Path) -> None:
    clock = iter(range(100, 200))
    j = Journal(tmp_path / "j.sqlite3", wall_clock=lambda: float(next(clock)))
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
    assert [r.seq for r in got] == [1, 2, 3, 4]
    assert [r.wall for r in got] == [100.0, 101.0, 102.0, 103.0]
    assert isinstance(j, JournalLog) and isinstance(mem, JournalLog)
    j.close()


def test_the_engine_journals_through_sqlite_exactly_what_it_journals_in_memory(
    tmp_path: Path,
) -> None:
    """The same world through a MemoryJournal and through Journal(path): the
    same records, in the same order; each intent precedes its order."""

    def run(journal: JournalLog) -> SimulatedExchange:
        ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}))

        async def go() -> None:
            await PositionOpener(ex, journal=journal, ids=ids()).open(request())

        run_virtual(go())
        return ex

    mem = MemoryJournal()
    run(mem)
    with Journal(tmp_path / "j.sqlite3") as j:
        run(j)
        durable = j.read()

    def norm(recs: list[JournalRecord]) -> list[tuple[str, str, float, dict[str, object]]]:
        return [(r.attempt_id, r.kind, r.at, dict(r.data)) for r in recs]

    # A durable journal keeps leases: the attempt's lease is recorded first.
    lease, *durable = durable
    assert lease.kind == "lease" and lease.data["account"] == "simulated"
    assert lease.data["fence"] == 1 and lease.data["symbol"] == SYMBOL
    assert norm(durable) == norm(mem.records)
    kinds = [(r.kind, r.data.get("action") or r.data.get("dest")) for r in durable]
    assert kinds == [("begin", None), ("intent", "entry"), ("transition", "PLACED"),
                     ("transition", "FETCHED"), ("transition", "VERIFIED"),
                     ("intent", "stop"), ("transition", "PROTECTED"), ("end", None)]


def test_summarize_folds_an_attempt() -> None:
    j = MemoryJournal()
    req = request()
    j.begin("a1", req, "spa1e", 1.0)
    j.intent("a1", "entry", "spa1e", 1.1, {})
    j.transition("a1", 1.2, {"dest": "PLACED", "entry_order_id": "sim-1", "filled": None})
    j.transition("a1", 1.3, {"dest": "ROLLING_BACK", "entry_order_id": "sim-1", "filled": 43.0})
    j.intent("a1", "close", "spa1c", 1.4, {"side": "sell", "amount": 43.0})
    j.transition("a1", 9.0, {"dest": "ORPHANED"})
    j.end("a1", State.ORPHANED, 9.0)
    j.note("a1", "resolve", 20.0, {})
    j.note("zz", "resolve", 20.0, {})  # no begin: skipped
    (s,) = summarize(j.read())
    assert s.attempt_id == "a1" and s.request == req and s.client_id == "spa1e"
    assert s.state is State.ORPHANED and s.ended is State.ORPHANED and s.finished
    assert set(s.intents) == {"entry", "close"} and s.rolled_back and s.resolved
    assert s.entry_order_id == "sim-1" and s.filled == 43.0 and s.exposure == 43.0
