"""Hypothesis strategies that draw a whole exchange world, and the harness
that runs the engine (or the legacy witness) in it, in virtual time.

A :class:`World` is everything an attempt can meet: the simulated exchange's
knobs (:class:`~adapters.simulated.SimConfig`: latencies, jitter, REST lag,
stream mode, order visibility lag, acknowledgement style, per-call fault
schedules, partial fills, rejections), the engine's :class:`~fsm.Policy`
and the :class:`~fsm.OpenRequest`. Its ``repr`` is what a failing spec
prints, so it is written to be pasted back into an ``@example``.

Everything here is deterministic: the simulator's jitter is seeded, attempt
ids come from a counter, and the loop's clock is virtual.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import attrs
from hypothesis import strategies as st

from adapters.port import Side
from adapters.simulated import (
    CALLS,
    DEFAULT_MARKETS,
    AckStyle,
    ClientIdScope,
    Fault,
    OperatorMove,
    SimConfig,
    StreamMode,
)
from adapters.simulated.ledger import ATTEMPT_TAG, GroundTruthExchange, Ledger, Own, ledger
from adapters.simulated.runs import quiet_engine_log, settle_time
from adapters.virtual_time import run_virtual
from fsm import Alert, Attempt, MemoryJournal, OpenRequest, Policy, PositionOpener, client_ids
from fsm.attempt import Recorder, Transition
from fsm.evidence import Facts
from fsm.request import BadRequest
from fsm.step import Fire
from fsm.table import Trigger

T = TypeVar("T")

__all__ = [
    "BETRAYALS",
    "SYMBOLS",
    "Outcome",
    "Run",
    "World",
    "betrayals",
    "canonical",
    "counter_ids",
    "held_before",
    "lots",
    "native",
    "policies",
    "quiet_engine_log",
    "requests",
    "run_many",
    "run_virtual",
    "run_world",
    "settle_time",
    "shared_accounts",
    "sim_configs",
    "timely_worlds",
    "with_account",
    "worlds",
]

#: Symbols and their simulated prices (a cheap coin, as in the incident, and
#: a dear one, so that float rounding is exercised at both ends).
SYMBOLS: dict[str, float] = {"AVL/USDT:USDT": 0.1358, "BTC/USDT:USDT": 67_000.0,
                             "ETH/USDT:USDT": 3_100.0}


def native(symbol: str) -> str:
    """The exchange's own spelling: ``AVL/USDT:USDT`` -> ``AVLUSDT``."""
    return symbol.split(":")[0].replace("/", "")


def canonical(symbol: str) -> str:
    """The unified spelling of a request's symbol (unified or native)."""
    return next((s for s in SYMBOLS if symbol in (s, native(s))), symbol)


def lot(symbol: str) -> Decimal:
    """The market's lot step, exactly."""
    step = DEFAULT_MARKETS[canonical(symbol)].amount_step
    assert step is not None
    return Decimal(repr(step))


def lots(symbol: str, k: int) -> float:
    """``k`` lots of ``symbol``, as the float nearest the exact decimal."""
    return float(k * lot(symbol))


def min_lots(symbol: str) -> int:
    """The fewest lots the market accepts (minimum amount and notional)."""
    sym = canonical(symbol)
    m = DEFAULT_MARKETS[sym]
    step = float(lot(sym))
    need = [1]
    if m.min_amount is not None:
        need.append(math.ceil(m.min_amount / step - 1e-9))
    if m.min_notional is not None:
        need.append(math.ceil(m.min_notional / (SYMBOLS[sym] * step) - 1e-9))
    return max(need)


def _py(value: object) -> str:
    """``value`` as Python source (enums by name, attrs classes by their
    non-default fields), so that a World's repr pastes into ``@example``."""
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple):
        inner = ", ".join(_py(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    cls: Any = type(value)
    if attrs.has(cls):
        parts = []
        for f in attrs.fields(cls):
            v = getattr(value, f.name)
            default = f.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = default.factory()
            if default is not attrs.NOTHING and _same(v, default):
                continue
            parts.append(f"{f.name}={_py(v)}")
        return f"{type(value).__name__}({', '.join(parts)})"
    return repr(value)


def _same(a: object, b: object) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001  # pragma: no cover - incomparable values are printed
        return False


@attrs.frozen(repr=False)
class World:
    """One drawn world: the exchange, the engine's policy and the request(s)."""

    config: SimConfig
    policy: Policy
    requests: tuple[OpenRequest, ...]

    @property
    def request(self) -> OpenRequest:
        """The world's first (or only) request."""
        return self.requests[0]

    def __repr__(self) -> str:
        return (f"World({_py(self.config)}, {_py(self.policy)}, "
                f"{_py(tuple(self.requests))})")


# -- strategies ------------------------------------------------------------------------------

#: True about one time in five; shrinks to False.
_rarely = st.integers(min_value=0, max_value=4).map(lambda n: n == 4)

_seconds = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_infinity=False)


def _lag(max_value: float) -> st.SearchStrategy[float]:
    """A lag: usually none or small, sometimes up to ``max_value``."""
    return st.one_of(
        st.just(0.0),
        st.floats(min_value=0.0, max_value=1.0),
        st.floats(min_value=0.0, max_value=max_value),
    )


def fault_schedules(max_len: int = 4) -> st.SearchStrategy[dict[str, tuple[Fault, ...]]]:
    """Which calls fail and how: per call kind, the fates of its first calls
    (``DELAYED`` included: the request lands late, inside or outside the
    receive window)."""
    return st.dictionaries(
        keys=st.sampled_from(CALLS),
        values=st.lists(st.sampled_from(Fault), max_size=max_len).map(tuple),
        max_size=len(CALLS),
    )


#: The protection modes the worlds run in: "auto" uses the stop attached to
#: the entry when the drawn venue arms one, "separate" never does.
PROTECTIONS = st.sampled_from(("auto", "auto", "separate"))


def policies() -> st.SearchStrategy[Policy]:
    """The seed defaults, or any sane policy (deadlines 0.2–20 s), in either
    protection mode."""

    @st.composite
    def drawn(draw: st.DrawFn) -> Policy:
        initial = draw(st.floats(min_value=0.01, max_value=0.5))
        return Policy(
            protection=draw(PROTECTIONS),
            attached_stop_timeout=draw(st.floats(min_value=0.1, max_value=3.0)),
            verify_timeout=draw(st.floats(min_value=0.5, max_value=20.0)),
            close_timeout=draw(st.floats(min_value=0.5, max_value=20.0)),
            protect_timeout=draw(st.floats(min_value=0.5, max_value=10.0)),
            request_timeout=draw(st.floats(min_value=0.2, max_value=6.0)),
            backoff_initial=initial,
            backoff_factor=draw(st.floats(min_value=1.0, max_value=3.0)),
            backoff_max=draw(st.floats(min_value=initial, max_value=2.0)),
        )

    return st.one_of(PROTECTIONS.map(lambda m: Policy(protection=m)), drawn())


_HAS_ROUND_AMOUNT = "round_amount" in attrs.fields_dict(OpenRequest)


@st.composite
def requests(
    draw: st.DrawFn, symbol: str | None = None, side: Side | None = None, *,
    sendable: bool = False,
) -> OpenRequest:
    """A request on the market's grid: a whole number of lots at or above the
    minimum amount and notional, a stop on the loss side of the simulated
    price (off the tick: the engine rounds it away from the market). The
    symbol sometimes in the exchange's own spelling (``"AVLUSDT"``); the
    amount sometimes off the lot step with ``round_amount=True`` and, unless
    ``sendable``, sometimes off the lot step without it (refused, nothing
    sent)."""
    sym = symbol if symbol is not None else draw(st.sampled_from(sorted(SYMBOLS)))
    price = SYMBOLS[sym]
    s = side if side is not None else draw(st.sampled_from(Side))
    k0 = min_lots(sym)
    k = draw(st.integers(min_value=k0, max_value=max(k0, 1000)))
    amount = lots(sym, k)
    rounding = False
    if _HAS_ROUND_AMOUNT:
        # Mostly on the grid: a refused request teaches the laws nothing, so
        # it is drawn just often enough to keep the refusal path honest.
        grid = draw(st.sampled_from(("on",) * 6 + ("round",) if sendable
                                    else ("on",) * 6 + ("round", "off")))
        if grid != "on":
            frac = draw(st.floats(min_value=0.01, max_value=0.99))
            amount = float((Decimal(k) + Decimal(repr(frac))) * lot(sym))
            rounding = grid == "round"
    spelled = draw(st.sampled_from((sym, native(sym))))
    distance = draw(st.floats(min_value=0.005, max_value=0.5))
    stop = price * (1 - distance) if s is Side.BUY else price * (1 + distance)
    # Usually the bot passes the price it expects; sometimes the opener must
    # ask the exchange (whose fetch_price may fail: then nothing is sent).
    ref = draw(st.one_of(st.just(price), st.just(None)))
    extra: dict[str, Any] = {"round_amount": True} if rounding else {}
    return OpenRequest(symbol=spelled, side=s, amount=amount, stop_loss=stop,
                       reference_price=ref, **extra)


#: When the operator trades, in seconds after the exchange's first request:
#: mostly while a quick attempt is still running, sometimes much later.
_when = st.one_of(st.floats(min_value=0.0, max_value=0.5),
                  st.floats(min_value=0.0, max_value=3.0),
                  st.floats(min_value=0.0, max_value=20.0))

#: What the operator does, in the attempt's direction: open more on its side,
#: open against it, close everything, flip, close only the pre-existing part.
OPERATOR_KINDS = ("open", "against", "close_all", "flip", "close_pre")


@st.composite
def shared_accounts(
    draw: st.DrawFn, request: OpenRequest, *, hostile: bool = True,
) -> tuple[dict[str, float], tuple[OperatorMove, ...]]:
    """The account around ``request``: a position already held on its symbol
    (none, on the request's side, or against it) and an operator making 0-3
    hand trades on the symbol at drawn times (open, close, flip).

    ``hostile=False`` (law L8's premise): nothing held against the request,
    and the operator only adds to the request's side."""
    sym = canonical(request.symbol)
    d = 1 if request.side is Side.BUY else -1
    k_req = max(1, int(Decimal(repr(request.amount)) / lot(sym)))
    # An opposite position refuses the request (nothing sent): drawn one time
    # in five, so most worlds reach the exchange.
    held = draw(st.sampled_from(("none", "none", "same", "same", "opposite") if hostile
                                else ("none", "same")))
    k_pre = 0 if held == "none" else draw(st.integers(min_value=1, max_value=2 * k_req))
    pre = -k_pre if held == "opposite" else k_pre  # lots, in the request's direction
    moves = []
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        at = draw(_when)
        kind = draw(st.sampled_from(OPERATOR_KINDS)) if hostile else "open"
        m = draw(st.integers(min_value=1, max_value=2 * k_req))
        delta = {"open": m, "against": -m, "close_all": -(pre + k_req),
                 "flip": -(pre + k_req + m), "close_pre": -pre}[kind]
        if delta:
            moves.append(OperatorMove(at=at, symbol=sym, delta=lots(sym, delta * d)))
    initial = {sym: lots(sym, pre * d)} if pre else {}
    return initial, tuple(sorted(moves, key=lambda mv: mv.at))


def held_before(config: SimConfig, request: OpenRequest) -> str:
    """"none", "same" or "opposite": the position held before the run, as
    seen from ``request``."""
    net = config.initial_positions.get(canonical(request.symbol), 0.0)
    if net == 0:
        return "none"
    return "same" if (net > 0) == (request.side is Side.BUY) else "opposite"


#: The hostile venue's betrayals (:class:`~adapters.simulated.SimConfig`),
#: one per world at most. The laws must hold under each: the engine has to
#: notice and act (a stop read back as not reduce-only, on the wrong side or
#: for another size never makes the attempt PROTECTED).
BETRAYALS: dict[str, dict[str, Any]] = {
    "stop not reduce-only": dict(stop_drops_reduce_only=True),
    "stop on the wrong side": dict(stop_flips_side=True),
    "stop one lot more": dict(stop_amount_skew=1.0),  # a lot of AVL
    "stop a hair less": dict(stop_amount_skew=-0.001),  # a lot of BTC
    "stop not reduce-only, its reply ids only": dict(stop_drops_reduce_only=True,
                                                     stop_ack_ids_only=True),
    "stop reply ids only": dict(stop_ack_ids_only=True),
    "ack with the exchange id only": dict(ack_only="order_id"),
    "ack with the client id only": dict(ack_only="client_id"),
    "close cut to the position": dict(close_cut_to_position=True),
    "stream stale at the fill's instant": dict(stream=StreamMode.PRESENT,
                                               stream_stale_at_move=0.5),
    "stream stale at the fill's instant, long": dict(stream=StreamMode.PRESENT,
                                                     stream_stale_at_move=30.0),
}

#: The betrayals under which an attempt can still end PROTECTED, so law L8
#: (no false rollback) must hold under them too.
HARMLESS_BETRAYALS = ("ack with the exchange id only", "ack with the client id only",
                      "stop reply ids only",
                      "stream stale at the fill's instant",
                      "stream stale at the fill's instant, long")


def betrayals(harmless_only: bool = False) -> st.SearchStrategy[str | None]:
    """None (an honest venue) about half the time, else one betrayal."""
    names = HARMLESS_BETRAYALS if harmless_only else tuple(BETRAYALS)
    return st.one_of(st.none(), st.sampled_from(names))


@st.composite
def sim_configs(draw: st.DrawFn, *, faults: bool = True) -> SimConfig:
    """Any simulated exchange. ``faults=False`` draws an exchange that
    answers every call (no fault schedules, no rejections, the entry fills),
    for law L8; it may still be slow, lagging or terse. The shared account
    (positions held before, the operator) is drawn with the request, by
    :func:`shared_accounts`."""
    window = draw(st.one_of(st.just(5.0), st.floats(min_value=0.5, max_value=10.0),
                            st.none()))
    if window is not None:  # both sides of the window
        delayed = window * draw(st.floats(min_value=0.1, max_value=2.0))
    else:
        delayed = draw(st.floats(min_value=0.0, max_value=20.0))
    config = SimConfig(
        seed=draw(st.integers(min_value=0, max_value=2**32 - 1)),
        rtt=draw(st.one_of(st.just(0.03), _seconds)),
        jitter=draw(st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=0.5))),
        client_timeout=draw(st.floats(min_value=0.1, max_value=8.0)),
        ack=draw(st.sampled_from(AckStyle)),
        order_visibility_lag=draw(_lag(15.0)),
        rest_position_lag=draw(st.one_of(st.floats(min_value=0.0, max_value=30.0),
                                         st.just(1e6))),
        stream=draw(st.sampled_from(StreamMode)),
        stream_lag=draw(_lag(15.0)),
        reject_entry=draw(_rarely) if faults else False,
        entry_unfilled=draw(_rarely) if faults else False,
        fill_ratio=draw(st.one_of(st.just(1.0), st.floats(min_value=0.01, max_value=1.0))),
        stop_rejected=draw(_rarely) if faults else False,
        close_rejected=draw(_rarely) if faults else False,
        faults=draw(fault_schedules()) if faults else {},
        prices=dict(SYMBOLS),
        # ccxt's REST positions carry no timestamp: the usual case
        rest_timestamps=draw(st.sampled_from((False, False, True))),
        client_id_scope=draw(st.sampled_from(ClientIdScope)),
        receive_window=window,
        delayed_arrival=delayed,
        # The venue may arm a stop sent with the entry (Bybit, OKX), late,
        # or refuse it at the fill, or size it to the order, not the fill.
        attached_stops=draw(st.booleans()),
        attached_stop_delay=draw(st.one_of(st.just(0.0), _lag(3.0))),
        attached_stop_refused=draw(_rarely) if faults else False,
        attached_stop_whole_amount=draw(_rarely) if faults else False,
    )
    betrayal = draw(betrayals(harmless_only=not faults))
    return attrs.evolve(config, **BETRAYALS[betrayal]) if betrayal else config


def with_account(config: SimConfig, accounts: Sequence[tuple[dict[str, float],
                                                             tuple[OperatorMove, ...]]]
                 ) -> SimConfig:
    """``config`` with the drawn shared account(s) merged in."""
    initial: dict[str, float] = {}
    moves: list[OperatorMove] = []
    for held, ops in accounts:
        initial.update(held)
        moves += ops
    return attrs.evolve(config, initial_positions=initial,
                        operator=tuple(sorted(moves, key=lambda mv: mv.at)))


@st.composite
def worlds(draw: st.DrawFn, *, attempts: int = 1, same_symbol: bool | None = None,
           hostile: bool = True) -> World:
    """A whole world in a shared account: exchange, policy, ``attempts``
    requests, and per symbol a position held before and an operator.

    With several attempts, ``same_symbol=True`` puts them all on one symbol
    and one side (see ``test_laws.test_concurrent_attempts_on_the_same_symbol``
    for why the side is shared), ``False`` on distinct symbols.
    """
    config = draw(sim_configs())
    policy = draw(policies())
    if attempts == 1:
        reqs: tuple[OpenRequest, ...] = (draw(requests()),)
    elif same_symbol:
        sym = draw(st.sampled_from(sorted(SYMBOLS)))
        side = draw(st.sampled_from(Side))
        reqs = tuple(draw(requests(symbol=sym, side=side)) for _ in range(attempts))
    else:
        syms = draw(st.permutations(sorted(SYMBOLS)))[:attempts]
        reqs = tuple(draw(requests(symbol=s)) for s in syms)
    firsts = {canonical(r.symbol): r for r in reversed(reqs)}
    accounts = [draw(shared_accounts(r, hostile=hostile)) for r in firsts.values()]
    return World(with_account(config, accounts), policy, reqs)


def max_rtt(config: SimConfig) -> float:
    """The longest a call can take to answer in ``config`` (no faults)."""
    return config.rtt + 2 * config.jitter


def answers_within_deadlines(world: World) -> bool:
    """The exchange answers within the deadlines (the premise of law L8).

    * every call answers within a tenth of the request timeout (the engine
      never cuts a call shorter than that, even at a phase deadline), and
      within half the protection window;
    * the entry's fill can be seen within the verification window, with a
      10 % margin: the create and one fetch round trip when the order is
      visible at once; else the create, the visibility lag, one back-off
      step and two more round trips;
    * the account never holds the request's opposite side, and the operator
      only adds to the request's side (anything else may legitimately end
      the attempt otherwise: refused, or its stop refused by a reduce-only
      check on a position the operator took away).
    REST lag and stream lag are deliberately *not* bounded: that is the law.
    """
    c, p = world.config, world.policy
    rtt = max_rtt(c)
    if rtt >= p.request_timeout / 10 or rtt >= p.protect_timeout / 2:
        return False
    if held_before(c, world.request) == "opposite":
        return False
    d = 1 if world.request.side is Side.BUY else -1
    if any(mv.delta * d < 0 for mv in c.operator):
        return False
    seen_by = 2 * rtt
    if c.order_visibility_lag > 0:
        seen_by = rtt + c.order_visibility_lag + p.backoff_max + 2 * rtt
    return seen_by * 1.1 < p.verify_timeout


@st.composite
def timely_worlds(draw: st.DrawFn) -> World:
    """Worlds where the entry fills and the exchange answers within the
    deadlines, with any REST lag (timestamped or not), stream mode and
    acknowledgement style, in a shared account that never works against the
    attempt (held on its side or nothing; the operator only adds to it).
    Latencies are scaled into the policy's windows rather than filtered, so
    that almost every draw is usable; the test still ``assume``s the premise."""
    policy = draw(policies())
    config = draw(sim_configs(faults=False))
    budget = min(policy.request_timeout / 10, policy.protect_timeout / 2,
                 policy.verify_timeout / 2.2) * 0.9
    rtt = draw(st.floats(min_value=0.0, max_value=budget))
    jitter = draw(st.floats(min_value=0.0, max_value=(budget - rtt) / 2))
    room = policy.verify_timeout / 1.1 - policy.backoff_max - 3 * (rtt + 2 * jitter)
    vis = draw(st.floats(min_value=0.0, max_value=room * 0.99)) if room > 0 else 0.0
    config = attrs.evolve(config, rtt=rtt, jitter=jitter, order_visibility_lag=vis)
    req = draw(requests(sendable=True))
    account = draw(shared_accounts(req, hostile=False))
    return World(with_account(config, [account]), policy, (req,))


# -- running worlds -------------------------------------------------------------------------------


def counter_ids(prefix: str = "a") -> Callable[[], str]:
    """Deterministic attempt ids (law L9)."""
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter):08d}"


class SpyRecorder(Recorder):
    """The opener's recorder, also keeping the facts each step fired over,
    so law L7 can re-evaluate every guard independently of the engine."""

    def __init__(self) -> None:
        super().__init__()
        self.fired: list[tuple[str, Transition, Facts]] = []

    def fire(self, attempt: Attempt, trigger: Trigger, facts: Facts, *, evidence: Any,
             detail: str) -> Transition:
        step = super().fire(attempt, trigger, facts, evidence=evidence, detail=detail)
        self.fired.append((attempt.attempt_id, step, facts))
        return step

    def take(self, attempt: Attempt, decision: Fire) -> Transition:
        if attempt.state not in decision.row.sources:  # judged afresh: fire() records it
            return super().take(attempt, decision)
        step = super().take(attempt, decision)
        self.fired.append((attempt.attempt_id, step, decision.facts))
        return step


@attrs.define
class Run:
    """One attempt's result inside an :class:`Outcome`."""

    request: OpenRequest
    attempt: Attempt | None  # None when refused with BadRequest (nothing sent)
    refused: BadRequest | None
    started: float
    ended: float
    tag: int = 0  # its ATTEMPT_TAG: the request's index in the world

    @property
    def duration(self) -> float:
        """Seconds from start to end of the run."""
        return self.ended - self.started

    @property
    def symbol(self) -> str:
        """The request's symbol, canonical (as the exchange's ground truth keys it)."""
        return canonical(self.request.symbol)

    def own(self) -> Own | None:
        """What identifies this attempt's orders (None: refused, nothing sent)."""
        if self.attempt is None:
            return None
        entry, stop, close = client_ids(self.attempt.attempt_id)
        return Own(self.symbol, self.request.side, self.request.amount, entry, stop, close,
                   self.tag)


@attrs.define
class Outcome:
    """What happened in a world: the runs, and the exchange's ground truth."""

    world: World
    exchange: GroundTruthExchange
    runs: list[Run]
    alerts: list[Alert]
    journal: MemoryJournal
    recorder: SpyRecorder

    @property
    def run(self) -> Run:
        """The first (or only) run."""
        return self.runs[0]

    @property
    def attempt(self) -> Attempt | None:
        """The first run's attempt, if it was not refused."""
        return self.runs[0].attempt

    def ledger(self, run: Run) -> Ledger | None:
        """``run``'s ground-truth ledger (None: refused, nothing sent)."""
        own = run.own()
        if own is None:
            return None
        return ledger(self.exchange.fills, own,
                      initial=self.world.config.initial_positions.get(own.symbol, 0.0),
                      arrivals=self.exchange.arrivals)

    def operator_during(self, run: Run) -> bool:
        """The operator traded on the run's symbol while the attempt ran."""
        return any(f.actor == "operator" and f.symbol == run.symbol
                   and run.started <= f.at <= run.ended for f in self.exchange.fills)


def run_many(world: World, requests: Sequence[OpenRequest] | None = None) -> Outcome:
    """Run every request of ``world`` concurrently through one opener, on a
    fresh simulated exchange, in virtual time; then let every request still
    on its way land before ground truth is read (:func:`settle_time`)."""
    reqs = tuple(requests) if requests is not None else world.requests
    exchange = GroundTruthExchange(world.config)
    alerts: list[Alert] = []
    journal = MemoryJournal()
    opener = PositionOpener(exchange, policy=world.policy, alerts=alerts.append,
                            journal=journal, ids=counter_ids())
    spy = SpyRecorder()
    opener._recorder = spy  # the spec's window on the facts each step saw

    async def one(tag: int, req: OpenRequest) -> Run:
        ATTEMPT_TAG.set(tag)  # this task's own context: its requests are its own
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            attempt = await opener.open(req)
        except BadRequest as exc:
            return Run(req, None, exc, t0, loop.time(), tag)
        return Run(req, attempt, None, t0, loop.time(), tag)

    async def all_of() -> list[Run]:
        runs = list(await asyncio.gather(*(one(i, r) for i, r in enumerate(reqs))))
        await asyncio.sleep(settle_time(world.config))
        return runs

    with quiet_engine_log():
        runs = run_virtual(all_of())
    return Outcome(world, exchange, runs, alerts, journal, spy)


def run_world(world: World) -> Outcome:
    """Run the world's first request alone."""
    return run_many(world, world.requests[:1])
