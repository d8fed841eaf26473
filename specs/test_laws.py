"""The laws of ``DESIGN.md``, one spec each, checked on drawn worlds.

Every spec runs the real engine (:class:`fsm.PositionOpener`) against the
simulated exchange in virtual time and judges the result by the simulator's
ground truth (``net_position``, ``max_abs_position``, ``resting_stops``,
``log``), never by what the engine believes. The ``check_*`` functions are
the laws as code; the legacy witness runs the same exposure check against the
incident's rules.

Law L10 (crash and recovery) is specified with the journal, elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import assume, event, example, given, note, settings
from hypothesis import strategies as st

from adapters.port import Side, qty_eq
from adapters.simulated import AckStyle, Fault, SimConfig, SimulatedExchange, StreamMode
from fsm import Attempt, OpenRequest, Policy, State, client_ids
from fsm.attempt import Transition
from fsm.evidence import Facts
from fsm.guards import GUARDS
from fsm.table import TABLE, TERMINAL, Row
from specs.worlds import (
    SYMBOLS,
    Outcome,
    World,
    answers_within_deadlines,
    run_many,
    run_world,
    timely_worlds,
    worlds,
)

_TOL = 1e-9


def _le(a: float, b: float) -> bool:
    return a <= b or qty_eq(a, b, rel=_TOL)


def _signed(side: Side, qty: float) -> float:
    return qty if side is Side.BUY else -qty


def entry_fill(exchange: SimulatedExchange, attempt: Attempt) -> float:
    """Ground truth: what the entry order (our client id) actually filled."""
    return sum(o.filled for o in exchange.log
               if o.accepted and o.client_id == attempt.client_id and not o.reduce_only)


def _describe(o: Outcome) -> str:
    lines = [f"world: {o.world!r}"]
    for r in o.runs:
        a = r.attempt
        lines.append(f"run {r.request!r}: {a!r} in {r.duration:.6g}s"
                     + (f" refused: {r.refused}" if r.refused else ""))
        if a is not None:
            lines += [f"  {s.at:.6f} {s.describe()}" for s in a.history]
    lines.append("exchange log:")
    lines += [f"  {s!r}" for s in o.exchange.log]
    lines.append(f"alerts: {[al.message for al in o.alerts]}")
    return "\n".join(lines)


def _observe(o: Outcome) -> None:
    """Attach the run to the example (printed if it fails) and tally its ending."""
    note(_describe(o))
    for r in o.runs:
        event("ending", r.attempt.state.value if r.attempt else "refused before sending")


# -- the laws as checks over ground truth ------------------------------------------------------


def check_l1(exchange: SimulatedExchange, request: OpenRequest) -> None:
    """L1: |net| never exceeded the requested amount, in either direction."""
    worst = exchange.max_abs_position(request.symbol)
    assert _le(worst, request.amount), (
        f"L1 broken: {request.symbol} reached |net| = {worst:g} for a request of "
        f"{request.amount:g} (final net {exchange.net_position(request.symbol):g})")


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


def check_l4(exchange: SimulatedExchange, attempt: Attempt) -> None:
    """L4: PROTECTED => the position is our entry's fill, on our side, and the
    resting reduce-only stops on the opposite side sum exactly to it."""
    if attempt.state is not State.PROTECTED:
        return
    r = attempt.request
    fill = entry_fill(exchange, attempt)
    assert fill > 0, "L4 broken: PROTECTED but the entry filled nothing"
    net = exchange.net_position(r.symbol)
    assert qty_eq(net, _signed(r.side, fill)), (
        f"L4 broken: PROTECTED but net is {net:g}, entry filled {r.side.value} {fill:g}")
    stops = exchange.resting_stops(r.symbol)
    assert stops, "L4 broken: PROTECTED with no resting stop"
    for s in stops:
        assert s.reduce_only, f"L4 broken: stop {s} is not reduce-only"
        assert s.side is r.side.opposite, f"L4 broken: stop {s} is not on the opposite side"
        assert s.trigger_price == r.stop_loss, f"L4 broken: stop {s} not at {r.stop_loss}"
    total = sum(s.amount or 0.0 for s in stops)
    assert qty_eq(total, fill), f"L4 broken: stops cover {total:g}, position is {fill:g}"


def check_l5(exchange: SimulatedExchange, attempt: Attempt) -> None:
    """L5: CLOSE_VERIFIED => flat; REJECTED => flat and nothing filled."""
    sym = attempt.request.symbol
    if attempt.state is State.CLOSE_VERIFIED:
        net = exchange.net_position(sym)
        assert qty_eq(net, 0.0), f"L5 broken: CLOSE_VERIFIED but net is {net:g}"
    if attempt.state is State.REJECTED:
        net = exchange.net_position(sym)
        assert qty_eq(net, 0.0), f"L5 broken: REJECTED but net is {net:g}"
        fill = entry_fill(exchange, attempt)
        assert fill == 0, f"L5 broken: REJECTED but the entry filled {fill:g}"
        assert exchange.max_abs_position(sym) == 0, "L5 broken: REJECTED after exposure"


def check_l6(o: Outcome) -> None:
    """L6: ORPHANED => exactly one alert, and the attempt is journalled."""
    attempts = [r.attempt for r in o.runs if r.attempt is not None]
    for a in attempts:
        mine = [al for al in o.alerts if al.attempt_id == a.attempt_id]
        if a.state is State.ORPHANED:
            assert len(mine) == 1, f"L6 broken: ORPHANED with {len(mine)} alerts"
            al = mine[0]
            assert al.symbol == a.request.symbol and al.message
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
    (OpenRequest(AVL, "buy", 1.0, 0.08155990224682795, reference_price=SYMBOLS[AVL]),),
)
#: The same overflow in an ordinary world: the entry is never visible to
#: fetch_order, and a 10 ms back-off cap polls ~1,800 times in 20 s.
_TIGHT_POLLING = World(
    SimConfig(rtt=0.001, ack=AckStyle.MINIMAL, order_visibility_lag=30.0, prices=dict(SYMBOLS)),
    Policy(verify_timeout=20.0, backoff_initial=0.01, backoff_max=0.01, backoff_factor=3.0),
    (OpenRequest(AVL, "buy", 1.0, 0.1, reference_price=SYMBOLS[AVL]),),
)


@given(worlds())
@example(_INCIDENT)
@example(_AMBIGUOUS_CREATE)
def test_l1_net_position_never_exceeds_requested_amount(world: World) -> None:
    """L1: the net position never exceeds the requested amount, in either direction."""
    o = run_world(world)
    _observe(o)
    check_l1(o.exchange, world.request)


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
def test_l3_attempt_terminates_within_policy_bound(world: World) -> None:
    """L3: the attempt ends in a terminal state within a bound derived from the policy."""
    o = run_world(world)
    _observe(o)
    check_l3(o)


@given(worlds())
@example(_INCIDENT)
def test_l4_protected_means_an_exact_reduce_only_stop(world: World) -> None:
    """L4: PROTECTED => the position exists and a reduce-only stop on the opposite side
    covers exactly its size."""
    o = run_world(world)
    _observe(o)
    if o.attempt is not None:
        check_l4(o.exchange, o.attempt)


@given(worlds())
@example(_AMBIGUOUS_CREATE)
def test_l5_close_verified_and_rejected_mean_flat(world: World) -> None:
    """L5: CLOSE_VERIFIED => flat; REJECTED => flat and nothing filled."""
    o = run_world(world)
    _observe(o)
    if o.attempt is not None:
        check_l5(o.exchange, o.attempt)


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
def test_l8_no_false_rollback_when_the_exchange_answers_in_time(world: World) -> None:
    """L8: when the entry fills and the exchange answers within the deadlines, however
    late its REST view, the attempt ends PROTECTED."""
    assume(answers_within_deadlines(world))
    o = run_world(world)
    _observe(o)
    assert o.attempt is not None, f"refused: {o.run.refused}"
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
    assert first.run.duration == second.run.duration


def _check_all_single(o: Outcome) -> None:
    check_l3(o)
    check_l6(o)
    check_l7(o)
    attempts = [r.attempt for r in o.runs if r.attempt is not None]
    check_l2(o.exchange, attempts)
    for r in o.runs:
        check_l1(o.exchange, r.request)
        if r.attempt is not None:
            check_l4(o.exchange, r.attempt)
            check_l5(o.exchange, r.attempt)


_CONCURRENT = max(20, settings().max_examples // 2)


@settings(max_examples=_CONCURRENT)
@given(st.integers(min_value=2, max_value=3).flatmap(
    lambda n: worlds(attempts=n, same_symbol=False)))
def test_concurrent_attempts_on_different_symbols_keep_every_law(world: World) -> None:
    """Concurrent attempts on different symbols through one opener each keep L1-L7,
    as if alone."""
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
    (OpenRequest(AVL, "buy", 1.0, 0.0679, reference_price=SYMBOLS[AVL]),
     OpenRequest(AVL, "buy", 2.0, 0.0679, reference_price=SYMBOLS[AVL])),
)


#: The same bug through REST (deep run): the second rollback sized its close from a
#: REST view lagging 2 s, which still showed the first attempt's long 1, and then
#: took REST's later "flat" as proof, since REST "had shown our exposure". Fixed in
#: driver._predates_fill: a view older than our fill is not evidence about it.
_STALE_REST_CLOSE = World(
    SimConfig(jitter=0.25, client_timeout=1.0, rest_position_lag=2.0, stop_rejected=True,
              prices=dict(SYMBOLS)),
    Policy(),
    (OpenRequest(AVL, "buy", 1.0, 0.0679, reference_price=SYMBOLS[AVL]),
     OpenRequest(AVL, "buy", 2.0, 0.0679, reference_price=SYMBOLS[AVL])),
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
    (OpenRequest(AVL, "buy", 1.0, 0.0679, reference_price=SYMBOLS[AVL]),
     OpenRequest(AVL, "buy", 1.0, 0.0679, reference_price=SYMBOLS[AVL])),
)


@settings(max_examples=_CONCURRENT)
@given(st.integers(min_value=2, max_value=3).flatmap(
    lambda n: worlds(attempts=n, same_symbol=True)))
@example(_STALE_STREAM_CLOSE)
@example(_STALE_REST_CLOSE)
@example(_SAME_INSTANT)
def test_concurrent_attempts_on_the_same_symbol_keep_the_laws(world: World) -> None:
    """Concurrent attempts on one symbol keep the laws summed over the symbol: |net| never
    exceeds the sum of the requested amounts, only entries add exposure, each attempt
    ends within its bound after the ones queued before it, one alert per ORPHANED, every
    history is a table path, each PROTECTED attempt's own stop rests for exactly its fill;
    and when none is ORPHANED, the net position is exactly the PROTECTED attempts' fills.

    World narrowed: the attempts share one side. In one-way (netting) mode an attempt on
    the other side would reduce, not open, a position another attempt protects; its stop
    would then over-cover by construction of the account, not by any act of the engine.

    Outcome set aside (and specified, failing, by
    ``test_a_rollback_never_closes_another_attempts_position``): a rollback that sends a
    close while its own entry's fill is unknown, after another attempt on the symbol was
    PROTECTED, cannot tell its exposure from the other attempt's.

    Stops left by CLOSE_VERIFIED attempts whose best-effort cancel failed are allowed
    (the reconciliation monitor's job); they must still be reduce-only and opposite.
    """
    o = run_many(world)
    _observe(o)
    sym = world.request.symbol
    side = world.request.side
    runs = [r for r in o.runs if r.attempt is not None]
    attempts = [r.attempt for r in runs if r.attempt is not None]
    total = sum(r.request.amount for r in o.runs)
    worst = o.exchange.max_abs_position(sym)
    assert _le(worst, total), f"L1 broken: |net| reached {worst:g}, requested {total:g}"
    check_l2(o.exchange, attempts)
    for r in runs:
        assert r.attempt is not None and r.attempt.state in TERMINAL
        assert _le(r.duration, len(o.runs) * l3_bound(world.policy, r.request)), (
            "L3 broken: an attempt did not end within the bounds of the queue")
    check_l6(o)
    check_l7(o)
    for a in attempts:
        if a.state is State.REJECTED:
            assert entry_fill(o.exchange, a) == 0, "L5 broken: REJECTED but filled"
    stops = o.exchange.resting_stops(sym)
    assert all(s.reduce_only and s.side is side.opposite for s in stops), (
        "L4 broken: a resting stop is not reduce-only on the opposite side")
    protected = [a for a in attempts if a.state is State.PROTECTED]
    if any(a.state is State.ORPHANED for a in attempts) or _blind_close(attempts):
        return
    for a in protected:
        own = [s for s in stops if s.client_id == client_ids(a.attempt_id)[1]]
        fill = entry_fill(o.exchange, a)
        assert len(own) == 1 and qty_eq(own[0].amount or 0.0, fill), (
            f"L4 broken: {a.attempt_id} PROTECTED with stops {own}, fill {fill:g}")
    held = sum(entry_fill(o.exchange, a) for a in protected)
    net = o.exchange.net_position(sym)
    assert qty_eq(net, _signed(side, held), abs_=1e-9), (
        f"L4/L5 broken: net {net:g}, PROTECTED fills {held:g}")


def _blind_close(attempts: Sequence[Attempt]) -> bool:
    """Some attempt sent a close without knowing its own entry's fill, while another
    attempt on the symbol was PROTECTED."""
    protected = any(a.state is State.PROTECTED for a in attempts)
    return protected and any(
        a.facts.close_intent is not None
        and (a.facts.entry is None or a.facts.entry.filled is None)
        for a in attempts)


#: Found by the same-symbol spec. The second attempt's create timed out before reaching
#: the exchange; its order was (rightly) never found, so it rolled back with exposure
#: unknown, saw the FIRST attempt's protected long 1 in REST, and closed it with a
#: reduce-only sell. The first attempt reported PROTECTED over a flat account, its stop
#: resting on nothing. Fixed: close_side_derivable requires the attempt's own fill.
_FOREIGN_CLOSE = World(
    SimConfig(client_timeout=1.0, faults={"create": (Fault.OK, Fault.TIMEOUT_BEFORE)},
              prices=dict(SYMBOLS)),
    Policy(),
    (OpenRequest(AVL, "buy", 1.0, 0.0679, reference_price=SYMBOLS[AVL]),
     OpenRequest(AVL, "buy", 1.0, 0.0679, reference_price=SYMBOLS[AVL])),
)


@settings(max_examples=300)
@given(worlds(attempts=2, same_symbol=True))
@example(_FOREIGN_CLOSE)
def test_a_rollback_never_closes_another_attempts_position(world: World) -> None:
    """A rollback never closes exposure another attempt holds: after every attempt on a
    symbol ends, each PROTECTED attempt's fill is still open and covered by its stop."""
    o = run_many(world)
    _observe(o)
    sym = world.request.symbol
    attempts = [r.attempt for r in o.runs if r.attempt is not None]
    protected = [a for a in attempts if a.state is State.PROTECTED]
    others = [a for a in attempts if a.state is not State.PROTECTED]
    if any(a.state is State.ORPHANED for a in others):
        return
    # The others ended CLOSE_VERIFIED or REJECTED: none of their exposure is left.
    held = sum(entry_fill(o.exchange, a) for a in protected)
    net = abs(o.exchange.net_position(sym))
    assert qty_eq(net, held), (
        f"a rollback closed a PROTECTED position: net {net:g}, PROTECTED fills {held:g}")
