"""What the journal costs per attempt, for each store: ``MemoryJournal``,
SQLite (``Journal(path)``, ``synchronous=FULL``) and PostgreSQL
(``PostgresJournal(dsn)``, a throwaway local server with ``fsync`` on, or
``--dsn``).

* **Write latency per transition**: one ``transition`` record, as the driver
  writes it, under a held ``(account, symbol)`` lease (so the durable stores
  check the fencing token in the write's transaction, as in real use);
  median and p99 wall microseconds.
* **Attempts per second** with 1 and with 8 concurrent processes, each on
  its own symbol, every process with its own connection to one shared
  journal; the exchange answers at once (``benchmarks.cost.InstantExchange``)
  so what is measured is the engine plus its journal and leases. Wall
  seconds: the journal's cost is mostly waiting for the disk or the server.

Ratios, not verdicts: the figures depend on the disk and the machine; the
ratios between stores are the point. The machine's cores are shared, so 8
processes on 2 cores measure contention as much as the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapters.simulated.runs import quiet_engine_log
from benchmarks.cost import InstantExchange
from fsm import MemoryJournal, OpenRequest, Policy, PositionOpener
from fsm.journal import Journal, JournalLog
from fsm.lease import LeaseStore, hold

__all__ = ["markdown", "measure"]

_STEP = {"trigger": "fill_confirmed", "source": "FETCHED", "dest": "VERIFIED",
         "guards": ["filled_on_our_side", "position_confirmed"], "evidence": "order",
         "detail": "filled 43 of 43 on our side; position long 43 confirmed by the stream",
         "entry_order_id": "1234567890", "filled": 43.0, "stop_order_id": None,
         "close_order_id": None}


def _open(kind: str, where: str) -> JournalLog:
    if kind == "memory":
        return MemoryJournal()
    if kind == "sqlite":
        return Journal(where)
    from fsm.journal_pg import PostgresJournal

    return PostgresJournal(where)


def write_latency(kind: str, where: str, n: int) -> dict[str, float]:
    """Median and p99 microseconds of one transition write, fenced."""
    journal = _open(kind, where)
    policy = Policy(lease_duration=600.0, lease_renew=300.0)

    async def go() -> list[float]:
        store = getattr(journal, "store", None)
        cm: Any = (hold(store, "bench", "LAT/USDT:USDT", "bench", policy)
                   if isinstance(store, LeaseStore) else contextlib.nullcontext())
        out = []
        async with cm:
            for i in range(n):
                t0 = time.perf_counter()
                journal.transition(f"lat{i // 8:020d}", float(i), _STEP)
                out.append(time.perf_counter() - t0)
        return out

    times = asyncio.run(go())
    close = getattr(journal, "close", None)
    if close is not None:
        close()
    times.sort()
    return {"p50_us": round(statistics.median(times) * 1e6, 1),
            "p99_us": round(times[int(0.99 * (len(times) - 1))] * 1e6, 1), "n": n}


def _process(kind: str, where: str, symbol: str, n: int, barrier: Any,
             out: Any) -> None:
    """One bot process: ``n`` attempts on its own symbol, after the barrier."""
    with quiet_engine_log():
        journal = _open(kind, where)
        counter = itertools.count()
        opener = PositionOpener(InstantExchange(), journal=journal,
                                ids=lambda: f"{os.getpid():08x}{next(counter):016x}")
        request = OpenRequest(symbol=symbol, side="buy", amount=43, stop_loss=0.129,
                              reference_price=0.1358)

        failed: Counter[str] = Counter()

        async def go() -> None:
            for _ in range(n):
                try:
                    await opener.open(request)
                except Exception as exc:  # noqa: BLE001 - counted: a store that cannot keep up says so
                    failed[type(exc).__name__] += 1

        barrier.wait()
        t0 = time.perf_counter()
        asyncio.run(go())
        out.put((time.perf_counter() - t0, dict(failed)))
        close = getattr(journal, "close", None)
        if close is not None:
            close()


def attempts_per_s(kind: str, where: str, processes: int, n: int
                   ) -> tuple[float, dict[str, int]]:
    """Attempts per wall second of ``processes`` processes together (the
    memory journal is per process, so it shares nothing), and the attempts
    that raised, by exception (a journal that could not take the load)."""
    if kind == "memory" and processes == 1:
        with quiet_engine_log():
            journal = MemoryJournal()
            opener = PositionOpener(InstantExchange(), journal=journal)
            request = OpenRequest(symbol="P0/USDT:USDT", side="buy", amount=43,
                                  stop_loss=0.129, reference_price=0.1358)

            async def go() -> None:
                for _ in range(n):
                    await opener.open(request)

            t0 = time.perf_counter()
            asyncio.run(go())
            return n / (time.perf_counter() - t0), {}
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    out: Any = ctx.Queue()
    procs = [ctx.Process(target=_process, args=(kind, where, f"P{i}/USDT:USDT", n, barrier, out))
             for i in range(processes)]
    for p in procs:
        p.start()
    barrier.wait(120)
    # Each process times its own attempts, from the common start to its last
    # attempt (its start-up and shut-down are not the journal's cost).
    got = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(600)
    failed: Counter[str] = Counter()
    for _, f in got:
        failed.update(f)
    return processes * n / max(w for w, _ in got), dict(failed)


@contextlib.contextmanager
def _postgres(dsn: str | None) -> Iterator[str | None]:
    if dsn is not None:
        yield dsn
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        yield None
        return
    from tests import pg

    bin_dir = pg.find_bin()
    if bin_dir is None:
        yield None
        return
    with pg.server(bin_dir, fsync=True) as server:
        yield server.new_database("bench")


def measure(quick: bool = False, dsn: str | None = None) -> dict[str, Any]:
    """Every store's figures; a store that cannot run is reported as such."""
    writes, attempts = (200, 30) if quick else (1000, 150)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, _postgres(dsn) as pg_dsn:
        places = {"memory": "", "sqlite": str(Path(tmp) / "bench.sqlite3"), "postgres": pg_dsn}
        for kind, where in places.items():
            if where is None:
                results[kind] = {"skipped": "no PostgreSQL server (or psycopg) here"}
                continue
            row: dict[str, Any] = {"write": write_latency(kind, where, writes)}
            for procs in (1, 8):
                rate, failed = attempts_per_s(kind, where, procs, attempts)
                row[f"attempts_per_s_{procs}"] = round(rate, 1)
                row[f"failed_{procs}"] = failed
            results[kind] = row
            print(f"{kind:>9}: transition write p50 {row['write']['p50_us']} µs, p99 "
                  f"{row['write']['p99_us']} µs; attempts/s 1 process "
                  f"{row['attempts_per_s_1']}, 8 processes {row['attempts_per_s_8']} "
                  f"(failed: {row['failed_1'] or 'none'}, {row['failed_8'] or 'none'})",
                  flush=True)
    return results


def markdown(results: dict[str, Any], command: str) -> str:
    """The results as a Markdown table, ratios against the memory journal."""
    lines = ["# Journal cost per store", "", f"`{command}`; ratios against the memory "
             "journal (no durability) in brackets.", "",
             "| store | transition write p50 | p99 | attempts/s, 1 process | "
             "attempts/s, 8 processes (1 symbol each) | attempts that raised (1 / 8) |",
             "|---|---|---|---|---|---|"]
    base = results.get("memory", {})
    for kind, row in results.items():
        if "skipped" in row:
            lines.append(f"| {kind} | skipped: {row['skipped']} | | | | |")
            continue

        def ratio(key: str, row: dict[str, Any] = row) -> str:
            b = base.get(key)
            return f" ({row[key] / b:.2g}x)" if b else ""

        w, bw = row["write"], base.get("write", {})
        wr = f" ({w['p50_us'] / bw['p50_us']:.0f}x)" if bw.get("p50_us") else ""
        lines.append(f"| {kind} | {w['p50_us']:.0f} µs{wr} | {w['p99_us']:.0f} µs | "
                     f"{row['attempts_per_s_1']:.0f}{ratio('attempts_per_s_1')} | "
                     f"{row['attempts_per_s_8']:.0f}{ratio('attempts_per_s_8')} | "
                     f"{_failed(row['failed_1'])} / {_failed(row['failed_8'])} |")
    return "\n".join(lines) + "\n"


def _failed(f: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in f.items()) or "none"

