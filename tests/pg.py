"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` in a
temporary directory, listening on a Unix socket in that directory only (no
TCP port), stopped and removed afterwards.

PostgreSQL refuses to run as root; as root (CI) the server runs as the
unprivileged user ``nobody`` (``runuser``), and the directory is handed to it.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs

from fsm.journal import Journal


def find_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: ``$PG_BIN`` if set
    (only there), else Debian's ``/usr/lib/postgresql/<version>/bin``
    (newest), else ``PATH``."""
    env = os.environ.get("PG_BIN")
    if env:  # exactly there, or nowhere
        ok = (Path(env) / "initdb").exists() and (Path(env) / "pg_ctl").exists()
        return Path(env) if ok else None
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(Path(p).parent.name)
                         if Path(p).parent.name.isdigit() else 0, reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).parent))
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


@attrs.define
class Server:
    """A running server: ``dsn(dbname)`` connects to one of its databases."""

    root: Path
    socket_dir: Path
    user: str = "postgres"
    _ids: Iterator[int] = attrs.field(factory=itertools.count)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} dbname={dbname} user={self.user}"

    def new_database(self, prefix: str = "t") -> str:
        """A fresh empty database; its DSN."""
        import psycopg

        name = f"{prefix}{os.getpid()}_{next(self._ids)}"
        with psycopg.connect(self.dsn(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.dsn(name)


def open_journal(where: str, *, read_only: bool = False) -> Journal:
    """A journal at ``where``: a PostgreSQL DSN (``host=...`` or a
    ``postgresql://`` URI) or an SQLite path; ``read_only`` as ``journal
    show`` opens one."""
    if where.startswith(("postgresql://", "postgres://", "host=")):
        from fsm.journal_pg import PostgresJournal

        return PostgresJournal(where, read_only=read_only)
    return Journal(where, read_only=read_only)


def _as_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix (and uid/gid) to run the server unprivileged."""
    if os.geteuid() != 0:
        return [], None, None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root and runuser is missing: cannot start PostgreSQL")
    pw = pwd.getpwnam("nobody")
    return [runuser, "-u", "nobody", "--"], pw.pw_uid, pw.pw_gid


@contextlib.contextmanager
def server(bin_dir: Path, *, fsync: bool = False) -> Iterator[Server]:
    """Start a server (``fsync`` off by default: tests need no power-loss
    durability; benchmarks turn it on) and stop it afterwards."""
    prefix, uid, gid = _as_user()
    root = Path(tempfile.mkdtemp(prefix="pgtest-"))
    try:
        if uid is not None and gid is not None:
            os.chown(root, uid, gid)
        root.chmod(0o700)
        data = root / "data"
        env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
        subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                        "-A", "trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, env=env, timeout=120)
        opts = (f"-k {root} -c listen_addresses='' -c fsync={'on' if fsync else 'off'} "
                "-c max_connections=50 -c shared_buffers=32MB")
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l",
                        str(root / "log"), "-o", opts, "-w", "-t", "60", "start"],
                       check=True, capture_output=True, env=env, timeout=90)
        try:
            yield Server(root, root)
        finally:
            subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m",
                            "immediate", "-w", "-t", "60", "stop"],
                           capture_output=True, env=env, timeout=90)
    finally:
        shutil.rmtree(root, ignore_errors=True)
