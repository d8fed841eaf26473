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
* L1 the net position never exceeded the requested amount;
* L2 every order other than the entry was reduce-only;
* L3 the attempt ended in a terminal state, within a bound from the policy;
* L4 ``PROTECTED`` ⇒ the position exists and exactly one reduce-only stop on
  the opposite side covers exactly its size;
* L5 ``CLOSE_VERIFIED`` ⇒ flat; ``REJECTED`` ⇒ flat and nothing filled;
* L6 ``ORPHANED`` ⇒ exactly one alert (across the crash), and the journal
  records the attempt as ended ``ORPHANED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
from hypothesis import currently_in_test_context, event, example, given
from hypothesis import strategies as st

from adapters.port import (
    OrderSnapshot,
    PositionCache,
    PositionSnapshot,
    Side,
    StopSnapshot,
    qty_eq,
)
from adapters.simulated import AckStyle, Fault, SimConfig, SimulatedExchange, StreamMode
from adapters.virtual_time import run_virtual
from fsm import Alert, OpenRequest, Policy, PositionOpener, State, client_ids
from fsm.journal import Journal, summarize
from fsm.request import BadRequest
from specs.worlds import policies, quiet_engine_log, requests, sim_configs

T = TypeVar("T")

ATTEMPT_ID = "c0ffee00c0ffee00c0ffee00"
ENTRY_CID, STOP_CID, CLOSE_CID = client_ids(ATTEMPT_ID)
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

    def __init__(self, inner: SimulatedExchange, crash: Crash | None) -> None:
        self.inner = inner
        self.crash = crash
        self.calls: list[str] = []
        self.crashed = False

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def position_cache(self) -> PositionCache | None:
        return self.inner.position_cache

    async def _through(self, kind: str, call: Callable[[], Awaitable[T]]) -> T:
        self.calls.append(kind)
        n = len(self.calls)
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


@attrs.define
class Result:
    exchange: SimulatedExchange
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


def _opener(adapter: Any, policy: Policy, alerts: list[Alert], journal: Any) -> PositionOpener:
    return PositionOpener(adapter, policy=policy, alerts=alerts.append, journal=journal,
                          ids=lambda: ATTEMPT_ID)


def baseline(config: SimConfig, policy: Policy, req: OpenRequest) -> Baseline:
    """The uncrashed run: how many calls, how long."""

    async def go() -> Baseline:
        from fsm import MemoryJournal

        loop = asyncio.get_running_loop()
        ex = CrashingExchange(SimulatedExchange(config), None)
        opener = _opener(ex, policy, [], MemoryJournal())
        t0 = loop.time()
        with contextlib.suppress(BadRequest):
            await opener.open(req)
        return Baseline(ex.calls, loop.time() - t0)

    with quiet_engine_log():
        return run_virtual(go())


def crash_and_recover(config: SimConfig, policy: Policy, req: OpenRequest, crash: Crash,
                      downtime: float, second: Crash | None, path: Path,
                      synchronous: str = "FULL") -> Result:
    """Run, crash, drop everything but the journal file, recover.

    ``synchronous="NORMAL"`` (the Hypothesis runs) skips the fsync per
    commit: in WAL mode a committed record still survives the death of the
    process, which is the crash modelled here; only power loss would differ,
    and the pinned examples keep the default ``FULL``."""

    def journal_() -> Journal:
        return Journal(path, synchronous=synchronous)

    async def go() -> Result:
        loop = asyncio.get_running_loop()
        sim = SimulatedExchange(config)
        alerts: list[Alert] = []
        journal = journal_()
        doomed = CrashingExchange(sim, crash)
        opener: PositionOpener | None = _opener(doomed, policy, alerts, journal)
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
        crashed_at = loop.time()
        # Everything but the journal file goes.
        journal.close()
        opener = None
        del task
        await asyncio.sleep(downtime)

        recovered: list[State] = []
        if second is not None:
            # Recovery itself dies; a third process recovers again.
            j2 = journal_()
            dying = CrashingExchange(sim, second)
            t2 = asyncio.ensure_future(_opener(dying, policy, alerts, j2).recover())
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
    sym = req.symbol
    log = sim.log
    entries = [o for o in log if o.kind == "market" and not o.reduce_only]
    # Exactly one entry order at most, with our client id, and none after the crash.
    assert len(entries) <= 1, f"{len(entries)} entry orders sent: {entries}"
    assert all(o.client_id == ENTRY_CID for o in entries)
    assert all(o.at <= res.crashed_at for o in entries), "recovery sent an entry"

    if res.final is None:
        # The attempt never began (refused before anything was journalled).
        assert not log, f"orders sent for an attempt the journal does not know: {log}"
        return
    assert res.ends == 1, f"{res.ends} end records"
    state = res.final

    # L1: the net position never exceeds the requested amount.
    bound = req.amount * (1 + 1e-9) + 1e-12
    assert sim.max_abs_position(sym) <= bound, (
        f"L1: position reached {sim.max_abs_position(sym)} for a request of {req.amount}")
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
    stops = sim.resting_stops(sym)
    if state is State.PROTECTED:
        # L4
        want = 1.0 if req.side is Side.BUY else -1.0
        assert net * want > 0, f"L4: PROTECTED but net position is {net}"
        assert len(stops) == 1, f"L4: {len(stops)} resting stops: {stops}"
        stop = stops[0]
        assert stop.reduce_only and stop.side is req.side.opposite
        assert stop.amount is not None and qty_eq(stop.amount, abs(net)), (
            f"L4: stop for {stop.amount} on a position of {net}")
    if state is State.CLOSE_VERIFIED:
        assert net == 0, f"L5: CLOSE_VERIFIED but net position is {net}"
    if state is State.REJECTED:
        assert net == 0, f"L5: REJECTED but net position is {net}"
        assert all(o.filled == 0 for o in entries), f"L5: REJECTED but the entry filled {entries}"
    # Nothing sent twice: one accepted stop and one accepted close at most
    # (the exchange refuses a second under the same client id, so count the
    # refusals too: recovery looks before it sends).
    for cid in (STOP_CID, CLOSE_CID):
        accepted = [o for o in log if o.client_id == cid and o.accepted]
        assert len(accepted) <= 1, f"{cid} accepted {len(accepted)} times"
    dup = [o for o in log if o.reason == "duplicate client id"]
    _event(f"duplicate sends refused: {len(dup)}")
    mine = [a for a in res.alerts if a.attempt_id == ATTEMPT_ID]
    if state is State.ORPHANED:
        assert len(mine) == 1, f"L6: {len(mine)} alerts for an ORPHANED attempt"
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

    def crash(self, base: Baseline, *, writes_only: bool = False) -> Crash:
        calls = [i + 1 for i, k in enumerate(base.calls) if not writes_only or k in WRITES]
        if writes_only:
            return Crash(call=calls[int(self.where * len(calls))], phase="before")
        if self.by_call and calls:
            return Crash(call=calls[int(self.where * len(calls))], phase=self.phase)
        return Crash(at=self.where * base.duration)


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
)


def _run(config: SimConfig, policy: Policy, req: OpenRequest, plan: Plan,
         *, writes_only: bool = False) -> Result:
    base = baseline(config, policy, req)
    if writes_only and not any(k in WRITES for k in base.calls):
        writes_only = False
    crash = plan.crash(base, writes_only=writes_only)
    with tempfile.TemporaryDirectory() as tmp:
        res = crash_and_recover(config, policy, req, crash, plan.downtime, plan.again,
                                Path(tmp) / "journal.sqlite3", synchronous="NORMAL")
    check_laws(req, policy, res)
    _event(f"crashed={res.crashed} final={res.final.value if res.final else None}")
    return res


# -- the specs ---------------------------------------------------------------------------------

_CALM = SimConfig(prices={"AVL/USDT:USDT": 0.1358})
_AVL = OpenRequest(symbol="AVL/USDT:USDT", side="buy", amount=43, stop_loss=0.1290,
                   reference_price=0.1358)


@given(config=sim_configs(), policy=policies(), req=requests(), plan=plans)
@example(config=attrs.evolve(_CALM, ack=AckStyle.MINIMAL, order_visibility_lag=3.0,
                             rest_position_lag=4.0),
         policy=Policy(), req=_AVL, plan=Plan(where=0.0, phase="after", downtime=1.0))
@example(config=attrs.evolve(_CALM, stream=StreamMode.PRESENT,
                             faults={"place_stop": (Fault.TIMEOUT_AFTER,)}),
         policy=Policy(), req=_AVL, plan=Plan(by_call=False, where=0.5))
@example(config=attrs.evolve(_CALM, stop_rejected=True), policy=Policy(), req=_AVL,
         plan=Plan(where=0.7, phase="after", again=Crash(call=2, phase="after")))
def test_crash_at_any_step_then_recovery_keeps_the_laws(
    config: SimConfig, policy: Policy, req: OpenRequest, plan: Plan
) -> None:
    """L10: a crash at any exchange call or any instant, followed by recovery
    from the journal alone, keeps L1–L6 and never sends a second entry."""
    _run(config, policy, req, plan)


@given(config=sim_configs(), policy=policies(), req=requests(), plan=plans)
@example(config=_CALM, policy=Policy(), req=_AVL, plan=Plan(where=0.0))
def test_torn_write_between_intent_and_request(
    config: SimConfig, policy: Policy, req: OpenRequest, plan: Plan
) -> None:
    """L10, torn write: the process dies after an intent is durable and before
    its request leaves (entry, stop, close or cancel); recovery keeps L1–L6
    and sends nothing twice."""
    _run(config, policy, req, plan, writes_only=True)


def _pinned(crash: Crash, config: SimConfig = _CALM, downtime: float = 0.0) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        res = crash_and_recover(config, Policy(), _AVL, crash, downtime, None,
                                Path(tmp) / "journal.sqlite3")
    check_laws(_AVL, Policy(), res)
    return res


def test_entry_sent_reply_lost_then_crash_recovers_to_protected() -> None:
    """The create reached the exchange, the process died before the reply:
    recovery finds the entry by client id and protects it; one entry order."""
    res = _pinned(Crash(call=1, phase="after"))
    assert res.crashed and res.final is State.PROTECTED
    assert [o.kind for o in res.exchange.log] == ["market", "stop"]


def test_torn_entry_write_ends_without_sending_it() -> None:
    """The entry's intent is durable but the request never left: recovery
    looks it up, never sends it, and ends without exposure (ORPHANED with one
    alert, since "not found" never proves "never sent")."""
    res = _pinned(Crash(call=1, phase="before"))
    assert res.crashed and not res.exchange.log
    assert res.final is State.ORPHANED and len(res.alerts) == 1


def test_torn_stop_write_places_the_stop_once() -> None:
    """Died between the stop's intent and its request: recovery looks the stop
    up by client id, finds none, places it once."""
    base = baseline(_CALM, Policy(), _AVL)
    k = base.calls.index("place_stop") + 1
    res = _pinned(Crash(call=k, phase="before"))
    assert res.final is State.PROTECTED
    assert [o.kind for o in res.exchange.log] == ["market", "stop"]


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
