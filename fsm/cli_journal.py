"""The ``python -m fsm journal show`` and ``python -m fsm reconcile``
subcommands.

Wired into :mod:`fsm.__main__` by one line, next to ``diagrams``::

    from fsm import cli_journal
    cli_journal.add_parsers(sub)             # registers "journal" and "reconcile"

``add_parsers`` sets ``handler`` (and ``func``) parser defaults to
:func:`run_journal_show` and :func:`run_reconcile`; each returns the exit code.

``journal show [--attempt ID] [--db PATH | --dsn DSN]`` prints every attempt
in a journal (or one, by id or unique prefix) with its history: intents,
transitions with their guards and evidence, recoveries, resolutions and the
outcome. The journal is an SQLite file (``--db``), or a fleet's PostgreSQL
journal (``--dsn``, a libpq connection string or URI; a ``--db`` starting
with ``postgresql://`` or ``postgres://`` is one too). It is read-only:
SQLite opens the file with ``mode=ro``, so it never creates, migrates,
chmods or switches the journal mode of what it is pointed at; PostgreSQL
runs every transaction of its session read-only and migrates nothing. A
file or database that is not a journal is refused in one line, left as it
was.

``reconcile --exchange NAME [--demo | --testnet] --db PATH`` runs one
read-only check of a real account against the journal and prints the
report: API keys come from ``<NAME>_API_KEY`` and ``<NAME>_API_SECRET`` (and
``<NAME>_API_PASSWORD`` where the exchange has one), e.g. ``BYBIT_API_KEY``.
Nothing is sent to the exchange but reads, and nothing is written to the
journal unless ``--record`` is given (then ORPHANED attempts found flat are
recorded as resolved; only then is the journal opened for writing).
Exit code: 0 clean, 1 findings, 2 a query failed or the command could not
run.

Every error is one line on stderr and a non-zero exit, never a traceback;
everything printed passes through :func:`fsm.redact.redact`.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import math
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from fsm.journal import AttemptSummary, Journal, JournalError, JournalRecord, summarize
from fsm.redact import redact

__all__ = [
    "DEFAULT_DB",
    "ExchangeFactory",
    "add_parsers",
    "build_exchange",
    "fail",
    "format_attempt",
    "run_journal_show",
    "run_reconcile",
    "settle_seconds",
]

#: Default journal path: ``$FSM_JOURNAL`` or ``journal.sqlite3`` here.
DEFAULT_DB = Path(os.environ.get("FSM_JOURNAL", "journal.sqlite3"))

#: ``(exchange id, "demo" | "testnet" | None, environment) -> ccxt exchange``
#: (or an awaitable of one). Tests pass one built on recorded payloads.
ExchangeFactory = Callable[[str, str | None, Mapping[str, str]], Any]


def add_parsers(subparsers: Any) -> None:
    """Register ``journal`` (with ``show``) and ``reconcile`` on an argparse
    subparsers object."""
    journal = subparsers.add_parser(
        "journal", help="inspect the durable journal",
        description="Inspect the durable journal of attempts.")
    jsub = journal.add_subparsers(dest="journal_command", required=True)
    show = jsub.add_parser(
        "show", help="print attempts and their histories",
        description="Print every attempt in the journal (or one) with its history.")
    show.add_argument("--attempt", metavar="ID", help="only this attempt (id or unique prefix)")
    where = show.add_mutually_exclusive_group()
    where.add_argument("--db", default=str(DEFAULT_DB), metavar="PATH",
                       help=f"journal file (default: $FSM_JOURNAL or {DEFAULT_DB})")
    where.add_argument("--dsn", metavar="DSN",
                       help="a PostgreSQL journal: libpq connection string or URI, e.g. "
                            "postgresql://reader@db.internal/journal (password in ~/.pgpass "
                            "or PGPASSWORD)")
    show.set_defaults(handler=run_journal_show, func=run_journal_show)

    rec = subparsers.add_parser(
        "reconcile", help="one read-only check of an account against the journal",
        description=(
            "Compare the exchange's positions and stop orders with the journal and print "
            "the report: orphans (no covering stop), positions no attempt knows, ORPHANED "
            "attempts now flat, leftover stops. Read-only. Keys from <NAME>_API_KEY and "
            "<NAME>_API_SECRET. Exit 0 clean, 1 findings, 2 a query failed."))
    rec.add_argument("--exchange", required=True, metavar="NAME",
                     help="ccxt exchange id (bybit, binanceusdm, okx, ...)")
    mode = rec.add_mutually_exclusive_group()
    mode.add_argument("--demo", action="store_true", help="the exchange's demo trading")
    mode.add_argument("--testnet", action="store_true", help="the exchange's testnet")
    rec.add_argument("--db", type=Path, required=True, metavar="PATH", help="journal file")
    rec.add_argument("--settle", type=settle_seconds, default=60.0, metavar="SECONDS",
                     help="ignore attempts with a journal record newer than this (default 60)")
    rec.add_argument("--record", action="store_true",
                     help="record ORPHANED attempts found flat as resolved in the journal")
    rec.set_defaults(handler=run_reconcile, func=run_reconcile)


def settle_seconds(text: str) -> float:
    """``--settle``: a finite number of seconds, 0 to 86400."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= 86400):
        raise argparse.ArgumentTypeError(f"must be between 0 and 86400 seconds, got {text!r}")
    return value


def fail(message: object) -> int:
    """Print one redacted line on stderr; the exit code for "could not run"."""
    text = " ".join(str(message).split())
    print(redact(f"error: {text}"), file=sys.stderr)
    return 2


#: What opening or reading a journal can raise: each is one line, not a traceback.
OPEN_ERRORS: tuple[type[BaseException], ...] = (JournalError, OSError, sqlite3.Error, ValueError)


# -- journal show ---------------------------------------------------------------------------------

#: A ``--db`` starting with one of these is a PostgreSQL DSN, not a file.
PG_SCHEMES: Final = ("postgresql://", "postgres://")


def _read_only(dsn: str | None, db: str) -> Journal:
    """The journal to read: PostgreSQL at ``dsn``, else the SQLite file ``db``."""
    if dsn is not None:
        from fsm.journal_pg import PostgresJournal  # psycopg: the optional extra

        return PostgresJournal(dsn, read_only=True)
    return Journal(Path(db), read_only=True)



def run_journal_show(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """``journal show``: print the attempts in a journal; returns the exit code."""
    out = out if out is not None else sys.stdout
    dsn: str | None = getattr(args, "dsn", None)
    db = str(args.db)
    if dsn is None and db.startswith(PG_SCHEMES):
        dsn = db
    name = "the PostgreSQL journal" if dsn is not None else db
    try:
        with _read_only(dsn, db) as journal:
            attempts = summarize(journal.read())
    except FileNotFoundError:
        return fail(f"no journal at {db}")
    except OPEN_ERRORS as exc:
        return fail(exc)
    wanted: str | None = getattr(args, "attempt", None)
    if wanted:
        exact = [s for s in attempts if s.attempt_id == wanted]
        attempts = exact or [s for s in attempts if s.attempt_id.startswith(wanted)]
        if len(attempts) != 1:
            what = "no attempt" if not attempts else f"{len(attempts)} attempts"
            print(redact(f"{what} matching {wanted!r} in {name}"), file=sys.stderr)
            return 1
    if not attempts:
        print(redact(f"{name}: no attempts"), file=out)
    for i, s in enumerate(attempts):
        if i:
            print(file=out)
        print(redact(format_attempt(s)), file=out)
    return 0


def format_attempt(s: AttemptSummary) -> str:
    """An attempt and its history, for a terminal."""
    r = s.request
    outcome = s.ended.value if s.ended else f"UNFINISHED at {s.state.value}"
    if s.resolved:
        outcome += " (resolved: found flat by the monitor)"
    when = _stamp(s.began_wall)
    lines = [f"attempt {s.attempt_id}  {r.side.value} {r.amount:g} {r.symbol}  "
             f"stop {r.stop_loss:g}  -> {outcome}",
             f"  began {when}, entry client id {s.client_id}"]
    begin = s.records[0]
    for rec in s.records:
        # Offsets by wall clock when recorded: loop times of different
        # processes (before and after a recovery) do not compare.
        if rec.wall is not None and begin.wall is not None:
            offset = rec.wall - begin.wall
        else:
            offset = rec.at - s.began_at
        lines.append("  " + _record_line(rec, offset))
    return "\n".join(lines)


def _record_line(rec: JournalRecord, offset: float) -> str:
    d = rec.data
    head = f"{offset:+9.3f}s  {rec.kind:<10}"
    if rec.kind == "begin":
        return f"{head} {_fields(d, skip={'request'})}"
    if rec.kind == "intent":
        return (f"{head} about to send {d.get('action')} {d.get('client_id')}: "
                f"{_fields(d, skip={'action', 'client_id'})}")
    step = rec.step
    if step is not None:
        return f"{head} {step.describe()}"
    if rec.kind == "end":
        state = d.get("state")
        return f"{head} {getattr(state, 'value', state)}"
    return f"{head} {_fields(d)}"


def _fields(d: Mapping[str, Any], skip: set[str] | None = None) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(d.items()) if k not in (skip or set()))


def _stamp(wall: float | None) -> str:
    if wall is None:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wall))


# -- reconcile -------------------------------------------------------------------------------------


def build_exchange(name: str, mode: str | None, env: Mapping[str, str]) -> Any:
    """A ccxt async exchange with keys from ``env``, in demo or testnet mode."""
    import ccxt.async_support as ccxt_async

    cls = getattr(ccxt_async, name, None)
    if cls is None or not isinstance(cls, type):
        raise SystemExit(f"unknown ccxt exchange id {name!r}")
    prefix = name.upper()
    config: dict[str, Any] = {"enableRateLimit": True}
    for key, var in (("apiKey", "API_KEY"), ("secret", "API_SECRET"),
                     ("password", "API_PASSWORD")):
        value = env.get(f"{prefix}_{var}")
        if value:
            config[key] = value
    if "apiKey" not in config or "secret" not in config:
        raise SystemExit(f"set {prefix}_API_KEY and {prefix}_API_SECRET (read-only keys do)")
    exchange = cls(config)
    if mode == "testnet":
        exchange.set_sandbox_mode(True)
    elif mode == "demo":
        if not hasattr(exchange, "enable_demo_trading"):
            raise SystemExit(f"ccxt has no demo trading mode for {name}")
        exchange.enable_demo_trading(True)
    return exchange


def run_reconcile(
    args: argparse.Namespace,
    *,
    exchange_factory: ExchangeFactory | None = None,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
) -> int:
    """``reconcile``: one monitor pass against a venue; returns the exit code."""
    from fsm.reconcile import ReconcilePolicy

    out = out if out is not None else sys.stdout
    try:
        policy = ReconcilePolicy(settle_time=args.settle, record_resolutions=args.record)
    except ValueError as exc:
        return fail(exc)
    # The journal first: a wrong --db is reported before any exchange is
    # built. Read-only unless --record asks to write resolutions.
    try:
        journal = (Journal(args.db, create=False) if args.record
                   else Journal(args.db, read_only=True))
    except FileNotFoundError:
        return fail(f"no journal at {args.db}")
    except OPEN_ERRORS as exc:
        return fail(exc)
    mode = "demo" if args.demo else "testnet" if args.testnet else None
    factory = exchange_factory if exchange_factory is not None else build_exchange
    with journal:
        try:
            return asyncio.run(_reconcile(args, mode, factory,
                                          env if env is not None else os.environ,
                                          journal, policy, out))
        except (JournalError, sqlite3.Error) as exc:
            return fail(exc)


async def _reconcile(args: argparse.Namespace, mode: str | None, factory: ExchangeFactory,
                     env: Mapping[str, str], journal: Journal, policy: Any,
                     out: TextIO) -> int:
    from adapters.ccxt import CcxtAdapter
    from fsm.reconcile import Reconciler

    exchange = factory(args.exchange, mode, env)
    if inspect.isawaitable(exchange):
        exchange = await exchange
    try:
        report = await Reconciler(CcxtAdapter(exchange), journal, policy=policy).check_once()
    finally:
        await exchange.close()
    print(report.render(), file=out)
    if not report.complete:
        return 2
    return 0 if report.clean else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m fsm.cli_journal``), for when the
    subcommands are not wired into ``python -m fsm``."""
    from fsm.cli_parser import OneLineParser, run_handler

    parser = OneLineParser(prog="python -m fsm.cli_journal")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_handler(args)


if __name__ == "__main__":
    sys.exit(main())
