"""The reconciliation monitor: every case of its report, on the simulator."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest

from adapters.port import Side
from adapters.simulated import Fault, SimConfig, SimulatedExchange
from adapters.virtual_time import run_virtual
from fsm import OpenRequest, State, attached_stop_id, client_ids
from fsm.journal import Journal, summarize
from fsm.reconcile import (
    ActionKind,
    AlertKind,
    Coverage,
    OrphanAction,
    QueryStatus,
    ReconcileAlert,
    ReconcilePolicy,
    Reconciler,
    ReconcileReport,
)
from tests.helpers import PRICE, SYMBOL, request

T = TypeVar("T")
A1 = "a00000000000000000000001"
A2 = "a00000000000000000000002"


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@attrs.define
class World:
    ex: SimulatedExchange
    journal: Journal
    clock: Clock
    alerts: list[ReconcileAlert]

    def reconciler(self, **policy: Any) -> Reconciler:
        pol = ReconcilePolicy(settle_time=policy.pop("settle_time", 0.0), **policy)
        return Reconciler(self.ex, self.journal, policy=pol, alerts=self.alerts.append,
                          clock=self.clock)

    def attempt(self, aid: str, end: State | None, *, filled: float = 43.0,
                side: str = "buy", symbol: str = SYMBOL) -> None:
        """Journal an attempt that reached ``end`` (None: unfinished)."""
        j = self.journal
        entry = client_ids(aid)[0]
        req = request(side=side, stop_loss=0.1290 if side == "buy" else 0.1400, symbol=symbol)
        j.begin(aid, req, entry, 0.0)
        j.intent(aid, "entry", entry, 0.0, {"side": side, "amount": 43.0})
        j.transition(aid, 0.1, {"dest": "PLACED", "entry_order_id": "x", "filled": None})
        if end is None:
            return
        j.transition(aid, 0.2, {"dest": "FETCHED", "filled": filled})
        j.transition(aid, 0.3, {"dest": end.value, "filled": filled})
        j.end(aid, end, 0.3)


def world(tmp_path: Path, **knobs: Any) -> World:
    clock = Clock()
    ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}, **knobs))
    return World(ex, Journal(tmp_path / "j.sqlite3", wall_clock=clock), clock, [])


def run(coro_fn: Callable[[], Awaitable[T]],
        setup: Callable[[], Awaitable[object]] | None = None) -> T:
    """``setup`` then ``coro_fn``, in one virtual-time loop (the simulator's
    clock is the loop's, so a world must live in one loop)."""

    async def go() -> T:
        if setup is not None:
            await setup()
        return await coro_fn()

    return run_virtual(go())


async def _stop(ex: SimulatedExchange, cid: str, amount: float = 43.0) -> None:
    await ex.place_stop(symbol=SYMBOL, side=Side.SELL, amount=amount, trigger_price=0.1290,
                        client_id=cid)


# -- orphans -----------------------------------------------------------------------------------


def test_a_position_without_a_covering_stop_is_an_orphan_alerted_once(tmp_path: Path) -> None:
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    w.attempt(A1, State.ORPHANED)
    rec = w.reconciler()

    first, second = run(lambda: _twice(rec))
    assert first.read_only and first.complete
    (p,) = first.orphans
    assert (p.symbol, p.side.value, p.size, p.coverage) == (SYMBOL, "long", 43.0, Coverage.NONE)
    assert p.attempts == (A1,) and p.unexplained == 0
    assert [a.kind for a in first.alerts] == [AlertKind.ORPHAN_POSITION]
    assert first.alerts[0].attempt_id == A1 and "no covering stop" in first.alerts[0].message
    assert first.still_orphaned == (A1,) and not first.resolved
    assert second.orphans and not second.alerts  # no repeat
    assert len(w.alerts) == 1
    assert w.ex.log == []  # read-only: nothing sent


async def _twice(rec: Reconciler) -> tuple[ReconcileReport, ReconcileReport]:
    return await rec.check_once(), await rec.check_once()


def test_policy_protect_places_a_reduce_only_stop_journalled_first(tmp_path: Path) -> None:
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    w.attempt(A1, State.ORPHANED)
    rec = w.reconciler(orphans=OrphanAction.PROTECT)

    first, second = run(lambda: _twice(rec))
    assert not first.read_only
    (act,) = first.actions
    assert act.kind is ActionKind.PROTECT and act.ok and act.attempt_id == A1
    (stop,) = w.ex.resting_stops(SYMBOL)
    assert stop.side is Side.SELL and stop.amount == 43.0 and stop.reduce_only
    assert stop.trigger_price == 0.1290 and stop.client_id == act.client_id
    notes = [r for r in w.journal.read(A1) if r.kind == "reconcile"]
    assert [n.data["client_id"] for n in notes] == [act.client_id]
    assert not second.orphans and not second.actions
    assert second.positions[0].coverage is Coverage.COVERED


def test_policy_close_closes_reduce_only_and_the_orphan_resolves(tmp_path: Path) -> None:
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    w.attempt(A1, State.ORPHANED)
    rec = w.reconciler(orphans=OrphanAction.CLOSE)

    first, second = run(lambda: _twice(rec))
    (act,) = first.actions
    assert act.kind is ActionKind.CLOSE and act.ok
    (order,) = w.ex.log
    assert order.reduce_only and order.side is Side.SELL and order.amount == 43.0
    assert w.ex.net_position(SYMBOL) == 0
    assert second.resolved == (A1,) and not second.positions


def test_a_partly_covered_position_is_protected_for_the_rest_only(tmp_path: Path) -> None:
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    w.attempt(A1, State.ORPHANED)
    rec = w.reconciler(orphans=OrphanAction.PROTECT)

    report = run(rec.check_once, lambda: _stop(w.ex, "foreignstop1", amount=20.0))
    (p,) = report.orphans
    assert p.coverage is Coverage.PARTIAL and p.covered == 20.0 and p.uncovered == 23.0
    assert sorted(s.amount or 0 for s in w.ex.resting_stops(SYMBOL)) == [20.0, 23.0]


# -- unknown positions -------------------------------------------------------------------------


@pytest.mark.parametrize("orphans", list(OrphanAction))
def test_a_position_no_attempt_knows_is_alerted_and_never_touched(
    tmp_path: Path, orphans: OrphanAction
) -> None:
    w = world(tmp_path, initial_positions={SYMBOL: -10.0})
    report = run(w.reconciler(orphans=orphans).check_once)
    (p,) = report.unknown
    assert p.side.value == "short" and p.unexplained == 10.0 and p.attempts == ()
    assert {a.kind for a in report.alerts} == {AlertKind.UNKNOWN_POSITION,
                                               AlertKind.ORPHAN_POSITION}
    assert w.ex.log == []
    assert all(not a.ok for a in report.actions)


def test_more_than_the_attempts_account_for_is_unknown(tmp_path: Path) -> None:
    """The incident's shape: 86 long where one PROTECTED attempt of 43 holds
    its stop. 43 is unexplained; half the position is uncovered."""
    w = world(tmp_path, initial_positions={SYMBOL: 86.0})
    w.attempt(A1, State.PROTECTED)
    report = run(w.reconciler(orphans=OrphanAction.CLOSE).check_once,
                 lambda: _stop(w.ex, client_ids(A1)[1]))
    (p,) = report.positions
    assert p.attempts == (A1,) and p.known == 43.0 and p.unexplained == 43.0
    assert p.coverage is Coverage.PARTIAL and p.orphan
    (act,) = report.actions
    assert not act.ok and "not exactly one attempt" in act.detail
    assert [o.kind for o in w.ex.log] == ["stop"]  # only the test's own stop


def test_a_protected_attempt_whose_stop_is_gone_no_longer_owns_the_position(
    tmp_path: Path,
) -> None:
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    w.attempt(A1, State.PROTECTED)  # its stop is not resting
    report = run(w.reconciler().check_once)
    (p,) = report.positions
    assert p.attempts == () and p.unexplained == 43.0


def test_a_protected_attempt_whose_attached_stop_rests_owns_the_position(
    tmp_path: Path,
) -> None:
    """A stop that travelled with the entry rests under the attached stop's
    client id (OKX attachAlgoClOrdId) or under none but its journalled order
    id (Bybit's PartialStopLoss): either way the attempt owns the position."""
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    w.attempt(A1, State.PROTECTED)
    report = run(w.reconciler().check_once,
                 lambda: _stop(w.ex, attached_stop_id(A1)))
    (p,) = report.positions
    assert p.attempts == (A1,) and p.unexplained == 0 and p.coverage is Coverage.COVERED
    assert report.leftover_stops == ()


def test_the_position_side_must_match_the_attempt(tmp_path: Path) -> None:
    """An ORPHANED buy, but the account is short: the attempt does not own a
    short, so nothing is sent even with the close policy (rule 5)."""
    w = world(tmp_path, initial_positions={SYMBOL: -43.0})
    w.attempt(A1, State.ORPHANED, side="buy")
    report = run(w.reconciler(orphans=OrphanAction.CLOSE).check_once)
    (p,) = report.positions
    assert p.attempts == () and p.unexplained == 43.0
    assert w.ex.log == []
    assert report.still_orphaned == (A1,)


# -- ORPHANED attempts that went flat ----------------------------------------------------------


def test_an_attempt_journalled_with_a_native_symbol_is_not_resolved_while_its_position_is_open(
        tmp_path: Path) -> None:
    """Issue 10, reproduction 1: a journal written with the exchange's own
    spelling ("AVLUSDT") is compared in the canonical one; the 43 still open
    on AVL/USDT:USDT keep the attempt ORPHANED and are its orphan, not an
    unknown position."""
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    w.attempt(A1, State.ORPHANED, symbol="AVLUSDT")
    report = run(w.reconciler().check_once)
    assert report.resolved == () and report.still_orphaned == (A1,)
    (p,) = report.orphans
    assert p.attempts == (A1,) and p.unexplained == 0


def test_an_attempt_whose_symbol_cannot_be_resolved_is_never_called_resolved(
        tmp_path: Path) -> None:
    w = world(tmp_path, strict_symbols=True)
    w.attempt(A1, State.ORPHANED, symbol="GONEUSDT")
    report = run(w.reconciler().check_once)
    assert report.resolved == () and report.still_orphaned == (A1,)



def test_an_orphaned_attempt_now_flat_is_resolved_and_recorded(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.attempt(A1, State.ORPHANED)
    first, second = run(lambda: _twice(w.reconciler()))
    assert first.resolved == (A1,) and not first.still_orphaned
    (s,) = summarize(w.journal.read())
    assert s.resolved
    notes = [r for r in w.journal.read(A1) if r.kind == "resolve"]
    assert len(notes) == 1 and notes[0].data["previous"] == "ORPHANED"
    assert second.resolved == () and second.clean


def test_resolution_waits_for_the_settle_time(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.attempt(A1, State.ORPHANED)
    rec = w.reconciler(settle_time=60.0)
    w.clock.t += 10
    early = run(rec.check_once)
    assert early.resolved == () and early.still_orphaned == (A1,)
    w.clock.t += 60
    late = run(rec.check_once)
    assert late.resolved == (A1,)


def test_resolutions_are_not_recorded_when_the_policy_says_so(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.attempt(A1, State.ORPHANED)
    report = run(w.reconciler(record_resolutions=False).check_once)
    assert report.resolved == (A1,)
    assert not summarize(w.journal.read())[0].resolved


# -- leftover stops ----------------------------------------------------------------------------


async def _leftovers(w: World) -> None:
    """Our stop and a foreign one rest; then the position is closed."""
    await _stop(w.ex, client_ids(A1)[1])
    await _stop(w.ex, "someoneelses1")
    await w.ex.create_order(symbol=SYMBOL, side=Side.SELL, amount=43, client_id="flatten1",
                            reduce_only=True)


def test_leftover_stops_are_reported_and_left_by_default(tmp_path: Path) -> None:
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    w.attempt(A1, State.PROTECTED)
    report = run(w.reconciler().check_once, lambda: _leftovers(w))
    assert {(s.stop.client_id, s.attempt_id, s.cancelled) for s in report.leftover_stops} == {
        (client_ids(A1)[1], A1, False), ("someoneelses1", None, False)}
    assert len(w.ex.resting_stops()) == 2


def test_leftover_stops_of_ours_are_cancelled_when_allowed(tmp_path: Path) -> None:
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    w.attempt(A1, State.PROTECTED)
    report = run(w.reconciler(cancel_leftover_stops=True).check_once, lambda: _leftovers(w))
    (act,) = report.actions
    assert act.kind is ActionKind.CANCEL_STOP and act.ok
    assert [s.client_id for s in w.ex.resting_stops()] == ["someoneelses1"]
    assert any(r.kind == "reconcile" and r.data["action"] == "cancel"
               for r in w.journal.read(A1))


def test_a_stop_of_an_attempt_still_in_flight_is_never_cancelled(tmp_path: Path) -> None:
    """REST may not show the position yet: inside settle_time the stop stays."""
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    w.attempt(A1, State.PROTECTED)
    report = run(w.reconciler(cancel_leftover_stops=True, settle_time=60.0).check_once,
                 lambda: _leftovers(w))
    assert report.actions == ()
    assert len(w.ex.resting_stops()) == 2


# -- unknown is not flat -----------------------------------------------------------------------


def test_a_failed_position_query_is_unknown_never_flat(tmp_path: Path) -> None:
    w = world(tmp_path, faults={"fetch_positions": (Fault.UNAVAILABLE,)})
    w.attempt(A1, State.ORPHANED)
    report = run(w.reconciler(cancel_leftover_stops=True).check_once)
    assert report.positions_status is QueryStatus.FAILED and not report.complete
    assert "unavailable" in (report.positions_error or "")
    assert report.resolved == () and report.still_orphaned == (A1,)
    assert report.positions == () and report.leftover_stops == ()
    assert not report.clean
    assert "UNKNOWN" in report.render()
    assert not summarize(w.journal.read())[0].resolved


def test_a_failed_stop_query_leaves_coverage_unknown(tmp_path: Path) -> None:
    w = world(tmp_path, initial_positions={SYMBOL: 43.0},
              faults={"fetch_stops": (Fault.TIMEOUT_BEFORE,) * 2})
    w.attempt(A1, State.ORPHANED)
    report = run(w.reconciler(orphans=OrphanAction.PROTECT).check_once)
    assert report.stops_status is QueryStatus.FAILED
    (p,) = report.positions
    assert p.coverage is Coverage.UNKNOWN and not p.orphan
    assert report.actions == () and w.ex.log == []


def test_stops_are_fetched_per_symbol_when_all_at_once_is_refused(tmp_path: Path) -> None:
    """Binance refuses an all-symbols open-orders query by default."""
    w = world(tmp_path, initial_positions={SYMBOL: 43.0},
              faults={"fetch_stops": (Fault.UNAVAILABLE,)})
    w.attempt(A1, State.ORPHANED)
    report = run(w.reconciler().check_once, lambda: _stop(w.ex, "foreignstop1"))
    assert report.complete
    assert report.positions[0].coverage is Coverage.COVERED and not report.orphans


# -- attempts in flight, and attempts nobody drives --------------------------------------------


def test_an_attempt_in_flight_is_left_to_its_opener(tmp_path: Path) -> None:
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    w.attempt(A1, None)
    report = run(w.reconciler(orphans=OrphanAction.CLOSE, settle_time=60.0).check_once)
    (p,) = report.positions
    assert p.unsettled == (A1,) and p.orphan
    assert report.alerts == () and report.actions == () and w.ex.log == []


def test_an_unfinished_attempt_past_the_settle_time_asks_for_recovery(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.attempt(A2, None)
    report = run(w.reconciler().check_once)
    assert report.stale == (A2,)
    (alert,) = report.alerts
    assert alert.kind is AlertKind.STALE_ATTEMPT and "recover" in alert.message


# -- the loop ----------------------------------------------------------------------------------


def test_run_backs_off_on_failed_checks_and_resets_after_a_good_one(tmp_path: Path) -> None:
    w = world(tmp_path, faults={"fetch_positions": (Fault.UNAVAILABLE,) * 3})
    rec = w.reconciler()
    seen: list[tuple[float, bool]] = []

    async def go() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_report(r: ReconcileReport) -> None:
            seen.append((round(loop.time()), r.complete))
            if len(seen) == 6:
                stop.set()

        await rec.run(10.0, max_backoff=100.0, on_report=on_report, stop=stop)

    run(go)
    times = [t for t, _ in seen]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert [ok for _, ok in seen] == [False, False, False, True, True, True]
    assert gaps == [20, 40, 80, 10, 10]


def test_run_rejects_a_bad_interval(tmp_path: Path) -> None:
    w = world(tmp_path)
    with pytest.raises(ValueError):
        run(lambda: w.reconciler().run(0))


def test_the_report_renders(tmp_path: Path) -> None:
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    w.attempt(A1, State.ORPHANED)
    text = run(w.reconciler().check_once).render()
    assert "ORPHAN" in text and SYMBOL in text and "read-only" in text


def test_async_alert_callbacks_are_awaited(tmp_path: Path) -> None:
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    got: list[ReconcileAlert] = []

    async def sink(alert: ReconcileAlert) -> None:
        await asyncio.sleep(0.01)
        got.append(alert)

    rec = Reconciler(w.ex, w.journal, policy=ReconcilePolicy(settle_time=0), alerts=sink)
    run(rec.check_once)
    assert [a.kind for a in got] == [AlertKind.ORPHAN_POSITION, AlertKind.UNKNOWN_POSITION]


def test_an_alert_callback_that_hangs_or_fails_never_stops_the_check(tmp_path: Path) -> None:
    """A pager that never answers is given up after ``alert_timeout``, and one
    that raises is logged: the check returns its report, and every alert is
    handed over."""
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    handed: list[ReconcileAlert] = []

    async def hangs(alert: ReconcileAlert) -> None:
        handed.append(alert)
        if alert.kind is AlertKind.ORPHAN_POSITION:
            await asyncio.get_running_loop().create_future()  # never answers
        raise RuntimeError("pager down")

    rec = Reconciler(w.ex, w.journal, alerts=hangs,
                     policy=ReconcilePolicy(settle_time=0, alert_timeout=2.0))

    async def timed() -> tuple[ReconcileReport, float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        report = await rec.check_once()
        return report, loop.time() - t0

    report, took = run(timed)
    assert [a.kind for a in handed] == [AlertKind.ORPHAN_POSITION, AlertKind.UNKNOWN_POSITION]
    assert [a.kind for a in report.alerts] == [a.kind for a in handed]
    assert 2.0 <= took < 2.0 + 1.0


# -- issue 11, reproduction 5: the monitor sees every position and every stop --------------------

BTC = "BTC/USDT:USDT"


def _binance_attempt(journal: Journal, aid: str, end: State, *, stop: bool) -> None:
    """An attempt on BTC that ended ``end``; with ``stop``, it journalled a stop intent."""
    entry, stop_cid, _ = client_ids(aid)
    req = OpenRequest(symbol=BTC, side="buy", amount=0.01, stop_loss=90000.0)
    journal.begin(aid, req, entry, 0.0)
    journal.intent(aid, "entry", entry, 0.0, {"side": "buy", "amount": 0.01})
    if stop:
        journal.intent(aid, "stop", stop_cid, 0.1, {"side": "sell", "amount": 0.01})
    journal.transition(aid, 0.2, {"dest": end.value, "filled": 0.01})
    journal.end(aid, end, 0.2)


def test_binance_a_leftover_stop_of_a_finished_attempt_is_seen(tmp_path: Path) -> None:
    """Issue 11 (5): on Binance USD-M listing stops for all symbols always
    fails, and the per-symbol fallback skipped finished attempts: a leftover
    reduce-only stop of a CLOSE_VERIFIED attempt was never seen and the
    report said ``stops: failed`` (exit 2) forever."""
    from adapters.ccxt import CcxtAdapter
    from tests import ccxt_fake as F

    venue = F.FakeBinanceUsdm()
    journal = Journal(tmp_path / "j.sqlite3", wall_clock=Clock())
    _binance_attempt(journal, A1, State.CLOSE_VERIFIED, stop=True)

    async def go() -> ReconcileReport:
        ex = F.binanceusdm(venue)
        await F.load_markets_offline(ex, venue)
        adapter = CcxtAdapter(ex)
        try:
            await adapter.place_stop(symbol=BTC, side=Side.SELL, amount=0.01,
                                     trigger_price=90000.0, client_id=client_ids(A1)[1])
            rec = Reconciler(adapter, journal, policy=ReconcilePolicy(settle_time=0),
                             clock=Clock(1_000_100.0))
            return await rec.check_once()
        finally:
            await ex.close()

    report = run_virtual(go())
    assert report.stops_status is QueryStatus.OK, report.render()
    assert report.complete and report.stops_scope == (BTC,)
    ((stop_found, owner),) = [(s.stop, s.attempt_id) for s in report.leftover_stops]
    assert stop_found.client_id == client_ids(A1)[1] and owner == A1
    assert not report.clean and "leftover stop" in report.render()


class _HedgedBinance:
    """Builds a Binance venue in hedge mode: ``/fapi/v3/positionRisk`` lists
    a LONG and a SHORT leg of BTC, as Binance does with dual-side positions."""

    @staticmethod
    def venue() -> Any:
        from tests import ccxt_fake as F

        class Hedged(F.FakeBinanceUsdm):
            def _positions(self, p: dict[str, Any]) -> list[dict[str, Any]]:
                legs = []
                for side, amt in (("LONG", "10"), ("SHORT", "-10")):
                    raw: dict[str, Any] = F.load("binance", "position_risk_v3")
                    raw.update({"symbol": "BTCUSDT", "positionSide": side, "positionAmt": amt,
                                "entryPrice": "95000", "markPrice": "95000",
                                "notional": str(float(amt) * 95000),
                                "updateTime": self.ms()})
                    legs.append(raw)
                return legs

        return Hedged()


def test_hedge_mode_long_and_short_without_stops_are_two_findings_not_clean(
        tmp_path: Path) -> None:
    """Issue 11 (5): an account long 10 and short 10 (hedge mode) with no
    stops was reported clean: the legs were netted to flat."""
    from adapters.ccxt import CcxtAdapter
    from tests import ccxt_fake as F

    venue = _HedgedBinance.venue()
    journal = Journal(tmp_path / "j.sqlite3", wall_clock=Clock())
    alerts: list[ReconcileAlert] = []

    async def go() -> ReconcileReport:
        ex = F.binanceusdm(venue)
        await F.load_markets_offline(ex, venue)
        try:
            rec = Reconciler(CcxtAdapter(ex), journal, policy=ReconcilePolicy(settle_time=0),
                             alerts=alerts.append, clock=Clock())
            return await rec.check_once()
        finally:
            await ex.close()

    report = run_virtual(go())
    assert report.complete, report.render()
    assert not report.clean
    legs = sorted((p.side.value, p.size, p.coverage) for p in report.positions)
    assert legs == [("long", 10.0, Coverage.NONE), ("short", 10.0, Coverage.NONE)]
    assert len(report.orphans) == 2 and len(report.unknown) == 2
    assert sorted((a.kind.value, "long" in a.message) for a in alerts) == [
        ("orphan_position", False), ("orphan_position", True),
        ("unknown_position", False), ("unknown_position", True)]


def test_run_survives_a_failing_on_report_and_a_failing_check(tmp_path: Path) -> None:
    """Issue 11 (5): ``Reconciler.run()`` died on the first exception raised
    by ``on_report``; it must log it and go on, as after a failed check."""
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    w.attempt(A1, State.ORPHANED)
    rec = w.reconciler()
    calls: list[int] = []
    real_check = rec.check_once
    failed_checks: list[int] = []

    async def flaky_check() -> ReconcileReport:
        if not failed_checks:
            failed_checks.append(1)
            raise RuntimeError("the exchange blew up")
        return await real_check()

    rec.check_once = flaky_check  # type: ignore[method-assign]

    async def go() -> None:
        stop = asyncio.Event()

        def on_report(r: ReconcileReport) -> None:
            calls.append(1)
            if len(calls) == 3:
                stop.set()
            raise ValueError("a bug in the caller's callback")

        async with asyncio.timeout(1000):
            await rec.run(10.0, on_report=on_report, stop=stop)

    run(go)
    assert len(calls) == 3 and failed_checks == [1]
    assert [a.kind for a in w.alerts] == [AlertKind.ORPHAN_POSITION]  # once in three checks


def test_run_awaits_an_async_on_report_and_survives_it(tmp_path: Path) -> None:
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    w.attempt(A1, State.ORPHANED)
    rec = w.reconciler()
    calls: list[int] = []

    async def go() -> None:
        stop = asyncio.Event()

        async def on_report(r: ReconcileReport) -> None:
            await asyncio.sleep(0.01)
            calls.append(1)
            if len(calls) == 2:
                stop.set()
            raise ValueError("a bug in the caller's async callback")

        async with asyncio.timeout(1000):
            await rec.run(10.0, on_report=on_report, stop=stop)

    run(go)
    assert len(calls) == 2


def test_a_failed_query_between_two_checks_does_not_alert_again(tmp_path: Path) -> None:
    """Issue 11 (5): alerts are once per finding, not once per tick: a check
    whose position query failed saw nothing, so the orphan did not go away."""
    w = world(tmp_path, initial_positions={SYMBOL: 43.0},
              faults={"fetch_positions": (Fault.OK, Fault.UNAVAILABLE)})
    w.attempt(A1, State.ORPHANED)
    rec = w.reconciler()

    async def thrice() -> list[ReconcileReport]:
        return [await rec.check_once() for _ in range(3)]

    first, failed, third = run(thrice)
    assert failed.positions_status is QueryStatus.FAILED
    assert [a.kind for a in first.alerts] == [AlertKind.ORPHAN_POSITION]
    assert failed.alerts == () and third.alerts == ()
    assert len(w.alerts) == 1


def test_a_finding_that_changes_alerts_afresh(tmp_path: Path) -> None:
    w = world(tmp_path, initial_positions={SYMBOL: 43.0})
    w.attempt(A1, State.ORPHANED)
    rec = w.reconciler()

    async def go() -> tuple[ReconcileReport, ReconcileReport, ReconcileReport]:
        first = await rec.check_once()
        await _stop(w.ex, "partial1", amount=20.0)  # now 23 uncovered: a new finding
        second = await rec.check_once()
        third = await rec.check_once()
        return first, second, third

    first, second, third = run(go)
    assert [a.kind for a in first.alerts] == [AlertKind.ORPHAN_POSITION]
    (changed,) = second.alerts
    assert changed.kind is AlertKind.ORPHAN_POSITION and "23 uncovered" in changed.message
    assert third.alerts == ()
