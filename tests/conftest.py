"""Fixtures shared by the tests: a real PostgreSQL server for the journal
suite, started once per session.

Without PostgreSQL's server binaries (or psycopg) the PostgreSQL cases skip
with a one-line reason; under CI (``CI=true``) they fail instead, so a run
that silently skipped them cannot pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pg

STORES = ("sqlite", "postgres")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.Server]:
    """A throwaway PostgreSQL server for the whole session."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg not installed (pip install -e '.[postgres]')")
    bin_dir = pg.find_bin()
    if bin_dir is None:
        _unavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
    assert bin_dir is not None
    with pg.server(bin_dir) as server:
        yield server


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each journal test runs once per store."""
    return str(request.param)


@pytest.fixture
def journal_at(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Where a fresh journal lives for this test's store: an SQLite path, or
    the DSN of a new database on the session's PostgreSQL server. Open it
    (as often as needed: each opening is one connection, as another process
    would have) with :func:`tests.pg.open_journal`."""
    if store_kind == "sqlite":
        return str(tmp_path / "journal.sqlite3")
    server: pg.Server = request.getfixturevalue("pg_server")
    return server.new_database()
