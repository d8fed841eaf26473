"""The journal: every attempt's request, intents and transitions, written
before their side effects (rule 8).

Three layers, each small:

* :class:`JournalSink` is what the driver writes to. It is synchronous on
  purpose: an intent must be durable *before* the request leaves, and a
  synchronous call cannot be interleaved with the send that follows it.
* :class:`JournalLog` adds what recovery and the reconciliation monitor need:
  reading the records back, and appending notes (``recover``, ``resolve``).
  :class:`MemoryJournal` (tests, the demo; no durability) and :class:`Journal`
  (durable) both implement it, and read back records of the same shape.
* :class:`JournalStore` is the storage backend behind :class:`Journal`:
  append-only, ordered, transactional. :class:`SQLiteStore` (standard
  library ``sqlite3``, WAL) is the default; a PostgreSQL store for a fleet of
  bots sharing one account would implement the same four members and nothing
  in the engine would change.

Time: ``at`` is the writer's event-loop time (monotonic, what deadlines are
measured in); it is *not* comparable across processes. ``wall`` is the wall
clock at the write, for humans and for "how long ago" across restarts.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import math
import os
import sqlite3
import stat
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol, cast, runtime_checkable

import attrs

from fsm.attempt import Transition
from fsm.evidence import Facts
from fsm.fence import Lease, LeaseLost, current_lease, fence_refusal
from fsm.model import Source
from fsm.redact import redact
from fsm.request import OpenRequest
from fsm.table import State, Trigger

__all__ = [
    "KINDS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AttemptSummary",
    "Journal",
    "JournalError",
    "JournalLog",
    "JournalRecord",
    "JournalSink",
    "JournalStore",
    "MemoryJournal",
    "MemoryStore",
    "Migration",
    "NewRecord",
    "SQLiteStore",
    "StepRecord",
    "StoredRecord",
    "decode_record",
    "decode_step",
    "encode_data",
    "encode_step",
    "summarize",
]

log = logging.getLogger("fsm.journal")

#: Record kinds. The first four are written by the driver; ``recover`` by
#: recovery when it takes an unfinished attempt over, ``resolve`` by the
#: reconciliation monitor when an ORPHANED attempt is found flat, ``reconcile``
#: for the monitor's own intents (a protective stop or close it sends).
#: ``alert`` queues an alert (durably, before it is delivered) and
#: ``alert_delivered`` records that the callback returned: recovery delivers
#: again every queued alert without the second (at least once, by
#: ``alert_id``). ``lease`` records which ``(account, symbol)`` lease (owner,
#: fencing token) an opener or a recovery held when it took the attempt up.
KINDS: Final = frozenset(
    {"begin", "intent", "transition", "end", "recover", "resolve", "reconcile", "alert",
     "alert_delivered", "lease"}
)


@attrs.frozen
class JournalRecord:
    """One record, as written and as read back.

    ``data`` is the payload: for ``begin`` it holds ``request`` (an
    :class:`~fsm.request.OpenRequest`) and ``client_id``; for ``end`` its
    ``state`` (a :class:`~fsm.table.State`); otherwise plain JSON values.
    ``seq`` (the store's order) and ``wall`` are set on records read back from
    a durable journal.
    """

    attempt_id: str
    kind: str  # one of KINDS
    at: float
    data: Mapping[str, Any]
    seq: int | None = None
    wall: float | None = None

    @property
    def step(self) -> StepRecord | None:
        """A ``transition`` record decoded (:func:`decode_step`); else None."""
        return decode_step(self.at, self.data) if self.kind == "transition" else None


@attrs.frozen
class StepRecord:
    """A journalled transition, decoded. ``step`` is the transition exactly
    as the attempt's history held it; it is None only for a record written
    by hand without its trigger or source (then ``dest`` and the ids are
    still read)."""

    dest: State
    detail: str
    step: Transition | None
    entry_order_id: str | None = None
    filled: float | None = None
    stop_order_id: str | None = None
    close_order_id: str | None = None

    def describe(self) -> str:
        """The step in one line (as :meth:`Transition.describe`)."""
        if self.step is not None:
            return self.step.describe()
        return f"? --?--> {self.dest.value}: {self.detail}"


def encode_step(step: Transition, facts: Facts) -> dict[str, Any]:
    """The ``transition`` record's data for ``step``, fired over ``facts``
    (plain JSON values; :func:`decode_step` reverses it exactly). Every
    journal backend stores this encoding."""
    entry = facts.entry
    return {
        "trigger": step.trigger.value,
        "source": step.source.value,
        "dest": step.dest.value,
        "guards": [g for g, _ in step.guards],
        "evidence": step.evidence.value if step.evidence else None,
        "detail": step.detail,
        "entry_order_id": entry.order_id if entry else (
            facts.ack.order_id if facts.ack else None),
        "filled": entry.filled if entry else None,
        "stop_order_id": facts.stop.order_id if facts.stop else None,
        "close_order_id": facts.close_order.order_id if facts.close_order else None,
    }


def decode_step(at: float, data: Mapping[str, Any]) -> StepRecord:
    """A ``transition`` record written at ``at`` back into its step: the one
    reader of transition records (recovery, the monitor, ``journal show``
    and the diagrams all read through it). A step is fired only when its
    row's guards all held, so each guard decodes as held."""
    dest = State(_value(data["dest"]))
    step = None
    if "trigger" in data and "source" in data:
        evidence = data.get("evidence")
        step = Transition(
            at=float(data.get("at", at)),
            trigger=Trigger(_value(data["trigger"])),
            source=State(_value(data["source"])),
            dest=dest,
            guards=tuple((g if isinstance(g, str) else str(g[0]), True)
                         for g in data.get("guards", ())),
            evidence=None if evidence is None else Source(_value(evidence)),
            detail=str(data.get("detail", "")),
        )
    filled = data.get("filled")
    return StepRecord(dest, str(data.get("detail", "")), step, data.get("entry_order_id"),
                      None if filled is None else float(filled),
                      data.get("stop_order_id"), data.get("close_order_id"))


def _value(v: Any) -> Any:
    return v.value if isinstance(v, enum.Enum) else v


class JournalError(Exception):
    """The journal cannot be opened or written as asked."""


@runtime_checkable
class JournalSink(Protocol):
    """What the driver writes to: synchronous, so an intent is durable before its send."""

    def begin(
        self, attempt_id: str, request: OpenRequest, client_id: str, at: float
    ) -> None:
        """The attempt exists; nothing has been sent yet."""
        ...

    def intent(self, attempt_id: str, action: str, client_id: str, at: float,
               data: Mapping[str, Any]) -> None:
        """About to send ``action`` ("entry", "stop", "close") with
        ``client_id``. Must be durable when this returns."""
        ...

    def transition(self, attempt_id: str, at: float, data: Mapping[str, Any]) -> None:
        """A transition was taken; ``data`` has trigger, source, dest, guards,
        evidence and the facts that mattered."""
        ...

    def end(self, attempt_id: str, state: State, at: float) -> None:
        """The attempt reached a terminal state."""
        ...


@runtime_checkable
class JournalLog(JournalSink, Protocol):
    """A journal that can be read back and annotated: what recovery
    (:mod:`fsm.recovery`) and the monitor (:mod:`fsm.reconcile`) need."""

    def read(self, attempt_id: str | None = None) -> list[JournalRecord]:
        """Every record (of one attempt, if given), in the order written."""
        ...

    def note(self, attempt_id: str, kind: str, at: float, data: Mapping[str, Any]) -> None:
        """Append a record of ``kind`` (``recover``, ``resolve``,
        ``reconcile``). Durable when this returns, like an intent."""
        ...


# --------------------------------------------------------------------------
# The storage interface
# --------------------------------------------------------------------------


@attrs.frozen
class NewRecord:
    """A record on its way into a store: the payload is already JSON text."""

    attempt_id: str
    kind: str
    at: float
    wall: float
    data: str


@attrs.frozen
class StoredRecord:
    """A record as a store returns it: ``seq`` is the store's order."""

    seq: int
    attempt_id: str
    kind: str
    at: float
    wall: float
    data: str


@runtime_checkable
class JournalStore(Protocol):
    """Where :class:`Journal` keeps its records. The contract, which a new
    backend must keep and must not overstate:

    * **Transactions.** :meth:`append` writes its whole batch in one
      transaction: afterwards either every record of the batch is stored or
      none is (the call raised). When it returns, the batch is *durable*: it
      survives a crash of this process and, for a store that says
      ``durable = True``, of the machine. It is the only way to write.
    * **Append-only.** Stored records are never updated or deleted; a
      correction is a new record.
    * **Ordering.** Each stored record gets a ``seq`` that is strictly
      increasing in commit order and never reused. Records of one batch get
      consecutive seqs in batch order. :meth:`read` returns records in
      ``seq`` order, and every record committed before the call began is in
      its answer. Nothing else is promised: two writers' batches interleave in
      whatever order they commit, and ``at`` values of different writers do
      not compare. (The engine never needs more: one attempt is written by
      one opener at a time.)
    * **Fencing.** A store that also keeps leases
      (:class:`fsm.lease.LeaseStore`) checks ``fence``, when given, in the
      append's own transaction: unless it is the current, unexpired lease
      of its key, the batch is refused with :class:`fsm.lease.LeaseLost`.
    """

    @property
    def durable(self) -> bool:
        """Whether a returned :meth:`append` survives power loss."""
        ...

    @property
    def schema_version(self) -> int:
        """The schema version of the stored records."""
        ...

    def append(self, records: Sequence[NewRecord], *,
               fence: Lease | None = None) -> list[int]:
        """Store ``records`` atomically and durably; return their seqs."""
        ...

    def read(self, attempt_id: str | None = None, after: int = 0) -> list[StoredRecord]:
        """Records with ``seq > after`` (of one attempt, if given), in order."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


# --------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------


@attrs.frozen
class Migration:
    """One schema step: from ``version - 1`` to ``version``."""

    version: int
    why: str
    sql: str


#: The schema, as the steps that build it. A file at version N gets steps
#: N+1.. applied in one transaction when opened; never edit a released step,
#: add one.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the append-only record log", """
        CREATE TABLE records (
            seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order; never reused
            attempt_id TEXT    NOT NULL,
            kind       TEXT    NOT NULL,
            at         REAL    NOT NULL,   -- writer's loop time (monotonic)
            wall       REAL    NOT NULL,   -- wall clock, unix seconds
            data       TEXT    NOT NULL CHECK (json_valid(data))
        );
        CREATE INDEX records_by_attempt ON records (attempt_id, seq);
        CREATE TRIGGER records_no_update BEFORE UPDATE ON records
        BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
        CREATE TRIGGER records_no_delete BEFORE DELETE ON records
        BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
    """),
    Migration(2, "a read-only view of each attempt's outcome, for ad-hoc SQL", """
        CREATE VIEW attempts AS
        SELECT b.attempt_id                                   AS attempt_id,
               json_extract(b.data, '$.request.symbol')       AS symbol,
               json_extract(b.data, '$.request.side')         AS side,
               json_extract(b.data, '$.request.amount')       AS amount,
               b.wall                                         AS began_wall,
               (SELECT json_extract(e.data, '$.state') FROM records e
                 WHERE e.attempt_id = b.attempt_id AND e.kind = 'end'
                 ORDER BY e.seq DESC LIMIT 1)                 AS final_state,
               (SELECT COUNT(*) FROM records r
                 WHERE r.attempt_id = b.attempt_id AND r.kind = 'resolve') > 0
                                                              AS resolved
          FROM records b
         WHERE b.kind = 'begin';
    """),
    Migration(3, "leases on (account, symbol), with fencing tokens", """
        CREATE TABLE leases (
            account TEXT    NOT NULL,
            symbol  TEXT    NOT NULL,
            owner   TEXT    NOT NULL,
            token   INTEGER NOT NULL,  -- strictly increasing per key, never reused
            expires REAL    NOT NULL,  -- unix seconds, this host's clock
            released INTEGER NOT NULL DEFAULT 0,  -- given back, not expired
            PRIMARY KEY (account, symbol)
        );
    """),
)

#: The schema version this code writes.
SCHEMA_VERSION: Final = MIGRATIONS[-1].version

#: ``PRAGMA application_id``: marks a file as this journal, so that opening
#: some other SQLite database by mistake fails instead of adding tables to it.
_APPLICATION_ID: Final = 0x53504A31  # "SPJ1"

_SYNC_MODES: Final = ("FULL", "EXTRA", "NORMAL")


class SQLiteStore:
    """A :class:`JournalStore` in one SQLite file.

    * Created with owner-only permissions (0600); SQLite creates its ``-wal``
      and ``-shm`` files with the same mode. An existing file readable by
      others is tightened, with a warning.
    * WAL mode: readers (``journal show``, the monitor) never block the writer.
    * ``synchronous=FULL`` by default: in WAL mode that syncs the log on every
      commit, so a returned :meth:`append` survives power loss, not only a
      crash of the process (``NORMAL`` would keep only the latter).
    * ``create=False`` opens an existing journal only.
    * ``read_only=True`` (what ``journal show`` and a read-only monitor use)
      opens an existing file through SQLite's ``mode=ro``: it never creates
      the file, never changes its permissions or journal mode, never
      migrates it, and refuses anything that is not a journal (a directory,
      a file that is not SQLite, another program's database) with a
      :class:`JournalError` before reading a record. :meth:`append` then
      raises :class:`JournalError`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        create: bool = True,
        busy_timeout: float = 5.0,
        migrations: Sequence[Migration] = MIGRATIONS,
        read_only: bool = False,
        lease_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = lease_clock
        if synchronous.upper() not in _SYNC_MODES:
            raise ValueError(f"synchronous must be one of {_SYNC_MODES}, got {synchronous!r}")
        self.path = Path(path)
        self._sync = synchronous.upper()
        self._migrations = tuple(migrations)
        self.read_only = read_only
        _check_migrations(self._migrations)
        if read_only:
            self._conn: sqlite3.Connection | None = None
            self._version = 0
            self._open_read_only(busy_timeout)
            return
        _prepare_file(self.path, create=create)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"{self.path}: cannot switch to WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous={self._sync}")
            self._version = self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _open_read_only(self, busy_timeout: float) -> None:
        path = self.path
        if not path.exists():
            raise FileNotFoundError(f"no journal at {path}")
        if not path.is_file():
            raise JournalError(f"{path} is not a journal: not a regular file")
        uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout)
        except sqlite3.Error as exc:
            raise JournalError(f"{path}: cannot open read-only: {exc}") from exc
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise JournalError(f"{path} is not a journal: {exc}") from exc
        latest = self._migrations[-1].version if self._migrations else 0
        problem = None
        if app_id != _APPLICATION_ID:
            problem = (f"{path} is not a journal (an empty file or another program's "
                       f"SQLite database: application_id {app_id:#x})")
        elif version > latest:
            problem = (f"{path} has journal schema version {version}, newer than this "
                       f"code knows ({latest}): upgrade the library")
        elif version < 1:
            problem = f"{path} is a journal with no schema yet"
        if problem is not None:
            conn.close()
            raise JournalError(problem)
        self._conn, self._version = conn, int(version)

    @property
    def durable(self) -> bool:
        """Whether a returned append survives power loss (FULL or EXTRA)."""
        return self._sync in ("FULL", "EXTRA")

    @property
    def schema_version(self) -> int:
        """The schema version of the file."""
        return self._version

    def append(self, records: Sequence[NewRecord], *,
               fence: Lease | None = None) -> list[int]:
        """Store ``records`` in one transaction, durably; return their seqs.
        Refused with :class:`~fsm.fence.LeaseLost` if ``fence`` is not the
        key's current, unexpired lease."""
        conn = self._writable()
        seqs: list[int] = []
        with self._transaction(conn):
            if fence is not None:
                self._check_fence(conn, fence)
            for r in records:
                cur = conn.execute(
                    "INSERT INTO records (attempt_id, kind, at, wall, data) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (r.attempt_id, r.kind, r.at, r.wall, r.data),
                )
                assert cur.lastrowid is not None
                seqs.append(cur.lastrowid)
        return seqs

    def read(self, attempt_id: str | None = None, after: int = 0) -> list[StoredRecord]:
        """Records with ``seq > after`` (of one attempt, if given), in order."""
        conn = self._open()
        sql = "SELECT seq, attempt_id, kind, at, wall, data FROM records WHERE seq > ?"
        args: tuple[object, ...] = (after,)
        if attempt_id is not None:
            sql += " AND attempt_id = ?"
            args = (after, attempt_id)
        rows = conn.execute(sql + " ORDER BY seq", args).fetchall()
        return [StoredRecord(*row) for row in rows]

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- leases (fsm.lease.LeaseStore), on this host's clock ------------------------

    def acquire(self, account: str, symbol: str, owner: str,
                duration: float) -> Lease | None:
        """Take the key if free or expired (a new token); ``None`` if held."""
        conn = self._writable()
        with self._transaction(conn):
            now = self._clock()
            row = self._lease_row(conn, account, symbol)
            if row is not None and row.expires > now:
                return None
            released = conn.execute("SELECT released FROM leases WHERE account = ? AND "
                                    "symbol = ?", (account, symbol)).fetchone()
            lease = Lease(account, symbol, owner, (row.token if row else 0) + 1,
                          now + duration, taken_over=bool(released and not released[0]))
            conn.execute("INSERT OR REPLACE INTO leases (account, symbol, owner, token, expires, "
                         "released) VALUES (?, ?, ?, ?, ?, 0)",
                         (account, symbol, owner, lease.token, lease.expires))
        return lease

    def renew(self, lease: Lease, duration: float) -> Lease:
        """Extend a current, unexpired lease; :class:`~fsm.fence.LeaseLost` otherwise."""
        conn = self._writable()
        with self._transaction(conn):
            self._check_fence(conn, lease)
            expires = self._clock() + duration
            conn.execute("UPDATE leases SET expires = ? WHERE account = ? AND symbol = ? "
                         "AND token = ?", (expires, lease.account, lease.symbol, lease.token))
        return attrs.evolve(lease, expires=expires)

    def release(self, lease: Lease) -> None:
        """Give the lease back now, if it is still current (the token stays)."""
        conn = self._writable()
        with self._transaction(conn):
            conn.execute("UPDATE leases SET expires = MIN(expires, ?), released = 1 WHERE "
                         "account = ? AND symbol = ? AND token = ?",
                         (self._clock(), lease.account, lease.symbol, lease.token))

    def holder(self, account: str, symbol: str) -> Lease | None:
        """The key's current row, live or expired."""
        return self._lease_row(self._open(), account, symbol)

    def _lease_row(self, conn: sqlite3.Connection, account: str, symbol: str) -> Lease | None:
        row = conn.execute("SELECT owner, token, expires FROM leases WHERE account = ? AND "
                           "symbol = ?", (account, symbol)).fetchone()
        return Lease(account, symbol, row[0], int(row[1]), float(row[2])) if row else None

    def _check_fence(self, conn: sqlite3.Connection, fence: Lease) -> None:
        row = self._lease_row(conn, fence.account, fence.symbol)
        refused = fence_refusal(fence, row, self._clock())
        if refused is not None:
            raise LeaseLost(refused)

    # -- internals ----------------------------------------------------------------

    def _writable(self) -> sqlite3.Connection:
        if self.read_only:
            raise JournalError(f"{self.path}: the journal is open read-only")
        return self._open()

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JournalError(f"{self.path}: the journal is closed")
        return self._conn

    @staticmethod
    @contextlib.contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front, so two writers queue on
        # busy_timeout instead of failing half-way through a batch.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back (a full disk does): a second
            # ROLLBACK would then raise and hide the real error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _migrate(self, conn: sqlite3.Connection) -> int:
        latest = self._migrations[-1].version if self._migrations else 0
        with self._transaction(conn):
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if app_id == 0 and version == 0 and tables == 0:
                conn.execute(f"PRAGMA application_id={_APPLICATION_ID}")
            elif app_id != _APPLICATION_ID:
                raise JournalError(f"{self.path} is an SQLite database but not a journal "
                                   f"(application_id {app_id:#x})")
            if version > latest:
                raise JournalError(
                    f"{self.path} has journal schema version {version}, newer than this "
                    f"code knows ({latest}): upgrade the library, do not write to it")
            for step in self._migrations:
                if step.version > version:
                    log.info("journal %s: migrating to schema %d (%s)", self.path,
                             step.version, step.why)
                    for statement in _statements(step.sql):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={step.version}")
                    version = step.version
        return int(version)


def _check_migrations(steps: Sequence[Migration]) -> None:
    for i, step in enumerate(steps, start=1):
        if step.version != i:
            raise ValueError(f"migration {i} has version {step.version}: versions must be 1..n")


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (``sqlite3.execute`` runs one at a
    time, and ``executescript`` would commit our transaction)."""
    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement in migration: {buf.strip()[:60]!r}")
    return out


def _prepare_file(path: Path, *, create: bool) -> None:
    """Create the file owner-only (0600) before SQLite opens it, or check an
    existing one."""
    if not create and not path.exists():
        raise FileNotFoundError(f"no journal at {path}")
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    if not create:
        flags &= ~os.O_CREAT
    fd = os.open(path, flags, 0o600)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            log.warning("journal %s was readable by others (mode %o); setting 0600", path, mode)
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# The durable journal
# --------------------------------------------------------------------------


class Journal:
    """The durable :class:`JournalLog`: ``Journal(path)`` opens (or creates)
    an SQLite journal (``read_only=True``: see :class:`SQLiteStore`);
    ``Journal(store=...)`` uses any :class:`JournalStore`.

    Every call appends one record in its own transaction and returns only
    once it is durable, so an intent is on disk before the request it
    announces leaves. Records read back have the same shape as
    :class:`MemoryJournal`'s (the request is an :class:`OpenRequest`, an end's
    state a :class:`State`), plus ``seq`` and ``wall``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        store: JournalStore | None = None,
        create: bool = True,
        synchronous: str = "FULL",
        wall_clock: Callable[[], float] = time.time,
        read_only: bool = False,
    ) -> None:
        if store is None:
            if path is None:
                raise TypeError("Journal needs a path or a store")
            store = SQLiteStore(path, create=create, synchronous=synchronous,
                                read_only=read_only)
        elif path is not None:
            raise TypeError("give a path or a store, not both")
        self.store: JournalStore = store
        self._wall = wall_clock

    @property
    def path(self) -> Path | None:
        """The file of an SQLite-backed journal, else None."""
        p = getattr(self.store, "path", None)
        return p if isinstance(p, Path) else None

    # -- JournalSink --------------------------------------------------------------

    def begin(self, attempt_id: str, request: OpenRequest, client_id: str, at: float) -> None:
        """Record that the attempt exists; nothing has been sent yet."""
        self._append(attempt_id, "begin", at,
                     {"request": _request_dict(request), "client_id": client_id})

    def intent(
        self, attempt_id: str, action: str, client_id: str, at: float, data: Mapping[str, Any]
    ) -> None:
        """Record that ``action`` is about to be sent; durable on return."""
        self._append(attempt_id, "intent", at, {"action": action, "client_id": client_id, **data})

    def transition(self, attempt_id: str, at: float, data: Mapping[str, Any]) -> None:
        """Record a transition (:func:`encode_step` data)."""
        self._append(attempt_id, "transition", at, data)

    def end(self, attempt_id: str, state: State, at: float) -> None:
        """Record that the attempt reached a terminal state."""
        self._append(attempt_id, "end", at, {"state": state.value})

    # -- JournalLog ---------------------------------------------------------------

    def note(self, attempt_id: str, kind: str, at: float, data: Mapping[str, Any]) -> None:
        """Append a record of ``kind``; durable on return."""
        _check_kind(kind)
        self._append(attempt_id, kind, at, data)

    def read(self, attempt_id: str | None = None) -> list[JournalRecord]:
        """Every record (of one attempt, if given), decoded, in the order written."""
        return [decode_record(r) for r in self.store.read(attempt_id)]

    # -- lifetime -----------------------------------------------------------------

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _append(self, attempt_id: str, kind: str, at: float, data: Mapping[str, Any]) -> None:
        batch = [NewRecord(attempt_id, kind, float(at), self._wall(), encode_data(data))]
        fence = current_lease()
        if fence is None:
            self.store.append(batch)
        else:  # the store refuses it unless this is the key's current lease
            self.store.append(batch, fence=fence)


class MemoryStore:
    """A :class:`JournalStore` in memory (no durability): records are kept
    as the same JSON text a durable store keeps."""

    durable = False
    schema_version = SCHEMA_VERSION

    def __init__(self) -> None:
        self._records: list[StoredRecord] = []

    def append(self, records: Sequence[NewRecord], *,
               fence: Lease | None = None) -> list[int]:
        """Keep ``records`` (at once); return their seqs. It keeps no leases,
        so no opener holds one over it and ``fence`` is never checked."""
        start = len(self._records) + 1
        self._records.extend(StoredRecord(start + i, r.attempt_id, r.kind, r.at, r.wall, r.data)
                             for i, r in enumerate(records))
        return list(range(start, start + len(records)))

    def read(self, attempt_id: str | None = None, after: int = 0) -> list[StoredRecord]:
        """Records with ``seq > after`` (of one attempt, if given), in order."""
        return [r for r in self._records[after:]
                if attempt_id is None or r.attempt_id == attempt_id]

    def close(self) -> None:
        """Nothing to release."""


class MemoryJournal(Journal):
    """An in-memory :class:`JournalLog` (no durability): for tests and demos.
    It encodes and decodes every record exactly as :class:`Journal` does, so
    what a test reads back is what a durable journal would return."""

    def __init__(self, *, wall_clock: Callable[[], float] = time.time) -> None:
        super().__init__(store=MemoryStore(), wall_clock=wall_clock)

    @property
    def records(self) -> list[JournalRecord]:
        """Every record, decoded, in the order written."""
        return self.read()

    def for_attempt(self, attempt_id: str) -> list[JournalRecord]:
        """The records of one attempt, decoded, in order."""
        return self.read(attempt_id)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown journal record kind {kind!r} (known: {sorted(KINDS)})")


def _request_dict(r: OpenRequest) -> dict[str, Any]:
    return {"symbol": r.symbol, "side": r.side.value, "amount": r.amount,
            "stop_loss": r.stop_loss, "reference_price": r.reference_price}


def _json_default(value: object) -> Any:
    """JSON for what the engine puts in records: enums by value, attrs
    records as dicts, non-finite floats as strings (JSON has none)."""
    if isinstance(value, OpenRequest):
        return _request_dict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if attrs.has(type(value)):
        return attrs.asdict(cast(Any, value), recurse=True,
                            value_serializer=lambda _i, _a, v: _plain(v))
    if isinstance(value, frozenset | set | tuple):
        return list(value)
    raise TypeError(f"cannot journal a {type(value).__name__}: {value!r}")


def _plain(v: object) -> object:
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def encode_data(data: Mapping[str, Any]) -> str:
    """A record's payload as the JSON text every store keeps (enums by value,
    an :class:`~fsm.request.OpenRequest` as a dict). Secrets never reach
    the disk: a detail may quote an exchange error, and a ccxt error may
    quote a signed URL."""
    return redact(json.dumps(data, default=_json_default, allow_nan=False,
                             sort_keys=True, separators=(",", ":")))


def decode_record(r: StoredRecord) -> JournalRecord:
    """A stored record read back: the request of a ``begin`` as an
    :class:`~fsm.request.OpenRequest`, the state of an ``end`` as a
    :class:`~fsm.table.State`, a transition decodable by
    :attr:`JournalRecord.step`."""
    return _decode(r)


def _decode(r: StoredRecord) -> JournalRecord:
    data: dict[str, Any] = json.loads(r.data)
    if r.kind == "begin" and isinstance(data.get("request"), dict):
        data["request"] = OpenRequest(**data["request"])
    elif r.kind == "end" and isinstance(data.get("state"), str):
        data["state"] = State(data["state"])
    return JournalRecord(r.attempt_id, r.kind, r.at, data, seq=r.seq, wall=r.wall)


# --------------------------------------------------------------------------
# Reading: one summary per attempt
# --------------------------------------------------------------------------


@attrs.frozen
class AttemptSummary:
    """What the journal says about one attempt, folded from its records.

    ``state`` is the destination of the last journalled transition (``NEW``
    if none); ``ended`` the state of its ``end`` record, if written.
    ``intents`` maps each action ("entry", "stop", "close") to the data of its
    latest intent: the presence of a key means "this may have been sent".
    """

    attempt_id: str
    request: OpenRequest
    client_id: str
    state: State
    ended: State | None
    intents: Mapping[str, Mapping[str, Any]]
    rolled_back: bool  # some transition entered ROLLING_BACK
    entry_order_id: str | None
    filled: float | None
    stop_order_id: str | None
    close_order_id: str | None
    resolved: bool  # the monitor found this ORPHANED attempt flat
    recovered: int  # how many times recovery took it over
    began_at: float
    began_wall: float | None
    last_wall: float | None
    records: tuple[JournalRecord, ...]
    #: queued alerts (their ``alert`` records' data) not yet recorded delivered
    alerts_pending: tuple[Mapping[str, Any], ...] = ()
    #: the account of its latest ``lease`` record or recovery (``None``: written without
    #: leases, by a single process)
    account: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the attempt's end record was written."""
        return self.ended is not None

    @property
    def exposure(self) -> float:
        """The most this attempt can have added: the journalled fill when
        known, else the requested amount."""
        if self.filled is not None and self.filled > 0:
            return min(self.filled, self.request.amount)
        return self.request.amount


def summarize(records: Sequence[JournalRecord]) -> list[AttemptSummary]:
    """Fold records into one summary per attempt that has a ``begin``, in
    the order the attempts began. Records of ids without a ``begin`` (a note
    about something unknown) are skipped."""
    by_id: dict[str, list[JournalRecord]] = {}
    for r in records:
        by_id.setdefault(r.attempt_id, []).append(r)
    out: list[AttemptSummary] = []
    for attempt_id, recs in by_id.items():
        begin = next((r for r in recs if r.kind == "begin"), None)
        if begin is not None:
            out.append(_Fold(begin).over(attempt_id, recs))
    return out


class _Fold:
    """One attempt's records, folded in order."""

    _IDS = ("entry_order_id", "filled", "stop_order_id", "close_order_id")

    def __init__(self, begin: JournalRecord) -> None:
        request = begin.data["request"]
        self.begin = begin
        self.request = request if isinstance(request, OpenRequest) else OpenRequest(**request)
        self.state: State = State.NEW
        self.ended: State | None = None
        self.intents: dict[str, Mapping[str, Any]] = {}
        self.rolled_back = self.resolved = False
        self.recovered = 0
        self.ids: dict[str, Any] = {}
        self.queued: dict[str, Mapping[str, Any]] = {}
        self.account: str | None = None

    def over(self, attempt_id: str, recs: list[JournalRecord]) -> AttemptSummary:
        fold = {"transition": self._transition, "intent": self._intent, "end": self._end,
                "resolve": self._resolve, "recover": self._recover, "alert": self._alert,
                "alert_delivered": self._alert_delivered, "lease": self._lease}
        for r in recs:
            fold.get(r.kind, self._other)(r)
        filled = self.ids.get("filled")
        return AttemptSummary(
            attempt_id=attempt_id, request=self.request,
            client_id=str(self.begin.data["client_id"]), state=self.state, ended=self.ended,
            intents=self.intents, rolled_back=self.rolled_back,
            entry_order_id=self.ids.get("entry_order_id"),
            filled=float(filled) if filled is not None else None,
            stop_order_id=self.ids.get("stop_order_id"),
            close_order_id=self.ids.get("close_order_id"), resolved=self.resolved,
            recovered=self.recovered, began_at=self.begin.at, began_wall=self.begin.wall,
            last_wall=recs[-1].wall, records=tuple(recs),
            alerts_pending=tuple(self.queued.values()), account=self.account,
        )

    def _transition(self, r: JournalRecord) -> None:
        rec = r.step
        assert rec is not None
        self.state = rec.dest
        self.rolled_back = self.rolled_back or self.state is State.ROLLING_BACK
        for key in self._IDS:
            value = getattr(rec, key)
            if value is not None:
                self.ids[key] = value

    def _intent(self, r: JournalRecord) -> None:
        self.intents[str(r.data["action"])] = r.data

    def _end(self, r: JournalRecord) -> None:
        self.ended = State(r.data["state"])

    def _resolve(self, r: JournalRecord) -> None:
        self.resolved = True

    def _recover(self, r: JournalRecord) -> None:
        self.recovered += 1
        self._lease(r)

    def _lease(self, r: JournalRecord) -> None:
        """A ``lease`` record, or a recovery under a lease: whose account."""
        if "account" in r.data:
            self.account = str(r.data["account"])

    def _alert(self, r: JournalRecord) -> None:
        self.queued[str(r.data["alert_id"])] = r.data

    def _alert_delivered(self, r: JournalRecord) -> None:
        self.queued.pop(str(r.data["alert_id"]), None)

    def _other(self, r: JournalRecord) -> None:
        """``begin`` and ``reconcile`` change nothing in the summary."""
