"""``python -m fsm journal show`` reads either store: an SQLite file
(``--db``) or a fleet's PostgreSQL journal (``--dsn``, or a ``--db`` that is
a ``postgresql://`` URI), read-only on both: what it is pointed at is left
exactly as it was, and a database that is not a journal is refused in one
line, with nothing created in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fsm.__main__ import main
from tests import pg
from tests.helpers import request
from tests.pg import open_journal


def _where_args(journal_at: str) -> list[list[str]]:
    """Every way of naming the journal on the command line."""
    if not journal_at.startswith("host="):
        return [["--db", journal_at]]
    parts = dict(p.split("=", 1) for p in journal_at.split())
    uri = f"postgresql://{parts['user']}@/{parts['dbname']}?host={parts['host']}"
    return [["--dsn", journal_at], ["--dsn", uri], ["--db", uri]]


def test_journal_show_reads_each_store_and_writes_nothing(
        journal_at: str, capsys: pytest.CaptureFixture[str]) -> None:
    with open_journal(journal_at) as j:
        j.begin("a1b2c3", request(), "spa1b2c3e", 0.0)
        j.begin("ffee00", request(), "spffee00e", 0.0)
        before = j.read()
    for where in _where_args(journal_at):
        assert main(["journal", "show", *where]) == 0, where
        out = capsys.readouterr().out
        assert "attempt a1b2c3" in out and "attempt ffee00" in out
        assert main(["journal", "show", *where, "--attempt", "ffee"]) == 0
        out = capsys.readouterr().out
        assert "attempt ffee00" in out and "a1b2c3" not in out
    with open_journal(journal_at) as j:
        assert j.read() == before


def test_journal_show_refuses_a_postgres_database_that_is_not_a_journal(
        pg_server: pg.Server, capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg

    dsn = pg_server.new_database()
    assert main(["journal", "show", "--dsn", dsn]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(r"error: .*not a journal", err[0]), err
    with psycopg.connect(dsn) as c:
        tables = c.execute("SELECT table_name FROM information_schema.tables "
                           "WHERE table_schema = current_schema()").fetchall()
    assert tables == []  # nothing created: no schema, no migration


def test_journal_show_says_in_one_line_when_postgres_cannot_be_reached(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("psycopg")
    dsn = f"host={tmp_path} dbname=nowhere user=nobody connect_timeout=2"
    assert main(["journal", "show", "--dsn", dsn]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "PostgreSQL" in line
