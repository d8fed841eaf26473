"""Law L10: a crash at any step, followed by recovery, keeps L1–L6.

Each example draws a whole exchange world (the same strategies as the other
laws), runs the attempt once without a crash to learn how many exchange calls
it makes and how long it takes (the simulation is deterministic, law L9), and
then runs it again and *crashes* it: the opener's task is cancelled

* at its k-th exchange call, either before the request leaves (for a write,
  that is the torn write: the intent is journalled, the request never sent)
  or after the exchange applied it but before the reply arrives; or
* at a virtual time t (mid-flight, mid-back-off, anywhere).

Then everything but the journal file is dropped: the opener, its attempt,
its facts and the journal's connection. After a drawn downtime a fresh opener
with a fresh :class:`~fsm.Journal` on the same file recovers, on the same
simulated exchange (whose ground truth is what the laws are checked
against). Sometimes recovery itself is crashed and recovered again.

Checked after recovery, against the simulator's ground truth:

* exactly one entry order at most was ever sent, and none after the crash;
* L1' the attempt's own fills never moved the net by more than the amount;
* L2 every order other than the entry was reduce-only;
* L3 the attempt ended in a terminal state, within a bound from the policy;
* L4' ``PROTECTED`` ⇒ exactly one own reduce-only stop on the opposite side
  covers exactly the entry's true fill;
* L5' ``CLOSE_VERIFIED`` ⇒ the attempt's own exposure is 0;
  ``REJECTED`` ⇒ the entry filled nothing;
* L6 ``ORPHANED`` ⇒ exactly one alert (across the crash), and the journal
  records the attempt as ended ``ORPHANED``;
* L11 the attempt never reduced exposure it did not create.

The account is shared (``adapters/simulated/ledger.py`` judges whose exposure is whose):
a position may be held before, the operator trades while the attempt runs
and, sometimes, while the process is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
from hypothesis import assume, currently_in_test_context, event, example, given
from hypothesis import strategies as st

from adapters.port import (
    Fill,
    Market,
    OrderSnapshot,
    PositionCache,
    PositionSnapshot,
    Side,
    StopSnapshot,
    qty_eq,
)
from adapters.simulated import AckStyle, Fault, OperatorMove, SimConfig, StreamMode
from adapters.simulated.ledger import GroundTruthExchange, Own, ledger
from adapters.virtual_time import run_virtual
from fsm import (
    Alert,
    JournalFailed,
    OpenRequest,
    Policy,
    PositionOpener,
    State,
    attached_stop_id,
    client_ids,
)
from fsm.journal import Journal, SQLiteStore, summarize
from fsm.request import BadRequest
from specs.worlds import (
    World,
    canonical,
    held_before,
    lots,
    quiet_engine_log,
    settle_time,
    worlds,
)

T = TypeVar("T")

ATTEMPT_ID = "c0ffee00c0ffee00c0ffee00"
ENTRY_CID, STOP_CID, CLOSE_CID = client_ids(ATTEMPT_ID)
ATTACHED_CID = attached_stop_id(ATTEMPT_ID)
WRITES = ("create_order", "place_stop", "cancel_order")


# -- the crash ---------------------------------------------------------------------------------


@attrs.frozen
class Crash:
    """Where the process dies: at the ``call``-th exchange call (``phase``
    "before" it leaves or "after" it took effect), or at virtual time ``at``
    after the attempt started. ``None`` everywhere: no crash."""

    call: int | None = None
    phase: str = "before"
    at: float | None = None


class CrashingExchange:
    """The simulated exchange as the doomed process sees it: every call is
    counted, and the chosen one cancels the calling task (the crash)."""

    def __init__(self, inner: GroundTruthExchange, crash: Crash | None,
                 disk_full_at: int | None = None, journal: Journal | None = None) -> None:
        self.inner = inner
        self.crash = crash
        self.calls: list[str] = []
        self.crashed = False
        #: the journal's disk fills up as the ``disk_full_at``-th call leaves
        self.disk_full_at = disk_full_at
        self.journal = journal

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def position_cache(self) -> PositionCache | None:
        return self.inner.position_cache

    @property
    def receive_window(self) -> float | None:
        return self.inner.receive_window

    @property
    def lookup_lag(self) -> float:
        return self.inner.lookup_lag

    def __getattr__(self, name: str) -> Any:
        # Anything else of the simulator that is not a call (e.g. ``canonical``).
        return getattr(self.inner, name)

    async def market(self, symbol: str) -> Market:
        return await self._through("market", lambda: self.inner.market(symbol))

    async def fetch_fills(self, symbol: str, since: float | None) -> list[Fill]:
        return await self._through("fetch_fills", lambda: self.inner.fetch_fills(symbol, since))

    async def _through(self, kind: str, call: Callable[[], Awaitable[T]]) -> T:
        self.calls.append(kind)
        n = len(self.calls)
        if n == self.disk_full_at and self.journal is not None:
            fill_disk(self.journal)
        hit = self.crash is not None and self.crash.call == n
        if hit and self.crash is not None and self.crash.phase == "before":
            await self._die()
        try:
            return await call()
        finally:
            if hit:
                await self._die()

    async def _die(self) -> None:
        self.crashed = True
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)  # CancelledError is raised here
        raise AssertionError("the crash did not cancel the task")

    async def create_order(self, *, symbol: str, side: Side, amount: float, client_id: str,
                           reduce_only: bool) -> OrderSnapshot:
        return await self._through("create_order", lambda: self.inner.create_order(
            symbol=symbol, side=side, amount=amount, client_id=client_id,
            reduce_only=reduce_only))

    async def fetch_order(self, *, symbol: str, order_id: str | None,
                          client_id: str | None) -> OrderSnapshot:
        return await self._through("fetch_order", lambda: self.inner.fetch_order(
            symbol=symbol, order_id=order_id, client_id=client_id))

    async def fetch_positions(self, symbols: Sequence[str] | None = None
                              ) -> list[PositionSnapshot]:
        return await self._through("fetch_positions", lambda: self.inner.fetch_positions(symbols))

    async def fetch_price(self, symbol: str) -> float | None:
        return await self._through("fetch_price", lambda: self.inner.fetch_price(symbol))

    async def place_stop(self, *, symbol: str, side: Side, amount: float, trigger_price: float,
                         client_id: str) -> StopSnapshot:
        return await self._through("place_stop", lambda: self.inner.place_stop(
            symbol=symbol, side=side, amount=amount, trigger_price=trigger_price,
            client_id=client_id))

    async def fetch_stops(self, symbol: str | None = None) -> list[StopSnapshot]:
        return await self._through("fetch_stops", lambda: self.inner.fetch_stops(symbol))

    async def cancel_order(self, *, symbol: str, order_id: str | None,
                           client_id: str | None) -> None:
        await self._through("cancel_order", lambda: self.inner.cancel_order(
            symbol=symbol, order_id=order_id, client_id=client_id))


# -- the harness -------------------------------------------------------------------------------


@attrs.define
class Baseline:
    calls: list[str]
    duration: float
    entry_at: float = 0.0  # when the entry was sent, from the start (0: never)


@attrs.define
class Result:
    exchange: GroundTruthExchange
    alerts: list[Alert]
    crashed: bool
    crashed_at: float  # loop time of the (first) crash, or the end of the run
    started: float
    recovery_started: float
    recovery_ended: float
    final: State | None  # the attempt's end state in the journal (None: never began)
    ends: int  # end records in the journal
    recovered_states: list[State]
    refused: bool  # BadRequest before anything was journalled


def _opener(adapter: Any, policy: Policy, alerts: list[Alert], journal: Any,
            alert_delay: float = 0.0) -> PositionOpener:
    """``alerts`` collects the alerts *delivered*: the pager takes
    ``alert_delay`` seconds to answer, and a crash in that time loses the
    delivery (recovery must deliver again)."""

    async def pager(alert: Alert) -> None:
        if alert_delay:
            await asyncio.sleep(alert_delay)
        alerts.append(alert)

    return PositionOpener(adapter, policy=policy, alerts=pager, journal=journal,
                          ids=lambda: ATTEMPT_ID)


def fill_disk(journal: Journal) -> None:
    """The journal's disk is full from now on, for this process: SQLite's own
    SQLITE_FULL on every later write (the cap is the connection's, so a new
    process after the crash finds room again, as after an operator freed it)."""
    assert isinstance(journal.store, SQLiteStore)
    conn = journal.store._conn
    assert conn is not None
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")
    for size in (4096, 1024, 256, 64, 16, 1):
        while True:
            try:
                journal.note("disk", "reconcile", 0.0, {"pad": "x" * size})
            except sqlite3.OperationalError:
                break


def baseline(config: SimConfig, policy: Policy, req: OpenRequest) -> Baseline:
    """The uncrashed run: how many calls, how long."""

    async def go() -> Baseline:
        from fsm import MemoryJournal

        loop = asyncio.get_running_loop()
        ex = CrashingExchange(GroundTruthExchange(config), None)
        journal = MemoryJournal()
        opener = _opener(ex, policy, [], journal)
        t0 = loop.time()
        with contextlib.suppress(BadRequest):
            await opener.open(req)
        sent = next((r.at for r in journal.records
                     if r.kind == "intent" and r.data.get("action") == "entry"), t0)
        return Baseline(ex.calls, loop.time() - t0, sent - t0)

    with quiet_engine_log():
        return run_virtual(go())


def crash_and_recover(config: SimConfig, policy: Policy, req: OpenRequest, crash: Crash,
                      downtime: float, second: Crash | None, path: Path,
                      synchronous: str = "FULL",
                      while_down: tuple[tuple[float, float], ...] = (),
                      alert_delay: float = 0.0, disk_full_at: int | None = None) -> Result:
    """Run, crash, drop everything but the journal file, recover.

    ``while_down``: the operator's hand trades while the process is down,
    each (fraction of the downtime, signed amount).

    ``synchronous="NORMAL"`` (the Hypothesis runs) skips the fsync per
    commit: in WAL mode a committed record still survives the death of the
    process, which is the crash modelled here; only power loss would differ,
    and the pinned examples keep the default ``FULL``."""

    def journal_() -> Journal:
        return Journal(path, synchronous=synchronous)

    async def go() -> Result:
        loop = asyncio.get_running_loop()
        sim = GroundTruthExchange(config)
        alerts: list[Alert] = []
        journal = journal_()
        doomed = CrashingExchange(sim, crash, disk_full_at, journal)
        opener: PositionOpener | None = _opener(doomed, policy, alerts, journal, alert_delay)
        assert opener is not None
        t0 = loop.time()
        task = asyncio.ensure_future(opener.open(req))
        if crash.at is not None:
            loop.call_at(t0 + crash.at, task.cancel)
        refused = False
        try:
            await task
        except asyncio.CancelledError:
            doomed.crashed = True
        except BadRequest:
            refused = True
        except JournalFailed:
            pass  # the attempt was driven to a safe state from memory and alerted
        crashed_at = loop.time()
        # Everything but the journal file goes.
        journal.close()
        opener = None
        del task
        for frac, delta in while_down:
            # Simulator hook wanted: a public way to trade as the operator now.
            loop.call_later(frac * downtime, sim.operate,
                            OperatorMove(at=0.0, symbol=canonical(req.symbol), delta=delta))
        await asyncio.sleep(downtime)

        recovered: list[State] = []
        if second is not None:
            # Recovery itself dies; a third process recovers again.
            j2 = journal_()
            dying = CrashingExchange(sim, second)
            t2 = asyncio.ensure_future(
                _opener(dying, policy, alerts, j2, alert_delay).recover())
            if second.at is not None:
                loop.call_at(loop.time() + second.at, t2.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                recovered += [a.state for a in await t2]
            j2.close()
            await asyncio.sleep(downtime)
        j3 = journal_()
        r0 = loop.time()
        recovered += [a.state for a in await _opener(sim, policy, alerts, j3).recover()]
        r1 = loop.time()
        await asyncio.sleep(settle_time(config))  # let every delayed request land
        summaries = summarize(j3.read())
        ends = sum(1 for r in j3.read() if r.kind == "end")
        j3.close()
        final = summaries[0].ended if summaries else None
        return Result(sim, alerts, doomed.crashed, crashed_at, t0, r0, r1, final, ends,
                      recovered, refused)

    with quiet_engine_log():
        return run_virtual(go())


def _event(text: str) -> None:
    if currently_in_test_context():
        event(text)


# -- the laws ----------------------------------------------------------------------------------


def check_laws(req: OpenRequest, policy: Policy, res: Result) -> None:
    sim = res.exchange
    sym = canonical(req.symbol)
    log = sim.log
    cfg = sim.config
    entries = [o for o in log if o.kind == "market" and not o.reduce_only]
    # Exactly one entry order at most, with our client id, and none after the crash
    # (one sent before it may still land late: a DELAYED create).
    assert len(entries) <= 1, f"{len(entries)} entry orders sent: {entries}"
    assert all(o.client_id == ENTRY_CID for o in entries)
    late = cfg.delayed_arrival if Fault.DELAYED in cfg.faults.get("create", ()) else 0.0
    assert all(o.at <= res.crashed_at + late for o in entries), "recovery sent an entry"

    if res.final is None:
        # The attempt never began (refused before anything was journalled).
        assert not log, f"orders sent for an attempt the journal does not know: {log}"
        return
    assert res.ends == 1, f"{res.ends} end records"
    state = res.final
    own = Own(sym, req.side, req.amount, ENTRY_CID, STOP_CID, CLOSE_CID)
    led = ledger(sim.fills, own, initial=cfg.initial_positions.get(sym, 0.0),
                 arrivals=sim.arrivals)
    _event(f"held before: {held_before(cfg, req)}")
    _event(f"operator traded: {bool(led.operator_fills)}")

    # L1': the attempt's own fills never moved the net beyond the amount.
    bound = req.amount * (1 + 1e-9) + 1e-12
    assert led.own_max_abs <= bound, (
        f"L1: own fills reached |net| {led.own_max_abs} for a request of {req.amount}")
    # L2: only the entry can increase exposure; every other order is reduce-only.
    others = [o for o in log if o.client_id != ENTRY_CID]
    assert all(o.reduce_only for o in others), f"L2: non-reduce-only order in {others}"
    # L3: terminal, within a bound: the policy's bound for one attempt, plus
    # recovery's look-ups (entry and close, each up to two request timeouts).
    assert state.terminal
    limit = policy.max_duration + 4 * policy.request_timeout
    took = res.recovery_ended - res.recovery_started
    assert took <= limit, f"L3: recovery took {took:g}s (bound {limit:g}s)"
    net = sim.net_position(sym)
    alone = not cfg.initial_positions.get(sym) and not led.operator_fills
    if state is State.PROTECTED:
        # L4'
        stops = [s for s in sim.resting_stops(sym) if s.client_id in (STOP_CID, ATTACHED_CID)]
        assert led.entry_filled > 0, "L4: PROTECTED but the entry filled nothing"
        assert len(stops) == 1, f"L4: {len(stops)} own resting stops: {stops}"
        stop = stops[0]
        assert stop.reduce_only and stop.side is req.side.closing_side
        assert stop.amount is not None and qty_eq(stop.amount, led.entry_filled), (
            f"L4: stop for {stop.amount}, the entry filled {led.entry_filled}")
        if alone:
            assert qty_eq(abs(net), led.entry_filled), f"L4: PROTECTED, net {net}"
    if state is State.CLOSE_VERIFIED:
        assert qty_eq(led.exposure, 0.0, abs_=1e-9), (
            f"L5: CLOSE_VERIFIED but the attempt's own exposure is {led.exposure}")
        if alone:
            assert net == 0, f"L5: CLOSE_VERIFIED but net position is {net}"
    if state is State.REJECTED:
        assert led.entry_filled == 0, f"L5: REJECTED but the entry filled {led.entry_filled}"
    # L11: never reduces exposure it did not create, across the crash.
    assert led.foreign_touched == 0, (
        f"L11: reduced {led.foreign_touched} of exposure it did not create: {led.touches}")
    # Nothing sent twice: one accepted stop and one accepted close at most
    # (the exchange refuses a second under the same client id, so count the
    # refusals too: recovery looks before it sends).
    for cid in (STOP_CID, CLOSE_CID):
        accepted = [o for o in log if o.client_id == cid and o.accepted]
        assert len(accepted) <= 1, f"{cid} accepted {len(accepted)} times"
    dup = [o for o in log if o.reason == "duplicate client id"]
    _event(f"duplicate sends refused: {len(dup)}")
    # L6: at least once across the crash, always under one alert_id; more than
    # one delivery only when a delivery was under way at a crash.
    mine = [a for a in res.alerts if a.attempt_id == ATTEMPT_ID and a.reason == "orphaned"]
    if state is State.ORPHANED:
        assert mine, "L6: an ORPHANED attempt's alert was never delivered"
        assert {a.alert_id for a in mine} == {f"{ATTEMPT_ID}:orphaned"}, mine
        assert len(mine) == 1 or res.crashed, f"L6: {len(mine)} deliveries without a crash"
        _event(f"orphan alert deliveries: {min(len(mine), 2)}")
    else:
        assert not mine, f"alerts for a {state.value} attempt: {mine}"


# -- strategies --------------------------------------------------------------------------------


@attrs.frozen
class Plan:
    """Where to crash, relative to the uncrashed run so that every drawn plan
    lands inside the attempt: ``where`` in [0, 1) picks the call (or the
    instant) as a fraction of the baseline's calls (or duration)."""

    by_call: bool = True
    where: float = 0.0
    phase: str = "before"
    downtime: float = 0.0
    again: Crash | None = None  # a crash during the first recovery
    #: the operator's hand trades while the process is down: (fraction of the
    #: downtime, signed lots in the request's direction)
    while_down: tuple[tuple[float, int], ...] = ()
    #: how long the pager takes (a crash by time may land inside a delivery)
    alert_delay: float = 0.0
    #: the journal's disk fills as this fraction of the baseline's calls leave
    disk_full: float | None = None
    #: crash while the pager is answering the (baseline's last) alert
    in_alert: bool = False

    def crash(self, base: Baseline, *, writes_only: bool = False) -> Crash:
        # Crashes before the entry leaves teach little (nothing was sent):
        # aim at the calls from the entry on, when there is one.
        first = base.calls.index("create_order") if "create_order" in base.calls else 0
        calls = [i + 1 for i, k in enumerate(base.calls)
                 if i >= first and (not writes_only or k in WRITES)]
        if writes_only:
            return Crash(call=calls[int(self.where * len(calls))], phase="before")
        if self.in_alert and self.alert_delay > 0:
            return Crash(at=base.duration + self.alert_delay * max(self.where, 0.01))
        if self.by_call and calls:
            return Crash(call=calls[int(self.where * len(calls))], phase=self.phase)
        # By time: from the entry on (before it nothing is at stake), through
        # the pager's answer after the last transition.
        span = base.duration - base.entry_at + self.alert_delay
        return Crash(at=base.entry_at + max(self.where, 1e-3) * span)


_fraction = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)

plans = st.builds(
    Plan,
    by_call=st.booleans(),
    where=_fraction,
    phase=st.sampled_from(["before", "after"]),
    downtime=st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=2.0),
                       st.floats(min_value=0.0, max_value=60.0)),
    again=st.one_of(
        st.none(),
        st.builds(Crash, call=st.integers(min_value=1, max_value=12),
                  phase=st.sampled_from(["before", "after"])),
        st.builds(Crash, at=st.floats(min_value=0.0, max_value=10.0)),
    ),
    while_down=st.one_of(
        st.just(()),
        st.lists(st.tuples(_fraction, st.integers(min_value=-100, max_value=100)),
                 max_size=2).map(tuple),
    ),
    alert_delay=st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=3.0)),
    disk_full=st.one_of(st.none(), st.none(), _fraction),
    in_alert=st.booleans(),
)


def _run(config: SimConfig, policy: Policy, req: OpenRequest, plan: Plan,
         *, writes_only: bool = False) -> Result:
    base = baseline(config, policy, req)
    if currently_in_test_context():
        # A request refused before anything is sent leaves nothing to crash:
        # spend the examples on attempts that reach the exchange.
        assume("create_order" in base.calls)
    if writes_only and not any(k in WRITES for k in base.calls):
        writes_only = False
    crash = plan.crash(base, writes_only=writes_only)
    if plan.in_alert and plan.alert_delay > 0:
        _event("crash aimed at the pager's answer")
    d = 1 if req.side is Side.BUY else -1
    down = tuple((f, lots(req.symbol, k * d)) for f, k in plan.while_down if k)
    disk = None
    if plan.disk_full is not None and base.calls:
        disk = 1 + int(plan.disk_full * len(base.calls))
    with tempfile.TemporaryDirectory() as tmp:
        res = crash_and_recover(config, policy, req, crash, plan.downtime, plan.again,
                                Path(tmp) / "journal.sqlite3", synchronous="NORMAL",
                                while_down=down, alert_delay=plan.alert_delay,
                                disk_full_at=disk)
    check_laws(req, policy, res)
    _event(f"crashed={res.crashed} final={res.final.value if res.final else None}")
    return res


# -- the specs ---------------------------------------------------------------------------------

_CALM = SimConfig(prices={"AVL/USDT:USDT": 0.1358})
_AVL = OpenRequest(symbol="AVL/USDT:USDT", side="buy", amount=43, stop_loss=0.1290,
                   reference_price=0.1358)


def _w(config: SimConfig, req: OpenRequest = _AVL) -> World:
    return World(config, Policy(), (req,))


#: Issue 10, reproduction 3: crashed mid-rollback (the stop refused, died after the close
#: was sent), the operator then closed the 43 by hand and opened 20 of their own while the
#: process was down; recovery must not sell those 20.
_RECOVERY_ON_OLD_FILL = (
    _w(attrs.evolve(_CALM, stop_rejected=True, rest_timestamps=False)),
    Plan(where=0.6, phase="before", downtime=5.0, while_down=((0.2, -43), (0.4, 20))),
)


@given(world=worlds(), plan=plans)
@example(world=_w(attrs.evolve(_CALM, ack=AckStyle.MINIMAL, order_visibility_lag=3.0,
                                rest_position_lag=4.0)),
         plan=Plan(where=0.0, phase="after", downtime=1.0))
@example(world=_w(attrs.evolve(_CALM, stream=StreamMode.PRESENT,
                                faults={"place_stop": (Fault.TIMEOUT_AFTER,)})),
         plan=Plan(by_call=False, where=0.5))
@example(world=_w(attrs.evolve(_CALM, stop_rejected=True)),
         plan=Plan(where=0.7, phase="after", again=Crash(call=2, phase="after")))
@example(world=_RECOVERY_ON_OLD_FILL[0], plan=_RECOVERY_ON_OLD_FILL[1])
def test_crash_at_any_step_then_recovery_keeps_the_laws(world: World, plan: Plan) -> None:
    """L10 and L11: a crash at any exchange call or any instant, followed by recovery from
    the journal alone, in a shared account (the operator may trade while the process is
    down), keeps L1–L6, never sends a second entry and never reduces exposure the attempt
    did not create."""
    _run(world.config, world.policy, world.request, plan)


@given(world=worlds(), plan=plans)
@example(world=_w(_CALM), plan=Plan(where=0.0))
def test_torn_write_between_intent_and_request(world: World, plan: Plan) -> None:
    """L10, torn write: the process dies after an intent is durable and before
    its request leaves (entry, stop, close or cancel); recovery keeps L1–L6
    and L11 and sends nothing twice."""
    _run(world.config, world.policy, world.request, plan, writes_only=True)


def _pinned(crash: Crash, config: SimConfig = _CALM, downtime: float = 0.0) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        res = crash_and_recover(config, Policy(), _AVL, crash, downtime, None,
                                Path(tmp) / "journal.sqlite3")
    check_laws(_AVL, Policy(), res)
    return res


def test_entry_sent_reply_lost_then_crash_recovers_to_protected() -> None:
    """The create reached the exchange, the process died before the reply:
    recovery finds the entry by client id and protects it; one entry order."""
    res = _pinned(Crash(call=_entry_call(_CALM), phase="after"))
    assert res.crashed and res.final is State.PROTECTED
    assert [o.kind for o in res.exchange.log] == ["market", "stop"]


def _entry_call(config: SimConfig) -> int:
    base = baseline(config, Policy(), _AVL)
    return base.calls.index("create_order") + 1


def test_torn_entry_write_ends_without_sending_it() -> None:
    """The entry's intent is durable but the request never left, on a venue with a
    receive window: recovery looks it up after the window, never sends it, and ends
    REJECTED with that proof (rule 10), no alert."""
    res = _pinned(Crash(call=_entry_call(_CALM), phase="before"))
    assert res.crashed and not res.exchange.log
    assert res.final is State.REJECTED and not res.alerts


def test_torn_entry_write_without_a_receive_window_is_orphaned() -> None:
    """The same torn entry on a venue without a receive window: "not found" never
    proves "never sent", so ORPHANED with one alert, nothing sent."""
    cfg = attrs.evolve(_CALM, receive_window=None)
    res = _pinned(Crash(call=_entry_call(cfg), phase="before"), cfg)
    assert res.crashed and not res.exchange.log
    assert res.final is State.ORPHANED and len(res.alerts) == 1


def test_torn_stop_write_never_places_a_stop_it_cannot_prove_absent() -> None:
    """Died between the stop's intent and its request: the stop may be out.
    Not finding it in the listing proves nothing (rule 10: a stop that left
    may arrive late, and two reduce-only stops would, once triggered, close
    exposure that is not the attempt's), and the protection window ends
    before the receive window could prove it absent. So recovery never
    places a second stop: it rolls the attempt's own fill back."""
    base = baseline(_CALM, Policy(), _AVL)
    k = base.calls.index("place_stop") + 1
    res = _pinned(Crash(call=k, phase="before"))
    assert res.final is State.CLOSE_VERIFIED
    assert [(o.kind, o.reduce_only) for o in res.exchange.log] == [("market", False),
                                                                  ("market", True)]


def test_stop_placed_reply_lost_is_found_not_duplicated() -> None:
    """Died after the stop was accepted, before the reply: recovery finds it
    by client id and does not place another."""
    base = baseline(_CALM, Policy(), _AVL)
    k = base.calls.index("place_stop") + 1
    res = _pinned(Crash(call=k, phase="after"))
    assert res.final is State.PROTECTED
    assert [o.kind for o in res.exchange.log] == ["market", "stop"]
    assert len(res.exchange.resting_stops()) == 1


def test_crash_during_rollback_close_is_not_sent_twice() -> None:
    """A stop refused, so a rollback: died after the close took effect and
    before its reply. Recovery resumes the rollback, finds the close by client
    id, proves flat, sends no second close."""
    cfg = attrs.evolve(_CALM, stop_rejected=True)
    base = baseline(cfg, Policy(), _AVL)
    closes = [i + 1 for i, k in enumerate(base.calls) if k == "create_order"][1:]
    assert closes, base.calls
    res = _pinned(Crash(call=closes[0], phase="after"), cfg)
    assert res.final is State.CLOSE_VERIFIED
    sent = [o for o in res.exchange.log if o.kind == "market"]
    assert [o.reduce_only for o in sent] == [False, True]
