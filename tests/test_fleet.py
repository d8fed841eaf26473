"""Proof with real processes: several bot processes share one journal (each
store) and one exchange that outlives them (the simulator served over HTTP
on 127.0.0.1, ``tests/emulator.py``).

* Opens on one symbol at once: one attempt at a time per lease, the others
  wait, or refuse with :class:`~fsm.lease.LeaseBusy` having sent nothing.
* Processes SIGKILLed at random points and restarted with ``recover()``: no
  attempt driven by two processes, the laws hold on the ground truth (net
  exposure, only entries open exposure, every protected fill covered by its
  stop) and the ground truth agrees with the journal.
* A holder paused (SIGSTOP) past its lease's expiry, taken over, then
  resumed: its late write is refused and it sends nothing more.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.simulated import SimConfig
from fsm.journal import JournalRecord, summarize
from fsm.table import State
from tests.emulator import EmulatorServer
from tests.pg import open_journal

ROOT = Path(__file__).resolve().parents[1]
SYMBOL = "AVL/USDT:USDT"
AMOUNT = 43.0

pytestmark = pytest.mark.timeout(600)

_LIVE: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_process_left_behind() -> Iterator[None]:
    """A failing test leaves no bot process running (paused ones included)."""
    yield
    while _LIVE:
        proc = _LIVE.pop()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)


class Worker:
    """One bot process; its JSON lines are collected as they come."""

    def __init__(self, args: dict[str, Any]) -> None:
        # Its stderr is kept, so that a worker that dies says why.
        self.errors = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the worker
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fleet_worker", json.dumps(args)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors,
            text=True)
        _LIVE.append(self.proc)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.said: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def next(self, timeout: float = 60.0) -> dict[str, Any]:
        try:
            msg = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the worker said nothing for {timeout:g}s (exit code "
                                 f"{self.proc.poll()}); its stderr ends: "
                                 f"{self.stderr_tail()}") from None
        self.said.append(msg)
        return msg

    def stderr_tail(self, chars: int = 2000) -> str:
        """The end of what the process wrote on stderr."""
        self.errors.seek(0)
        return self.errors.read()[-chars:]

    def heard(self) -> list[dict[str, Any]]:
        """Everything said so far (without waiting)."""
        while True:
            try:
                self.said.append(self.lines.get_nowait())
            except queue.Empty:
                return self.said

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        """Everything the process said, once it exited and its output was
        read to the end (not "whatever arrived within some fraction of a
        second": a loaded machine delivers the last line late)."""
        self.proc.wait(timeout)
        self._reader.join(timeout)
        assert not self._reader.is_alive(), "the worker's output did not end"
        while True:
            try:
                self.said.append(self.lines.get_nowait())
            except queue.Empty:
                return self.said

    def kill(self, sig: int = signal.SIGKILL) -> None:
        os.kill(self.proc.pid, sig)


def _start(args: dict[str, Any], n: int) -> list[Worker]:
    workers = [Worker(args) for _ in range(n)]
    for w in workers:
        assert w.next()["ready"]
    return workers


def _records(where: str) -> list[JournalRecord]:
    with open_journal(where) as j:
        return j.read()


def _cid_attempt(cid: str | None) -> str | None:
    return cid[2:-1] if cid and cid.startswith("sp") else None


def _check_laws(where: str, truth: dict[str, Any]) -> Counter[str]:
    """The laws on the ground truth, and the journal agreeing with it.
    Returns the count of outcomes."""
    recs = _records(where)
    summaries = summarize(recs)
    outcomes: Counter[str] = Counter()
    log = truth["log"]
    intents = {(r.attempt_id, str(r.data["client_id"])) for r in recs if r.kind == "intent"}
    for s in summaries:
        ends = [r for r in s.records if r.kind == "end"]
        assert len(ends) == 1, f"{s.attempt_id}: {len(ends)} end records"
        assert s.ended is not State.ORPHANED, (
            f"{s.attempt_id} ORPHANED on a calm exchange: "
            + "; ".join(str(r.data.get("detail")) for r in s.records if r.kind == "transition"))
        outcomes[s.ended.value if s.ended else "?"] += 1
        # One driver at a time: every take-over holds a newer lease.
        fences = [int(r.data["fence"]) for r in s.records
                  if r.kind in ("lease", "recover") and "fence" in r.data]
        assert fences == sorted(set(fences)), f"{s.attempt_id}: fences {fences}"
        # Each order of the attempt reached the exchange at most once.
        sent = Counter(o.client_id for o in log if _cid_attempt(o.client_id) == s.attempt_id
                       and o.accepted)
        assert all(v == 1 for v in sent.values()), sent
    # Rule 8 on the ground truth: every order the exchange received was
    # journalled (its intent) by an attempt the journal knows.
    for o in log:
        aid = _cid_attempt(o.client_id)
        assert aid is not None and (aid, o.client_id) in intents, o
        # Only entries open exposure; closes and stops are reduce-only.
        assert o.reduce_only == (not o.client_id.endswith("e")), o
    # Net exposure is exactly the protected attempts' fills, each covered by
    # its own resting stop of the same size; nothing else rests.
    protected = {s.attempt_id: s for s in summaries if s.ended is State.PROTECTED}
    exposure = sum(s.filled or 0.0 for s in protected.values())
    assert truth["net"][SYMBOL] == pytest.approx(exposure)
    stops = {_cid_attempt(st.client_id): st for st in truth["stops"]}
    assert set(stops) == set(protected)
    for aid, s in protected.items():
        assert stops[aid].amount == pytest.approx(s.filled)
    return outcomes


def _open_intervals(recs: list[JournalRecord]) -> list[tuple[int, int, int]]:
    """Per attempt: (seq of its lease record, seq of its end, its fence)."""
    out = []
    for s in summarize(recs):
        lease = next(r for r in s.records if r.kind == "lease")
        end = next(r for r in s.records if r.kind == "end")
        assert lease.seq is not None and end.seq is not None
        out.append((lease.seq, end.seq, int(lease.data["fence"])))
    return sorted(out)


def test_concurrent_opens_on_one_symbol_send_one_entry_at_a_time(journal_at: str) -> None:
    n = 4
    with EmulatorServer(SimConfig(prices={SYMBOL: 0.1358}, rtt=0.02)) as ex:
        workers = _start({"url": ex.url, "journal": journal_at, "mode": "open"}, n)
        for w in workers:
            w.go()
        said = [w.finish() for w in workers]
        truth = ex.truth()
    states = [m.get("state") for out in said for m in out if m.get("step") == "open"]
    assert states == ["PROTECTED"] * n, said
    # In the journal: each attempt's records, from its lease to its end,
    # never overlap another's, and the fences grow.
    intervals = _open_intervals(_records(journal_at))
    assert len(intervals) == n
    for (_, end, fence), (start, _, nxt) in itertools.pairwise(intervals):
        assert end < start and fence < nxt, intervals
    # On the exchange: each attempt's orders are contiguous in arrival order.
    order = [_cid_attempt(o.client_id) for o in truth["log"]]
    runs = [aid for i, aid in enumerate(order) if i == 0 or order[i - 1] != aid]
    assert len(runs) == len(set(runs)) == n, order
    assert _check_laws(journal_at, truth) == Counter({"PROTECTED": n})


def test_opens_that_cannot_wait_refuse_with_lease_busy_and_send_nothing(
    journal_at: str,
) -> None:
    n = 3
    with EmulatorServer(SimConfig(prices={SYMBOL: 0.1358}, rtt=0.3)) as ex:
        workers = _start({"url": ex.url, "journal": journal_at, "mode": "open",
                          "lease_wait": 0.1}, n)
        # Whoever takes the lease first cannot finish before the others gave
        # up: its entry's answer is held until they did (a condition, not
        # a race between its attempt and their start-up on a loaded machine).
        release = ex.hold_reply("create_order")
        for w in workers:
            w.go()
        deadline = time.monotonic() + 120
        while sum(m.get("error") == "LeaseBusy" for w in workers for m in w.heard()) < n - 1:
            assert time.monotonic() < deadline, [w.said for w in workers]
            time.sleep(0.02)
        release()
        said = [m for w in workers for m in w.finish() if m.get("step") == "open"]
        truth = ex.truth()
    assert sorted(m.get("state") or m["error"] for m in said) == \
        ["LeaseBusy"] * (n - 1) + ["PROTECTED"], said
    busy = [m["message"] for m in said if m.get("error")]
    assert all("nothing was sent" in m for m in busy)
    entries = [o for o in truth["log"] if not o.reduce_only]
    assert len(entries) == 1
    assert _check_laws(journal_at, truth) == Counter({"PROTECTED": 1})


def test_kill_and_recover_across_processes_keeps_the_laws(journal_at: str) -> None:
    """Three processes open on one symbol in a loop; one at a time is
    SIGKILLed at a random point and restarted, and its restart begins with
    recover(). A last process recovers whatever the last kills left."""
    seed = int(os.environ.get("FLEET_SEED", "14"))
    rng = random.Random(seed)
    kills = int(os.environ.get("FLEET_KILLS", "8"))
    args = {"journal": journal_at, "mode": "loop", "count": 4, "lease_duration": 1.0,
            "lease_renew": 0.25}
    with EmulatorServer(SimConfig(prices={SYMBOL: 0.1358}, rtt=0.08)) as ex:
        args["url"] = ex.url
        workers = _start(args, 3)
        for w in workers:
            w.go()
        killed = 0
        while killed < kills:
            time.sleep(rng.uniform(0.05, 0.8))  # a random point in the run, not a condition
            alive = [w for w in workers if w.proc.poll() is None]
            if not alive:
                break
            victim = rng.choice(alive)
            victim.kill()
            victim.proc.wait(30)
            killed += 1
            (fresh,) = _start(args, 1)
            fresh.go()
            workers.append(fresh)
        for w in workers:
            if w.proc.poll() is None:
                w.finish(300)
        (last,) = _start({**args, "mode": "recover"}, 1)
        last.go()
        last.finish(120)
        truth = ex.truth()
    outcomes = _check_laws(journal_at, truth)
    assert sum(outcomes.values()) >= 3, outcomes
    print(f"store {journal_at[:4]}: seed {seed}, {killed} kills, outcomes {dict(outcomes)}, "
          f"{sum(1 for s in summarize(_records(journal_at)) if s.recovered)} recovered")


@contextlib.contextmanager
def _outside_journal_writes(where: str) -> Iterator[None]:
    """For the body, no bot process is inside a journal write transaction.

    SQLite: the test holds the file's write lock (waiting for a write in
    progress to commit first), so a process paused in the body cannot be
    holding it; a paused holder of SQLite's lock would stall every process
    on the host until it is resumed, the lease notwithstanding (nothing can
    break another process's SQLite lock). PostgreSQL needs nothing: the
    server ends a transaction whose client went quiet
    (``PostgresStore.stalled_transaction_timeout``)."""
    if where.startswith(("host=", "postgresql://", "postgres://")):
        yield
        return
    conn = sqlite3.connect(where, timeout=60, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def _wait_until(what: str, ok: Any, alive: Worker, timeout: float = 60.0) -> None:
    """Poll ``ok()`` until it holds; fail past the deadline, or at once if
    the worker died."""
    deadline = time.monotonic() + timeout
    while not ok():
        assert alive.proc.poll() is None, f"the worker exited before {what}: {alive.finish()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:g}s"
        time.sleep(0.02)


def test_a_paused_holder_is_fenced_out_after_a_take_over(journal_at: str) -> None:
    """A holder is SIGSTOPped while it waits for the answer to its entry
    (which executed), past its lease; another process's recover() takes the
    attempt over and finishes it. The first one, resumed, writes nothing and
    sends nothing: LeaseLost.

    Where the holder stands when it is paused is fixed by a condition, not
    by a clock: the exchange holds back the entry's answer until the test
    has paused it, so the pause cannot land between the entry's intent and
    its request (the entry then not sent yet: nothing for the take-over to
    protect) nor after the holder moved on."""
    args = {"journal": journal_at, "lease_duration": 1.0, "lease_renew": 0.25}
    with EmulatorServer(SimConfig(prices={SYMBOL: 0.1358}, rtt=0.5)) as ex:
        (a,) = _start({**args, "url": ex.url, "mode": "open"}, 1)
        release = ex.hold_reply("create_order")
        a.go()
        _wait_until("entry on the exchange",
                    lambda: any(o.client_id.endswith("e") for o in ex.truth()["log"]), a)
        with _outside_journal_writes(journal_at):  # not paused mid-renewal
            a.kill(signal.SIGSTOP)
        release()  # the answer waits in the paused holder's socket
        try:
            # The taker's own lease is long: a loaded machine that delays its
            # renewals (or its take-over, waiting on the paused holder's
            # transaction) must not fence it out too; this test is about
            # the paused one.
            (b,) = _start({**args, "url": ex.url, "mode": "recover", "lease_duration": 30.0,
                           "lease_renew": 10.0}, 1)
            b.go()
            b_said = b.finish(120)
            before, truth_before = _records(journal_at), ex.truth()
        finally:
            a.kill(signal.SIGCONT)
        a_said = a.finish(120)
        after, truth_after = _records(journal_at), ex.truth()
    assert [m.get("states") for m in b_said if m.get("step") == "recover"] == [["PROTECTED"]], \
        b_said
    (lost,) = [m for m in a_said if m.get("step") == "open"]
    assert lost["error"] == "LeaseLost", a_said
    assert "fenced out" in lost["message"]
    assert after == before  # its late write was refused
    assert truth_after["log"] == truth_before["log"]  # and nothing more was sent
    assert _check_laws(journal_at, truth_after) == Counter({"PROTECTED": 1})
    print(f"store {journal_at[:4]}: the resumed holder said: {lost['message']}")
