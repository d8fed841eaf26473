"""The laws of ``DESIGN.md``, one spec each, checked on drawn worlds.

Every spec runs the real engine (:class:`fsm.PositionOpener`) against the
simulated exchange in virtual time, in a **shared account** (a position held
before the run, an operator trading by hand on the same symbol, other
attempts), and judges the result by the simulator's ground truth, never by
what the engine believes: per attempt, by the ledger of ``adapters/simulated/ledger.py``
(its live exposure, its entry's true fill, its own signed net, the foreign
exposure it touched), and by ``resting_stops`` and the order ``log``. The
``check_*`` functions are the laws as code; the legacy witness runs the same
exposure check against the incident's rules.

Law L10 (crash and recovery) is specified in ``test_crash_recovery.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import assume, event, example, given, note, settings
from hypothesis import strategies as st

from adapters.port import Side, StopSnapshot, qty_eq
from adapters.simulated import (
    DEFAULT_MARKETS,
    AckStyle,
    ClientIdScope,
    Fault,
    OperatorMove,
    SimConfig,
    SimulatedExchange,
    StreamMode,
)
from adapters.simulated.ledger import Ledger, describe
from fsm import Attempt, OpenRequest, Policy, State, attached_stop_id, client_ids
from fsm.attempt import Transition
from fsm.evidence import Facts
from fsm.guards import GUARDS
from fsm.table import TABLE, TERMINAL, Row
from specs.worlds import (
    SYMBOLS,
    Outcome,
    Run,
    World,
    answers_within_deadlines,
    canonical,
    held_before,
    run_many,
    run_world,
    timely_worlds,
    worlds,
)

__all__ = ["ClientIdScope", "OperatorMove"]  # for pasting drawn worlds into @example

_TOL = 1e-9


def _le(a: float, b: float) -> bool:
    return a <= b or qty_eq(a, b, rel=_TOL)


def _signed(side: Side, qty: float) -> float:
    return qty if side is Side.BUY else -qty


def entry_fill(exchange: SimulatedExchange, attempt: Attempt) -> float:
    """Ground truth: what the entry order (our client id) actually filled,
    every execution of it included (a duplicate that executed again too)."""
    return sum(f.amount for f in exchange.fills if f.client_id == attempt.client_id)


def _describe(o: Outcome) -> str:
    lines = [f"world: {o.world!r}"]
    for r in o.runs:
        a = r.attempt
        lines.append(f"run {r.request!r}: {a!r} in {r.duration:.6g}s "
                     f"[{r.started:.6f}, {r.ended:.6f}]"
                     + (f" refused: {r.refused}" if r.refused else ""))
        if a is not None:
            lines += [f"  {s.at:.6f} {s.describe()}" for s in a.history]
            lines.append(f"  ledger: {o.ledger(r)!r}")
    lines.append("exchange log:")
    lines += [f"  {s!r}" for s in o.exchange.log]
    for sym in sorted({r.symbol for r in o.runs}):
        lines.append(f"executions on {sym} (held before: "
                     f"{o.world.config.initial_positions.get(sym, 0.0):g}):")
        lines += describe(o.exchange.fills, sym)
    lines.append("fetch_fills arrivals: " + ", ".join(
        f"{a.at:.6f}@{a.tag}" for a in o.exchange.arrivals if a.kind == "fetch_fills"))
    lines.append(f"alerts: {[al.message for al in o.alerts]}")
    return "\n".join(lines)


def _observe(o: Outcome) -> None:
    """Attach the run to the example (printed if it fails) and tally, for
    ``--hypothesis-show-statistics``: the ending, the position held before,
    and whether the operator traded while the attempt ran."""
    note(_describe(o))
    for r in o.runs:
        event("ending", r.attempt.state.value if r.attempt else "refused before sending")
        event("held before the attempt", held_before(o.world.config, r.request))
        event("operator traded during the attempt", str(o.operator_during(r)))
        if r.attempt is not None:
            f = r.attempt.facts
            mode = ("attached, fell back" if f.attached_failed is not None else "attached"
                    ) if f.stop_attached else "separate"
            event("protection", mode)


def _alone(o: Outcome, run: Run) -> bool:
    """The attempt was alone on its symbol: nothing held before, no operator,
    no other attempt. The laws then read as before the account was shared."""
    c = o.world.config
    sym = run.symbol
    return (c.initial_positions.get(sym, 0.0) == 0
            and not any(canonical(m.symbol) == sym for m in c.operator)
            and sum(r.symbol == sym for r in o.runs) == 1)


# -- the laws as checks over ground truth ------------------------------------------------------


def check_l1(led: Ledger | None, request: OpenRequest) -> None:
    """L1': the attempt's own fills never moved the account's net position by
    more than the requested amount, in either direction (|own signed net| <=
    amount at every point)."""
    if led is None:
        return
    assert _le(led.own_max_abs, request.amount), (
        f"L1 broken: the attempt's own fills reached |net| = {led.own_max_abs:g} for a "
        f"request of {request.amount:g} (own net at the end {led.own_net:g})")


def check_l2(exchange: SimulatedExchange, attempts: Sequence[Attempt]) -> None:
    """L2: the only accepted orders that can add exposure are the entries,
    one per attempt; every other accepted order is reduce-only."""
    entries = {a.client_id for a in attempts}
    seen: set[str | None] = set()
    for o in exchange.log:
        if not o.accepted or o.reduce_only:
            continue
        assert o.kind == "market" and o.client_id in entries, (
            f"L2 broken: accepted non-reduce-only {o.kind} {o.side.value} {o.amount:g} "
            f"(client id {o.client_id}) is not an entry")
        assert o.client_id not in seen, f"L2 broken: entry {o.client_id} accepted twice"
        seen.add(o.client_id)
    for a in attempts:
        sent = [o for o in exchange.log if o.client_id == a.client_id]
        assert len(sent) <= 1, f"L2 broken: entry {a.client_id} sent {len(sent)} times"
        assert all(o.side is a.request.side for o in sent), "L2 broken: entry on the wrong side"


def l3_bound(policy: Policy, request: OpenRequest) -> float:
    """The L3 bound, derived from the policy: the phase windows, each overrun
    by at most its in-flight requests (:attr:`Policy.max_duration`), plus the
    reference-price request made before anything is sent when the request
    carries no ``reference_price``."""
    pre = policy.request_timeout if request.reference_price is None else 0.0
    return policy.max_duration + pre


def check_l3(o: Outcome) -> None:
    for r in o.runs:
        if r.attempt is None:
            continue
        assert r.attempt.state in TERMINAL, f"L3 broken: ended in {r.attempt.state}"
        bound = l3_bound(o.world.policy, r.request)
        assert _le(r.duration, bound), (
            f"L3 broken: open() took {r.duration:.6g}s of virtual time, bound {bound:.6g}s")


def _tick(symbol: str) -> float:
    return DEFAULT_MARKETS[canonical(symbol)].price_step or 0.0


def check_l4(exchange: SimulatedExchange, run: Run, led: Ledger | None) -> None:
    """L4': PROTECTED => the attempt's own reduce-only stop rests on the
    opposite side, at the requested price (rounded at most one tick away from
    the market), for exactly the attempt's true entry fill."""
    attempt = run.attempt
    if attempt is None or attempt.state is not State.PROTECTED:
        return
    assert led is not None
    r = run.request
    fill = led.entry_filled
    assert fill > 0, "L4 broken: PROTECTED but the entry filled nothing"
    # The separate stop, or the one attached to the entry: exactly one rests.
    stop_cids = (client_ids(attempt.attempt_id)[1], attached_stop_id(attempt.attempt_id))
    mine = [s for s in exchange.resting_stops(run.symbol) if s.client_id in stop_cids]
    assert len(mine) == 1, f"L4 broken: PROTECTED with own resting stops {mine}"
    s = mine[0]
    assert s.reduce_only, f"L4 broken: stop {s} is not reduce-only"
    assert s.side is r.side.closing_side, f"L4 broken: stop {s} is not on the opposite side"
    assert s.trigger_price is not None
    tick, eps = _tick(r.symbol), 1e-9 * r.stop_loss
    away = (r.stop_loss - s.trigger_price if r.side is Side.BUY
            else s.trigger_price - r.stop_loss)
    assert -eps <= away < tick + eps or qty_eq(away, 0.0), (
        f"L4 broken: stop at {s.trigger_price}, asked {r.stop_loss} (tick {tick:g})")
    assert qty_eq(s.amount or 0.0, fill), (
        f"L4 broken: own stop covers {s.amount}, the entry filled {fill:g}")


def check_l5(exchange: SimulatedExchange, run: Run, led: Ledger | None) -> None:
    """L5': CLOSE_VERIFIED => the attempt's own exposure is 0 (once every
    request still on its way has landed); REJECTED => its entry never filled
    anything."""
    attempt = run.attempt
    if attempt is None or led is None:
        return
    if attempt.state is State.CLOSE_VERIFIED:
        assert qty_eq(led.exposure, 0.0, abs_=1e-9), (
            f"L5 broken: CLOSE_VERIFIED but the attempt's own exposure is {led.exposure:g}")
    if attempt.state is State.REJECTED:
        assert led.entry_filled == 0, (
            f"L5 broken: REJECTED but the entry filled {led.entry_filled:g}")


def check_l11(run: Run, led: Ledger | None) -> None:
    """L11: the attempt never reduced exposure it did not create (an operator
    trade between its last fetch_fills and its close's arrival excused)."""
    if led is None:
        return
    if led.touches:
        event("L11: foreign exposure touched, excused by the race", str(led.foreign_touched == 0))
    assert led.foreign_touched == 0, (
        f"L11 broken: {run.attempt!r} reduced {led.foreign_touched:g} of exposure it did "
        f"not create: {led.touches}")


def check_alone(exchange: SimulatedExchange, run: Run, led: Ledger | None) -> None:
    """Alone on an empty account, L1, L4 and L5 read as before: the net is the
    attempt's own, PROTECTED means net = fill, CLOSE_VERIFIED and REJECTED flat."""
    a = run.attempt
    if a is None or led is None:
        return
    net = exchange.net_position(run.symbol)
    assert qty_eq(net, led.own_net * (1 if run.request.side is Side.BUY else -1),
                  abs_=1e-9), f"alone, yet net {net:g} != own net {led.own_net:g}"
    if a.state in (State.CLOSE_VERIFIED, State.REJECTED):
        assert qty_eq(net, 0.0, abs_=1e-9), f"L5 broken: {a.state.value} but net is {net:g}"
    if a.state is State.PROTECTED:
        assert qty_eq(abs(net), led.entry_filled), (
            f"L4 broken: PROTECTED but net is {net:g}, entry filled {led.entry_filled:g}")


def check_attempt(o: Outcome, run: Run) -> None:
    """L1', L4', L5' and L11 for one attempt (and the alone reading)."""
    led = o.ledger(run)
    check_l1(led, run.request)
    check_l4(o.exchange, run, led)
    check_l5(o.exchange, run, led)
    check_l11(run, led)
    if _alone(o, run):
        check_alone(o.exchange, run, led)


def check_l6(o: Outcome) -> None:
    """L6: ORPHANED => exactly one alert, and the attempt is journalled."""
    attempts = [r.attempt for r in o.runs if r.attempt is not None]
    for a in attempts:
        mine = [al for al in o.alerts if al.attempt_id == a.attempt_id]
        if a.state is State.ORPHANED:
            assert len(mine) == 1, f"L6 broken: ORPHANED with {len(mine)} alerts"
            al = mine[0]
            assert al.symbol in (a.request.symbol, canonical(a.request.symbol)) and al.message
            recs = [rec for rec in o.journal.records if rec.attempt_id == a.attempt_id]
            kinds = [rec.kind for rec in recs]
            assert kinds[:1] == ["begin"], f"L6 broken: journal begins with {kinds[:1]}"
            assert kinds.count("transition") == len(a.history), (
                "L6 broken: journal does not hold every transition")
            assert recs[-1].kind == "end" and recs[-1].data["state"] is State.ORPHANED, (
                "L6 broken: the journal does not record the ORPHANED end")
        else:
            assert not mine, f"L6 broken: {a.state.value} attempt alerted {len(mine)} times"
    assert len(o.alerts) == sum(a.state is State.ORPHANED for a in attempts)


def _rows(trigger: object, source: State) -> list[Row]:
    return [row for row in TABLE if row.trigger is trigger and source in row.sources]


def check_l7(o: Outcome) -> None:
    """L7: the history is a path in TABLE from NEW, every step is the first
    row (in table order) whose guards hold, and every guard it records holds
    when re-evaluated over the facts that step saw."""
    fired: dict[str, list[tuple[Transition, Facts]]] = {}
    for attempt_id, step, facts in o.recorder.fired:
        fired.setdefault(attempt_id, []).append((step, facts))
    for r in o.runs:
        a = r.attempt
        if a is None:
            continue
        history = a.history
        assert history, "L7 broken: an attempt with no history"
        assert [s for s, _ in fired[a.attempt_id]] == list(history), (
            "L7 broken: the history is not what the machine fired")
        state = State.NEW
        for step, facts in fired[a.attempt_id]:
            assert step.source is state, (
                f"L7 broken: step {step.describe()} starts from {step.source}, not {state}")
            assert not state.terminal, f"L7 broken: a step after terminal {state}"
            rows = _rows(step.trigger, state)
            assert rows, f"L7 broken: no row for {step.trigger} from {state}"
            results = [{g: GUARDS[g](facts) for g in row.guards} for row in rows]
            chosen = next(i for i, res in enumerate(results) if all(res.values()))
            row = rows[chosen]
            assert step.dest is row.dest, f"L7 broken: {step.describe()} != row {row}"
            assert tuple(g for g, _ in step.guards) == row.guards, (
                f"L7 broken: recorded guards {step.guards} != row guards {row.guards}")
            for name, ok in step.guards:
                assert ok and GUARDS[name](facts), f"L7 broken: guard {name} did not hold"
            assert facts.now == step.at, "L7 broken: a step's time is not its facts' time"
            state = step.dest
        assert state is a.state and state.terminal


# -- the specs ---------------------------------------------------------------------------------

AVL = "AVL/USDT:USDT"
_INCIDENT = World(
    SimConfig(ack=AckStyle.MINIMAL, rest_position_lag=4.0, stream=StreamMode.PRESENT,
              prices=dict(SYMBOLS)),
    Policy(),
    (OpenRequest(AVL, "buy", 43, 0.1290, reference_price=SYMBOLS[AVL]),),
)
_AMBIGUOUS_CREATE = World(
    SimConfig(ack=AckStyle.MINIMAL, faults={"create": (Fault.TIMEOUT_AFTER,)},
              rest_position_lag=1e6, prices=dict(SYMBOLS)),
    Policy(),
    (OpenRequest(AVL, "sell", 43, 0.14, reference_price=SYMBOLS[AVL]),),
)


#: Found by L9's spec in a deep run: a tight back-off cap makes hundreds of
#: polls in one window and ``Policy.backoff``'s ``factor**attempt`` raised
#: OverflowError out of ``open()`` (no terminal state: L3). Fixed in
#: ``Policy.backoff``. The deadline a few ULPs after the create's timeout
#: also exposed the virtual clock never reaching timers asyncio runs early
#: (fixed in ``adapters/virtual_time.py``).
_BACKOFF_OVERFLOW = World(
    SimConfig(seed=4294967294, rtt=2.2250738585072014e-308, client_timeout=0.5,
              rest_position_lag=1e6, stream=StreamMode.PRESENT, stream_lag=0.0,
              faults={"fetch_order": (Fault.OK,), "create": (Fault.TIMEOUT_BEFORE,)},
              prices=dict(SYMBOLS)),
    Policy(verify_timeout=0.5000000000000001, close_timeout=17.339043311683056,
           protect_timeout=0.5, request_timeout=4.747198313798766,
           backoff_initial=0.3899533391890516, backoff_factor=2.2737522840758055,
           backoff_max=1.9522108087235002),
    (OpenRequest(AVL, "buy", 40.0, 0.08155990224682795, reference_price=SYMBOLS[AVL]),),
)
#: The same overflow in an ordinary world: the entry is never visible to
#: fetch_order, and a 10 ms back-off cap polls ~1,800 times in 20 s.
#: Found by L3's spec: reads before the entry kept timing out under jitter,
#: each read with its own ``verify_timeout``, so the market read and the
#: account read together took longer than any window the bound knew of.
_SLOW_PRE_ENTRY = World(
    SimConfig(seed=1, jitter=0.5, client_timeout=1.0, stream_lag=0.0, prices=dict(SYMBOLS),
              delayed_arrival=5.0),
    Policy(verify_timeout=7.0, close_timeout=1.0, protect_timeout=1.0, request_timeout=0.21875,
           backoff_initial=0.5, backoff_factor=2.0, backoff_max=0.75),
    (OpenRequest(AVL, "buy", 1.0, 0.0679, reference_price=SYMBOLS[AVL]),),
)
_TIGHT_POLLING = World(
    SimConfig(rtt=0.001, ack=AckStyle.MINIMAL, order_visibility_lag=30.0, prices=dict(SYMBOLS)),
    Policy(verify_timeout=20.0, backoff_initial=0.01, backoff_max=0.01, backoff_factor=3.0),
    (OpenRequest(AVL, "buy", 40.0, 0.1, reference_price=SYMBOLS[AVL]),),
)


#: Issue 10, reproduction 2: account long 10 before, open long 43, the stop refused, REST
#: views without a timestamp (as ccxt reports them). The rollback sized its close from the
#: stale "long 10" and sold the pre-existing 10, leaving its own 43 without a stop.
_SAME_SIDE_STALE_CLOSE = World(
    SimConfig(rest_position_lag=4.0, rest_timestamps=False, stop_rejected=True,
              initial_positions={AVL: 10.0}, prices=dict(SYMBOLS)),
    Policy(),
    (OpenRequest(AVL, "buy", 43.0, 0.1290, reference_price=SYMBOLS[AVL]),),
)
#: Issue 10, reproduction 5: account short 10, buy 43. Opening nets the user's short away.
_OPPOSITE_HELD = World(
    SimConfig(initial_positions={AVL: -10.0}, prices=dict(SYMBOLS)),
    Policy(),
    (OpenRequest(AVL, "buy", 43.0, 0.1290, reference_price=SYMBOLS[AVL]),),
)
#: The hostile venue (issue 16): each betrayal in a world where the attempt
#: reaches the step it betrays. A stop the venue made other than asked (not
#: reduce-only, the wrong side, another size) must never end PROTECTED (L4):
#: the specs alone catch a stop guard that always holds.
_STOP_NOT_REDUCE_ONLY = World(
    SimConfig(stop_drops_reduce_only=True, prices=dict(SYMBOLS)), Policy(),
    (OpenRequest(AVL, "buy", 43.0, 0.1290, reference_price=SYMBOLS[AVL]),),
)
_STOP_WRONG_SIDE = World(
    SimConfig(stop_flips_side=True, prices=dict(SYMBOLS)), Policy(),
    (OpenRequest(AVL, "sell", 43.0, 0.14, reference_price=SYMBOLS[AVL]),),
)
#: Found by the hostile venue (issue 16): the stop's acknowledgement carries its
#: ids only (Bybit v5), and the venue dropped the reduce-only flag. The engine took
#: the silent reply as agreement and ended PROTECTED on a stop that can open a
#: position. Fixed in the driver: a stop whose reply leaves a field unreported is
#: read back before it protects anything.
_STOP_SILENTLY_NOT_REDUCE_ONLY = World(
    SimConfig(stop_drops_reduce_only=True, stop_ack_ids_only=True, prices=dict(SYMBOLS)),
    Policy(),
    (OpenRequest(AVL, "buy", 43.0, 0.1290, reference_price=SYMBOLS[AVL]),),
)
#: Found by the same-symbol spec under the hostile venue (issue 16): the venue made
#: one attempt's stop without reduce-only; the operator's trade made the rollback
#: send nothing and end ORPHANED, and the stop that could open a position stayed
#: resting. Fixed in the driver: a rollback first cancels a stop the venue made
#: other than asked.
_WRONG_STOP_LEFT = World(
    SimConfig(client_timeout=1.0, stream_lag=0.0, prices=dict(SYMBOLS), delayed_arrival=5.0,
              operator=(OperatorMove(at=0.375, symbol=AVL, delta=1.0),),
              stop_drops_reduce_only=True),
    Policy(),
    (OpenRequest(AVL, "buy", 1.0, 0.0679, reference_price=0.1358),
     OpenRequest(AVL, "buy", 1.0, 0.0679, reference_price=0.1358)),
)
_STOP_WRONG_SIZE = World(
    SimConfig(stop_amount_skew=1.0, prices=dict(SYMBOLS)), Policy(),
    (OpenRequest(AVL, "buy", 43.0, 0.1290, reference_price=SYMBOLS[AVL]),),
)
#: Acknowledgements with one id of two: the order may exist either way (L8:
#: still PROTECTED; an entry guard that needed both ids would refuse it).
_ACK_ORDER_ID_ONLY = World(
    SimConfig(ack=AckStyle.MINIMAL, ack_only="order_id", prices=dict(SYMBOLS)), Policy(),
    (OpenRequest(AVL, "buy", 43.0, 0.1290, reference_price=SYMBOLS[AVL]),),
)
_ACK_CLIENT_ID_ONLY = World(
    SimConfig(ack=AckStyle.MINIMAL, ack_only="client_id", prices=dict(SYMBOLS)), Policy(),
    (OpenRequest(AVL, "buy", 43.0, 0.1290, reference_price=SYMBOLS[AVL]),),
)
#: The stream's message stamped with the fill's instant still shows the
#: account before the fill (late by exactly zero time); the stop and the close
#: are refused, so only a view can prove flat. A flat view stamped the fill's
#: instant proves nothing (L5).
_STALE_AT_FILL = World(
    SimConfig(stream=StreamMode.PRESENT, stream_lag=0.01, stream_stale_at_move=30.0,
              stop_rejected=True, close_rejected=True, prices=dict(SYMBOLS)), Policy(),
    (OpenRequest(AVL, "buy", 43.0, 0.1290, reference_price=SYMBOLS[AVL]),),
)
_STALE_AT_FILL_PROTECTED = World(
    SimConfig(stream=StreamMode.PRESENT, stream_lag=0.01, stream_stale_at_move=30.0,
              prices=dict(SYMBOLS)), Policy(),
    (OpenRequest(AVL, "buy", 43.0, 0.1290, reference_price=SYMBOLS[AVL]),),
)
#: Account long 10 before; the operator sells 30 while the attempt rolls back, so
#: the rollback's close (43) is larger than the position (23): the venue cuts it to
#: the position and reports it filled in full. It covers less than the attempt's
#: exposure, so it proves nothing (L5, L11).
_CLOSE_CUT = World(
    SimConfig(close_cut_to_position=True, stop_rejected=True, rest_timestamps=True,
              initial_positions={AVL: 10.0},
              operator=(OperatorMove(at=0.05, symbol=AVL, delta=-30.0),),
              prices=dict(SYMBOLS)), Policy(),
    (OpenRequest(AVL, "buy", 43.0, 0.1290, reference_price=SYMBOLS[AVL]),),
)
#: L8 in a shared account: long 10 already held, REST without timestamps and 4 s behind,
#: minimal ack; the operator buys 5 more while the attempt runs. Still PROTECTED.
_SAME_SIDE_UNSTAMPED = World(
    SimConfig(ack=AckStyle.MINIMAL, rest_position_lag=4.0, rest_timestamps=False,
              initial_positions={AVL: 10.0},
              operator=(OperatorMove(at=0.01, symbol=AVL, delta=5.0),), prices=dict(SYMBOLS)),
    Policy(),
    (OpenRequest("AVLUSDT", "buy", 43.0, 0.1290, reference_price=SYMBOLS[AVL]),),
)


@given(worlds())
@example(_INCIDENT)
@example(_AMBIGUOUS_CREATE)
def test_l1_net_position_never_exceeds_requested_amount(world: World) -> None:
    """L1': the attempt's own orders never move the account's net position by more than the
    requested amount, in either direction."""
    o = run_world(world)
    _observe(o)
    check_l1(o.ledger(o.run), world.request)
    if _alone(o, o.run):
        check_alone(o.exchange, o.run, o.ledger(o.run))


@given(worlds())
@example(_INCIDENT)
@example(_AMBIGUOUS_CREATE)
def test_l2_only_the_entry_order_increases_exposure(world: World) -> None:
    """L2: the only order that can increase exposure is the one entry order."""
    o = run_world(world)
    _observe(o)
    if o.attempt is None:
        assert not o.exchange.log, "refused with BadRequest after sending"
        return
    check_l2(o.exchange, [o.attempt])


@given(worlds())
@example(_INCIDENT)
@example(_BACKOFF_OVERFLOW)
@example(_TIGHT_POLLING)
@example(_SLOW_PRE_ENTRY)
def test_l3_attempt_terminates_within_policy_bound(world: World) -> None:
    """L3: the attempt ends in a terminal state within a bound derived from the policy."""
    o = run_world(world)
    _observe(o)
    check_l3(o)


@given(worlds())
@example(_INCIDENT)
@example(_STOP_NOT_REDUCE_ONLY)
@example(_STOP_WRONG_SIDE)
@example(_STOP_WRONG_SIZE)
@example(_STOP_SILENTLY_NOT_REDUCE_ONLY)
def test_l4_protected_means_an_exact_reduce_only_stop(world: World) -> None:
    """L4': PROTECTED => the attempt's own reduce-only stop, on the opposite side, covers
    exactly the attempt's verified fill."""
    o = run_world(world)
    _observe(o)
    led = o.ledger(o.run)
    check_l4(o.exchange, o.run, led)
    if _alone(o, o.run):
        check_alone(o.exchange, o.run, led)


@given(worlds())
@example(_AMBIGUOUS_CREATE)
@example(_STALE_AT_FILL)
@example(_CLOSE_CUT)
def test_l5_close_verified_and_rejected_mean_flat(world: World) -> None:
    """L5': CLOSE_VERIFIED => the attempt's own fill is closed; REJECTED => nothing of the
    attempt filled, even once every delayed request has landed."""
    o = run_world(world)
    _observe(o)
    led = o.ledger(o.run)
    check_l5(o.exchange, o.run, led)
    if _alone(o, o.run):
        check_alone(o.exchange, o.run, led)


@given(worlds())
def test_l6_orphaned_means_one_alert_and_a_journal(world: World) -> None:
    """L6: ORPHANED => exactly one alert, and the attempt is journalled."""
    o = run_world(world)
    _observe(o)
    check_l6(o)


@given(worlds())
@example(_INCIDENT)
@example(_AMBIGUOUS_CREATE)
def test_l7_history_is_a_path_in_the_table_with_guards_that_held(world: World) -> None:
    """L7: the history is a path in the table from NEW, and every guard it passed held."""
    o = run_world(world)
    _observe(o)
    check_l7(o)


@given(timely_worlds())
@example(_INCIDENT)
@example(_SAME_SIDE_UNSTAMPED)
@example(_ACK_ORDER_ID_ONLY)
@example(_ACK_CLIENT_ID_ONLY)
@example(_STALE_AT_FILL_PROTECTED)
def test_l8_no_false_rollback_when_the_exchange_answers_in_time(world: World) -> None:
    """L8: when the entry fills and the exchange answers within the deadlines, however
    late its REST view (timestamped or not), and nothing on the account works against the
    attempt (no opposite position, the operator only adds to its side), it ends
    PROTECTED."""
    assume(answers_within_deadlines(world))
    o = run_world(world)
    _observe(o)
    assert o.attempt is not None, f"refused: {o.run.refused}"
    # A partial fill is whole lots: a fraction of one lot fills nothing, and
    # REJECTED is then the truth, not a false rollback.
    led = o.ledger(o.run)
    assert led is not None
    assume(led.entry_filled > 0)
    assert o.attempt.state is State.PROTECTED, (
        f"L8 broken: {o.attempt.state.value} in a timely world")


@given(worlds())
@example(_INCIDENT)
@example(_BACKOFF_OVERFLOW)
def test_l9_same_world_same_seed_same_history(world: World) -> None:
    """L9: the same world and seed give the same history (deterministic simulation)."""
    first, second = run_world(world), run_world(world)
    _observe(first)

    def trace(o: Outcome) -> list[tuple[float, str]]:
        a = o.attempt
        return [(s.at, s.describe()) for s in a.history] if a is not None else []

    assert trace(first) == trace(second), "L9 broken: histories differ"
    assert first.exchange.log == second.exchange.log, "L9 broken: exchange logs differ"
    assert first.exchange.fills == second.exchange.fills, "L9 broken: executions differ"
    assert first.run.duration == second.run.duration


@given(worlds())
@example(_INCIDENT)
@example(_SAME_SIDE_STALE_CLOSE)
@example(_OPPOSITE_HELD)
def test_l11_never_reduces_exposure_it_did_not_create(world: World) -> None:
    """L11: the attempt never reduces exposure it did not create, whatever the operator
    does."""
    o = run_world(world)
    _observe(o)
    check_l11(o.run, o.ledger(o.run))


def _check_all_single(o: Outcome) -> None:
    check_l3(o)
    check_l6(o)
    check_l7(o)
    attempts = [r.attempt for r in o.runs if r.attempt is not None]
    check_l2(o.exchange, attempts)
    for r in o.runs:
        check_attempt(o, r)


_CONCURRENT = max(20, settings().max_examples // 2)


@settings(max_examples=_CONCURRENT)
@given(st.integers(min_value=2, max_value=3).flatmap(
    lambda n: worlds(attempts=n, same_symbol=False)))
def test_concurrent_attempts_on_different_symbols_keep_every_law(world: World) -> None:
    """Concurrent attempts on different symbols through one opener each keep L1-L7 and
    L11, as if alone."""
    o = run_many(world)
    _observe(o)
    _check_all_single(o)


#: Found by this spec: the second attempt's rollback sized its close from a
#: lagging stream snapshot of the *first* attempt's position (long 1, not
#: long 2) and took the close's full fill as proof of flat, leaving 1 open
#: under CLOSE_VERIFIED. Fixed in guards.position_flat (a close proves flat
#: only if it covers the attempt's exposure) and driver._stream_position
#: (a snapshot older than our fill says nothing about it).
_STALE_STREAM_CLOSE = World(
    SimConfig(rtt=0.03, client_timeout=1.0, ack=AckStyle.MINIMAL, stream=StreamMode.PRESENT,
              stream_lag=0.5, stop_rejected=True,
              faults={"fetch_order": (Fault.RATE_LIMIT,)}, prices=dict(SYMBOLS)),
    Policy(),
    (OpenRequest(AVL, "buy", 40.0, 0.0679, reference_price=SYMBOLS[AVL]),
     OpenRequest(AVL, "buy", 80.0, 0.0679, reference_price=SYMBOLS[AVL])),
)


#: The same bug through REST (deep run): the second rollback sized its close from a
#: REST view lagging 2 s, which still showed the first attempt's long 1, and then
#: took REST's later "flat" as proof, since REST "had shown our exposure". Fixed in
#: driver._predates_fill: a view older than our fill is not evidence about it.
_STALE_REST_CLOSE = World(
    SimConfig(jitter=0.25, client_timeout=1.0, rest_position_lag=2.0, stop_rejected=True,
              prices=dict(SYMBOLS)),
    Policy(),
    (OpenRequest(AVL, "buy", 40.0, 0.0679, reference_price=SYMBOLS[AVL]),
     OpenRequest(AVL, "buy", 80.0, 0.0679, reference_price=SYMBOLS[AVL])),
)


#: Found by the same-symbol spec in CI: the venue made the first attempt's stop
#: without reduce-only and its answer was lost for the whole protect window, so
#: the attempt never saw it; it rolled back, could not prove flat, and ended
#: ORPHANED with the stop resting (alerted: the monitor's job, rule 6).
_UNSEEN_WRONG_STOP = World(
    SimConfig(client_timeout=5.0, rest_position_lag=1e6, stream_lag=0.0,
              faults={"create": (), "place_stop": (Fault.TIMEOUT_AFTER,)},
              prices=dict(SYMBOLS), delayed_arrival=5.0, stop_drops_reduce_only=True),
    Policy(),
    (OpenRequest(AVL, "buy", 1.0, 0.0679, reference_price=SYMBOLS[AVL]),
     OpenRequest(AVL, "buy", 1.0, 0.0679, reference_price=SYMBOLS[AVL])),
)


#: Found in a deep run: with zero latency the first attempt's close and the second's
#: fill share one instant; the loop ran their same-time stream pushes out of order, so
#: the simulated stream ended on the stale "flat", and that flat view, stamped the
#: fill's instant, passed as proof of flat. Fixed in the simulator (the stream drops
#: out-of-sequence pushes, as a client does) and in guards.position_flat (a flat view
#: must be stamped strictly after the fill).
_SAME_INSTANT = World(
    SimConfig(rtt=0.0, client_timeout=1.0, rest_position_lag=1.0, stream=StreamMode.PRESENT,
              stream_lag=1.0, stop_rejected=True, prices=dict(SYMBOLS)),
    Policy(),
    (OpenRequest(AVL, "buy", 40.0, 0.0679, reference_price=SYMBOLS[AVL]),
     OpenRequest(AVL, "buy", 40.0, 0.0679, reference_price=SYMBOLS[AVL])),
)


@settings(max_examples=_CONCURRENT)
@given(st.integers(min_value=2, max_value=3).flatmap(
    lambda n: worlds(attempts=n, same_symbol=True)))
@example(_STALE_STREAM_CLOSE)
@example(_STALE_REST_CLOSE)
@example(_SAME_INSTANT)
@example(_WRONG_STOP_LEFT)
@example(_UNSEEN_WRONG_STOP)
def test_concurrent_attempts_on_the_same_symbol_keep_the_laws(world: World) -> None:
    """Concurrent attempts on one symbol each keep the laws per attempt: own net within its
    amount (L1'), only entries add exposure (L2), each ends within its bound after the ones
    queued before it (L3), its own stop covers exactly its fill (L4'), closed means its own
    exposure is 0 (L5'), one alert per ORPHANED (L6), every history a table path (L7), no
    foreign exposure touched (L11); and alone on the account with none ORPHANED, the net
    position is exactly the PROTECTED attempts' fills.

    World narrowed: the attempts share one side. In one-way (netting) mode an attempt on
    the other side would reduce, not open, a position another attempt protects (the engine
    refuses it: an opposite position is held).

    Stops left by CLOSE_VERIFIED attempts whose best-effort cancel failed are allowed
    (the reconciliation monitor's job); they must still be reduce-only and opposite.
    """
    o = run_many(world)
    _observe(o)
    sym = canonical(world.request.symbol)
    side = world.request.side
    runs = [r for r in o.runs if r.attempt is not None]
    attempts = [r.attempt for r in runs if r.attempt is not None]
    check_l2(o.exchange, attempts)
    for r in runs:
        assert r.attempt is not None and r.attempt.state in TERMINAL
        assert _le(r.duration, len(o.runs) * l3_bound(world.policy, r.request)), (
            "L3 broken: an attempt did not end within the bounds of the queue")
    check_l6(o)
    check_l7(o)
    for r in o.runs:
        check_attempt(o, r)
    owner = {c: a for a in attempts
             for c in (client_ids(a.attempt_id)[1], attached_stop_id(a.attempt_id))}
    stops = [s for s in o.exchange.resting_stops(sym) if s.client_id in owner]
    # A stop the hostile venue made wrong may outlive a cancel that failed (the
    # monitor's job), but the engine must have asked to cancel it. One the
    # attempt never saw (its placement's answer was lost and no look-up found
    # it in time) it cannot cancel: that attempt must have ended ORPHANED,
    # alerted, and the monitor takes over (rule 6).
    cancelled = {cid for _, cid in o.exchange.cancel_requests}

    def answered_for(s: StopSnapshot) -> bool:
        assert s.client_id is not None
        a = owner[s.client_id]
        unseen = a.facts.stop is None or a.facts.stop.client_id != s.client_id
        return ((s.reduce_only and s.side is side.closing_side) or s.client_id in cancelled
                or (unseen and a.state is State.ORPHANED))

    assert all(answered_for(s) for s in stops), (
        "L4 broken: a resting stop is not reduce-only on the opposite side, and was neither "
        "cancelled nor left to the monitor by an ORPHANED attempt that never saw it")
    c = world.config
    if (any(a.state is State.ORPHANED for a in attempts) or c.initial_positions.get(sym)
            or c.operator):
        return
    protected = [a for a in attempts if a.state is State.PROTECTED]
    held = sum(entry_fill(o.exchange, a) for a in protected)
    net = o.exchange.net_position(sym)
    assert qty_eq(net, _signed(side, held), abs_=1e-9), (
        f"L4/L5 broken: net {net:g}, PROTECTED fills {held:g}")


#: Found by the same-symbol spec. The second attempt's create timed out before reaching
#: the exchange; its order was (rightly) never found, so it rolled back with exposure
#: unknown, saw the FIRST attempt's protected long in REST, and closed it with a
#: reduce-only sell. The first attempt reported PROTECTED over a flat account, its stop
#: resting on nothing. Fixed: close_side_derivable requires the attempt's own fill.
_FOREIGN_CLOSE = World(
    SimConfig(client_timeout=1.0, faults={"create": (Fault.OK, Fault.TIMEOUT_BEFORE)},
              prices=dict(SYMBOLS)),
    Policy(),
    (OpenRequest(AVL, "buy", 40.0, 0.0679, reference_price=SYMBOLS[AVL]),
     OpenRequest(AVL, "buy", 40.0, 0.0679, reference_price=SYMBOLS[AVL])),
)

#: Issue 10, reproduction 8 (found by this spec at random, Hypothesis 6.170.17 blob
#: ``AXicc2RwBEIN+w8MYODI6MiI4DBoODDAmMiQAaToAUQGwXDggIl8IMiAmoQwBoMLAOF0E5o=`` on the
#: pre-shared strategies; amounts scaled from 1 to 40 for the AVL grid): two attempts on
#: one symbol, minimal ack, orders invisible for 1 s, REST 2 s behind, no stream. The
#: second attempt's fetch deadline passed before its fill was visible, and a REST view
#: taken before its entry was even sent ("flat") ended it CLOSE_VERIFIED while its
#: contract stayed long with no stop.
_STALE_FLAT = World(
    SimConfig(client_timeout=1.0, ack=AckStyle.MINIMAL, order_visibility_lag=1.0,
              rest_position_lag=2.0, stream_lag=0.0, prices=dict(SYMBOLS)),
    Policy(verify_timeout=0.5, close_timeout=3.0, protect_timeout=1.0, request_timeout=1.0,
           backoff_initial=0.5, backoff_factor=1.0, backoff_max=1.0),
    (OpenRequest(AVL, "buy", 40.0, 0.0679, reference_price=SYMBOLS[AVL]),
     OpenRequest(AVL, "buy", 40.0, 0.0679, reference_price=SYMBOLS[AVL])),
)


@settings(max_examples=300)
@given(worlds(attempts=2, same_symbol=True))
@example(_FOREIGN_CLOSE)
@example(_STALE_FLAT)
def test_a_rollback_never_closes_another_attempts_position(world: World) -> None:
    """A rollback never closes exposure another attempt holds: every attempt on the symbol
    touches no exposure but its own (L11), a closed attempt's own exposure is 0 (L5'), and,
    alone on the account, each PROTECTED attempt's fill is still open."""
    o = run_many(world)
    _observe(o)
    for r in o.runs:
        led = o.ledger(r)
        check_l11(r, led)
        check_l5(o.exchange, r, led)
    sym = canonical(world.request.symbol)
    attempts = [r.attempt for r in o.runs if r.attempt is not None]
    c = world.config
    if (any(a.state is State.ORPHANED for a in attempts) or c.initial_positions.get(sym)
            or c.operator):
        return
    # The others ended CLOSE_VERIFIED or REJECTED: none of their exposure is left.
    protected = [a for a in attempts if a.state is State.PROTECTED]
    held = sum(entry_fill(o.exchange, a) for a in protected)
    net = abs(o.exchange.net_position(sym))
    assert qty_eq(net, held), (
        f"a rollback closed a PROTECTED position: net {net:g}, PROTECTED fills {held:g}")
