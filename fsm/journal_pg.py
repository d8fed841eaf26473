"""The journal in PostgreSQL: one database shared by a fleet of bots.

``PostgresJournal(dsn)`` is a :class:`~fsm.journal.Journal` whose store is a
:class:`PostgresStore`: the records, their encoding and their reading back
are the SQLite journal's, so everything built on the journal (recovery, the
monitor, ``journal show``) works unchanged. What PostgreSQL adds is what one
SQLite file on one disk cannot give: many processes on many machines writing
one journal, with the ``(account, symbol)`` leases of :mod:`fsm.lease` kept
in the same database, on the database server's clock.

The store keeps the :class:`~fsm.journal.JournalStore` contract:

* **Transactions, durability.** One transaction per append, committed before
  :meth:`PostgresStore.append` returns; durable against power loss when the
  server runs with ``fsync`` and ``synchronous_commit`` on (its defaults;
  :attr:`PostgresStore.durable` asks the server).
* **Append-only**, enforced in the database: triggers refuse ``UPDATE``,
  ``DELETE`` and ``TRUNCATE`` on the records, whoever asks.
* **Ordering.** A sequence alone numbers rows in the order transactions
  *started* writing, not the order they commit; so every append first takes
  one transaction-scoped advisory lock, which makes seq order commit order.
  Appends queue on it, as SQLite's writers queue on its write lock.
* **Migrations.** The same ladder as SQLite's (:data:`PG_MIGRATIONS`, steps
  1..n, never edited once released), recorded in its own table
  ``journal_schema``; concurrent first openings are serialised by an
  advisory lock, and a database newer than the code is refused.

The driver is psycopg 3 (``pip install 'safe-position-opener[postgres]'``):
its synchronous connection fits the journal's synchronous contract (an
intent is durable before the request that follows it leaves, rule 8) with
no event loop of its own, and it is the project the PostgreSQL community
maintains with libpq itself underneath.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import attrs

from fsm.fence import Lease, LeaseLost, fence_refusal
from fsm.journal import (
    Journal,
    JournalError,
    Migration,
    NewRecord,
    StoredRecord,
)

if TYPE_CHECKING:
    import psycopg

__all__ = ["PG_MIGRATIONS", "PG_SCHEMA_VERSION", "PostgresJournal", "PostgresStore"]

log = logging.getLogger("fsm.journal")

#: The PostgreSQL schema, step by step: the same records, view and leases
#: as :data:`fsm.journal.MIGRATIONS`, in PostgreSQL's dialect.
PG_MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the append-only record log", """
        CREATE TABLE records (
            seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            attempt_id TEXT             NOT NULL,
            kind       TEXT             NOT NULL,
            at         DOUBLE PRECISION NOT NULL,  -- writer's loop time (monotonic)
            wall       DOUBLE PRECISION NOT NULL,  -- wall clock, unix seconds
            data       TEXT             NOT NULL CHECK ((data::jsonb) IS NOT NULL)
        );
        CREATE INDEX records_by_attempt ON records (attempt_id, seq);
        CREATE FUNCTION records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the journal is append-only';
        END $$;
        CREATE TRIGGER records_no_update BEFORE UPDATE OR DELETE ON records
            FOR EACH ROW EXECUTE FUNCTION records_append_only();
        CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON records
            FOR EACH STATEMENT EXECUTE FUNCTION records_append_only();
    """),
    Migration(2, "a read-only view of each attempt's outcome, for ad-hoc SQL", """
        CREATE VIEW attempts AS
        SELECT b.attempt_id                                     AS attempt_id,
               (b.data::jsonb) -> 'request' ->> 'symbol'        AS symbol,
               (b.data::jsonb) -> 'request' ->> 'side'          AS side,
               ((b.data::jsonb) -> 'request' ->> 'amount')::float8 AS amount,
               b.wall                                           AS began_wall,
               (SELECT (e.data::jsonb) ->> 'state' FROM records e
                 WHERE e.attempt_id = b.attempt_id AND e.kind = 'end'
                 ORDER BY e.seq DESC LIMIT 1)                   AS final_state,
               EXISTS (SELECT 1 FROM records r
                        WHERE r.attempt_id = b.attempt_id AND r.kind = 'resolve')
                                                                AS resolved
          FROM records b
         WHERE b.kind = 'begin';
    """),
    Migration(3, "leases on (account, symbol), with fencing tokens", """
        CREATE TABLE leases (
            account TEXT        NOT NULL,
            symbol  TEXT        NOT NULL,
            owner   TEXT        NOT NULL,
            token   BIGINT      NOT NULL,  -- strictly increasing per key, never reused
            expires TIMESTAMPTZ NOT NULL,  -- on the server's clock
            released BOOLEAN    NOT NULL DEFAULT false,  -- given back, not expired
            PRIMARY KEY (account, symbol)
        );
    """),
)

#: The PostgreSQL schema version this code writes.
PG_SCHEMA_VERSION: Final = PG_MIGRATIONS[-1].version

# Advisory lock keys (any two 32-bit ints, fixed): "SPJ1" + purpose.
_MIGRATE_LOCK: Final = (0x53504A31, 1)
_APPEND_LOCK: Final = (0x53504A31, 2)


class PostgresStore:
    """A :class:`~fsm.journal.JournalStore` and :class:`~fsm.lease.LeaseStore`
    in a PostgreSQL database, reached by ``dsn`` (a libpq connection string or
    URI, e.g. ``postgresql://bot@db.internal/journal`` or
    ``host=/run/postgresql dbname=journal``; passwords belong in
    ``~/.pgpass`` or ``PGPASSWORD``, not in code)."""

    def __init__(self, dsn: str, *, connect_timeout: float = 10.0,
                 migrations: Sequence[Migration] = PG_MIGRATIONS,
                 read_only: bool = False, stalled_transaction_timeout: float = 5.0) -> None:
        try:
            import psycopg  # noqa: F401 - the optional extra
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise JournalError("PostgresJournal needs psycopg 3: "
                               "pip install 'safe-position-opener[postgres]'") from exc
        self.dsn = dsn
        self._timeout = connect_timeout
        #: seconds after which the server ends a transaction of ours whose
        #: client went quiet in the middle of it (a paused or cut-off
        #: process): its row locks, the lease row's included, would otherwise
        #: hold up a take-over for as long as the process stays paused
        self.stalled_transaction_timeout = stalled_transaction_timeout
        self._migrations = tuple(migrations)
        self._c: psycopg.Connection[tuple[Any, ...]] | None = None
        #: opened for reading only (``journal show``): every transaction of
        #: its session is read-only, and it neither creates nor migrates
        self.read_only = read_only
        self._conn()
        self._version = self._schema() if read_only else self._migrate()

    # -- JournalStore -----------------------------------------------------------------

    @property
    def durable(self) -> bool:
        """Whether the server syncs commits to disk (``fsync`` and
        ``synchronous_commit`` on)."""
        with self._tx() as c:
            fsync = c.execute("SHOW fsync").fetchone()
            sync = c.execute("SHOW synchronous_commit").fetchone()
        return bool(fsync and sync and fsync[0] == "on" and sync[0] != "off")

    @property
    def schema_version(self) -> int:
        """The schema version the database is at (after migrating)."""
        return self._version

    def append(self, records: Sequence[NewRecord], *,
               fence: Lease | None = None) -> list[int]:
        """Store ``records`` in one transaction, in commit order; refused
        with :class:`~fsm.fence.LeaseLost` if ``fence`` is not current."""
        seqs: list[int] = []
        with self._tx() as c:
            c.execute("SELECT pg_advisory_xact_lock(%s, %s)", _APPEND_LOCK)
            if fence is not None:
                self._check_fence(c, fence)
            for r in records:
                row = c.execute(
                    "INSERT INTO records (attempt_id, kind, at, wall, data) "
                    "VALUES (%s, %s, %s, %s, %s) RETURNING seq",
                    (r.attempt_id, r.kind, r.at, r.wall, r.data)).fetchone()
                assert row is not None
                seqs.append(int(row[0]))
        return seqs

    def read(self, attempt_id: str | None = None, after: int = 0) -> list[StoredRecord]:
        """Records with ``seq > after`` (of one attempt, if given), in order."""
        sql = "SELECT seq, attempt_id, kind, at, wall, data FROM records WHERE seq > %s"
        args: tuple[object, ...] = (after,)
        if attempt_id is not None:
            sql += " AND attempt_id = %s"
            args = (after, attempt_id)
        with self._tx() as c:
            rows = c.execute(sql + " ORDER BY seq", args).fetchall()
        return [StoredRecord(int(s), a, k, float(at), float(w), d) for s, a, k, at, w, d in rows]

    def close(self) -> None:
        """Close the connection."""
        if self._c is not None:
            self._c.close()
            self._c = None

    # -- LeaseStore, on the server's clock ----------------------------------------------

    def acquire(self, account: str, symbol: str, owner: str,
                duration: float) -> Lease | None:
        """Take the key if free or expired (a new token); ``None`` if held."""
        with self._tx() as c:
            old = c.execute("SELECT released FROM leases WHERE account = %s AND symbol = %s "
                            "FOR UPDATE", (account, symbol)).fetchone()
            row = c.execute(
                "INSERT INTO leases AS l (account, symbol, owner, token, expires) "
                "VALUES (%s, %s, %s, 1, clock_timestamp() + make_interval(secs => %s)) "
                "ON CONFLICT (account, symbol) DO UPDATE "
                "SET owner = excluded.owner, token = l.token + 1, expires = excluded.expires, "
                "released = false WHERE l.expires <= clock_timestamp() "
                "RETURNING token, extract(epoch FROM expires)::float8",
                (account, symbol, owner, duration)).fetchone()
        if row is None:
            return None
        return Lease(account, symbol, owner, int(row[0]), float(row[1]),
                     taken_over=old is not None and not old[0])

    def renew(self, lease: Lease, duration: float) -> Lease:
        """Extend a current, unexpired lease; :class:`~fsm.fence.LeaseLost` otherwise."""
        with self._tx() as c:
            row = c.execute(
                "UPDATE leases SET expires = clock_timestamp() + make_interval(secs => %s) "
                "WHERE account = %s AND symbol = %s AND token = %s "
                "AND expires > clock_timestamp() RETURNING extract(epoch FROM expires)::float8",
                (duration, lease.account, lease.symbol, lease.token)).fetchone()
            if row is None:
                self._check_fence(c, lease)  # raises, saying why
                raise LeaseLost(f"fenced out: the lease on {lease.symbol} was lost")
        return attrs.evolve(lease, expires=float(row[0]))

    def release(self, lease: Lease) -> None:
        """Give the lease back now, if it is still current (the token stays)."""
        with self._tx() as c:
            c.execute("UPDATE leases SET expires = LEAST(expires, clock_timestamp()), "
                      "released = true WHERE account = %s AND symbol = %s AND token = %s",
                      (lease.account, lease.symbol, lease.token))

    def holder(self, account: str, symbol: str) -> Lease | None:
        """The key's current row, live or expired."""
        with self._tx() as c:
            return self._lease_row(c, account, symbol, lock=False)[0]

    # -- internals ------------------------------------------------------------------------

    def _conn(self) -> psycopg.Connection[tuple[Any, ...]]:
        import psycopg

        c = self._c
        if c is not None and not c.closed and not c.broken:
            return c
        try:
            c = psycopg.connect(self.dsn, autocommit=True,
                                connect_timeout=max(1, round(self._timeout)),
                                application_name="safe-position-opener")
        except psycopg.Error as exc:
            raise JournalError(f"cannot connect to the PostgreSQL journal: {exc}") from exc
        ms = max(1, round(self.stalled_transaction_timeout * 1000))
        c.execute(f"SET idle_in_transaction_session_timeout = {ms}".encode())
        if self.read_only:
            c.execute("SET default_transaction_read_only = on")
        self._c = c
        return c

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """One transaction; a database error becomes a :class:`JournalError`
        (a refused fence stays :class:`LeaseLost`)."""
        import psycopg

        c = self._conn()
        try:
            with c.transaction():
                yield c
        except psycopg.Error as exc:
            raise JournalError(f"PostgreSQL journal: {exc}") from exc

    def _lease_row(self, c: psycopg.Connection[tuple[Any, ...]], account: str, symbol: str,
                   *, lock: bool) -> tuple[Lease | None, float]:
        # FOR SHARE: a take-over (which updates the row) waits until this
        # transaction's records are committed, so every record of the old
        # token precedes every record of the new one.
        row = c.execute(
            "SELECT owner, token, extract(epoch FROM expires)::float8, "
            "extract(epoch FROM clock_timestamp())::float8 "
            "FROM leases WHERE account = %s AND symbol = %s" + (" FOR SHARE" if lock else ""),
            (account, symbol)).fetchone()
        if row is None:
            now = c.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
            assert now is not None
            return None, float(now[0])
        return Lease(account, symbol, row[0], int(row[1]), float(row[2])), float(row[3])

    def _check_fence(self, c: psycopg.Connection[tuple[Any, ...]], fence: Lease) -> None:
        current, now = self._lease_row(c, fence.account, fence.symbol, lock=True)
        refused = fence_refusal(fence, current, now)
        if refused is not None:
            raise LeaseLost(refused)

    def _schema(self) -> int:
        """The schema version of a journal opened read-only: refused if the
        database is not a journal, or is newer than this code; never changed."""
        latest = self._migrations[-1].version if self._migrations else 0
        with self._tx() as c:
            tables = _tables(c)
            if "journal_schema" not in tables or "records" not in tables:
                raise JournalError("this PostgreSQL database is not a journal (no "
                                   "journal_schema or records table)")
            return _schema_version(c, latest, "upgrade the library")

    def _migrate(self) -> int:
        for i, step in enumerate(self._migrations, start=1):
            if step.version != i:
                raise ValueError(f"migration {i} has version {step.version}: versions must "
                                 "be 1..n")
        latest = self._migrations[-1].version if self._migrations else 0
        with self._tx() as c:
            c.execute("SELECT pg_advisory_xact_lock(%s, %s)", _MIGRATE_LOCK)
            tables = _tables(c)
            if "journal_schema" not in tables:
                if "records" in tables or "leases" in tables:
                    raise JournalError("this PostgreSQL schema has a records or leases table "
                                       "but is not a journal (no journal_schema table)")
                c.execute("CREATE TABLE journal_schema (version INTEGER PRIMARY KEY, "
                          "why TEXT NOT NULL, applied TIMESTAMPTZ NOT NULL DEFAULT now())")
            version = _schema_version(c, latest, "upgrade the library, do not write to it")
            for step in self._migrations:
                if step.version > version:
                    log.info("PostgreSQL journal: migrating to schema %d (%s)", step.version,
                             step.why)
                    c.execute(step.sql.encode())
                    c.execute("INSERT INTO journal_schema (version, why) VALUES (%s, %s)",
                              (step.version, step.why))
                    version = step.version
        return version


def _tables(c: psycopg.Connection[tuple[Any, ...]]) -> set[str]:
    """The tables of the connection's current schema."""
    return {r[0] for r in c.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema()").fetchall()}


def _schema_version(c: psycopg.Connection[tuple[Any, ...]], latest: int, advice: str) -> int:
    """The journal's schema version; refused (with ``advice``) when it is
    newer than ``latest``, the newest this code knows."""
    row = c.execute("SELECT COALESCE(MAX(version), 0) FROM journal_schema").fetchone()
    version = int(row[0]) if row is not None else 0
    if version > latest:
        raise JournalError(
            f"the PostgreSQL journal has schema version {version}, newer than this "
            f"code knows ({latest}): {advice}")
    return version


class PostgresJournal(Journal):
    """The durable journal in PostgreSQL: ``PostgresJournal(dsn)``. The same
    records and reading as :class:`~fsm.journal.Journal` (SQLite); the
    database also keeps the ``(account, symbol)`` leases, so every process
    and machine writing it excludes the others per symbol."""

    def __init__(self, dsn: str, *, connect_timeout: float = 10.0,
                 read_only: bool = False) -> None:
        """``read_only``: read an existing journal only (every transaction of
        the session read-only; no schema created or migrated)."""
        super().__init__(store=PostgresStore(dsn, connect_timeout=connect_timeout,
                                             read_only=read_only))
