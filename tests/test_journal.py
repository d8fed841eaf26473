"""What only the SQLite journal has: its file, WAL mode, application id,
read-only opening; and the folding of records read back from each store
(the ``journal`` fixture: SQLite, and PostgreSQL where a server can start).
The store contract every durable store keeps is in
``test_journal_stores.py``, run on each store."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from fsm import MemoryJournal, State
from fsm.journal import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Journal,
    JournalError,
    summarize,
)
from tests import pg
from tests.conftest import STORES
from tests.helpers import request

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


# -- the store's contract ----------------------------------------------------------------------


def test_memory_note_kinds_are_checked() -> None:
    with pytest.raises(ValueError):
        MemoryJournal().note("a1", "whatever", 0.0, {})


# -- records -----------------------------------------------------------------------------------


@pytest.fixture(params=["memory", *STORES])
def any_journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal]:
    """A memory journal, or a durable one on each store."""
    if request.param == "memory":
        yield MemoryJournal()
        return
    if request.param == "sqlite":
        where = str(tmp_path / "journal.sqlite3")
    else:
        where = cast(pg.Server, request.getfixturevalue("pg_server")).new_database()
    with pg.open_journal(where) as j:
        yield j


def test_summarize_folds_an_attempt(any_journal: Journal) -> None:
    j = any_journal
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
