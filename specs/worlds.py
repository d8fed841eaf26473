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
import contextlib
import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import attrs
from hypothesis import strategies as st

from adapters.port import Side
from adapters.simulated import CALLS, AckStyle, Fault, SimConfig, SimulatedExchange, StreamMode
from adapters.virtual_time import run_virtual
from fsm import Alert, Attempt, MemoryJournal, OpenRequest, Policy, PositionOpener
from fsm.attempt import Recorder, Transition
from fsm.evidence import Facts
from fsm.request import BadRequest
from fsm.table import Trigger

T = TypeVar("T")

__all__ = [
    "SYMBOLS",
    "Outcome",
    "Run",
    "World",
    "counter_ids",
    "policies",
    "quiet_engine_log",
    "requests",
    "run_many",
    "run_virtual",
    "run_world",
    "sim_configs",
    "timely_worlds",
    "worlds",
]

#: Symbols and their simulated prices (a cheap coin, as in the incident, and
#: a dear one, so that float rounding is exercised at both ends).
SYMBOLS: dict[str, float] = {"AVL/USDT:USDT": 0.1358, "BTC/USDT:USDT": 67_000.0,
                             "ETH/USDT:USDT": 3_100.0}


@attrs.frozen
class World:
    """One drawn world: the exchange, the engine's policy and the request(s)."""

    config: SimConfig
    policy: Policy
    requests: tuple[OpenRequest, ...]

    @property
    def request(self) -> OpenRequest:
        return self.requests[0]


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
    """Which calls fail and how: per call kind, the fates of its first calls."""
    return st.dictionaries(
        keys=st.sampled_from(CALLS),
        values=st.lists(st.sampled_from(Fault), max_size=max_len).map(tuple),
        max_size=len(CALLS),
    )


def policies() -> st.SearchStrategy[Policy]:
    """The seed defaults, or any sane policy (deadlines 0.2–20 s)."""

    @st.composite
    def drawn(draw: st.DrawFn) -> Policy:
        initial = draw(st.floats(min_value=0.01, max_value=0.5))
        return Policy(
            verify_timeout=draw(st.floats(min_value=0.5, max_value=20.0)),
            close_timeout=draw(st.floats(min_value=0.5, max_value=20.0)),
            protect_timeout=draw(st.floats(min_value=0.5, max_value=10.0)),
            request_timeout=draw(st.floats(min_value=0.2, max_value=6.0)),
            backoff_initial=initial,
            backoff_factor=draw(st.floats(min_value=1.0, max_value=3.0)),
            backoff_max=draw(st.floats(min_value=initial, max_value=2.0)),
        )

    return st.one_of(st.just(Policy()), drawn())


@st.composite
def requests(
    draw: st.DrawFn, symbol: str | None = None, side: Side | None = None
) -> OpenRequest:
    """A valid request: a stop on the loss side of the simulated price."""
    sym = symbol if symbol is not None else draw(st.sampled_from(sorted(SYMBOLS)))
    price = SYMBOLS[sym]
    s = side if side is not None else draw(st.sampled_from(Side))
    amount = draw(st.one_of(
        st.integers(min_value=1, max_value=1000).map(float),
        st.floats(min_value=0.001, max_value=1000.0),
    ))
    distance = draw(st.floats(min_value=0.005, max_value=0.5))
    stop = price * (1 - distance) if s is Side.BUY else price * (1 + distance)
    # Usually the bot passes the price it expects; sometimes the opener must
    # ask the exchange (whose fetch_price may fail: then nothing is sent).
    ref = draw(st.one_of(st.just(price), st.just(None)))
    return OpenRequest(symbol=sym, side=s, amount=amount, stop_loss=stop, reference_price=ref)


@st.composite
def sim_configs(draw: st.DrawFn, *, faults: bool = True) -> SimConfig:
    """Any simulated exchange. ``faults=False`` draws an exchange that
    answers every call (no fault schedules, no rejections, the entry fills),
    for law L8; it may still be slow, lagging or terse."""
    return SimConfig(
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
    )


@st.composite
def worlds(draw: st.DrawFn, *, attempts: int = 1, same_symbol: bool | None = None) -> World:
    """A whole world: exchange, policy and ``attempts`` requests.

    With several attempts, ``same_symbol=True`` puts them all on one symbol
    and one side (see ``test_laws.test_concurrent_attempts_on_the_same_symbol``
    for why the side is shared), ``False`` on distinct symbols.
    """
    config = draw(sim_configs())
    policy = draw(policies())
    if attempts == 1:
        return World(config, policy, (draw(requests()),))
    if same_symbol:
        sym = draw(st.sampled_from(sorted(SYMBOLS)))
        side = draw(st.sampled_from(Side))
        reqs = tuple(draw(requests(symbol=sym, side=side)) for _ in range(attempts))
    else:
        syms = draw(st.permutations(sorted(SYMBOLS)))[:attempts]
        reqs = tuple(draw(requests(symbol=s)) for s in syms)
    return World(config, policy, reqs)


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
      step and two more round trips.
    REST lag and stream lag are deliberately *not* bounded: that is the law.
    """
    c, p = world.config, world.policy
    rtt = max_rtt(c)
    if rtt >= p.request_timeout / 10 or rtt >= p.protect_timeout / 2:
        return False
    seen_by = 2 * rtt
    if c.order_visibility_lag > 0:
        seen_by = rtt + c.order_visibility_lag + p.backoff_max + 2 * rtt
    return seen_by * 1.1 < p.verify_timeout


@st.composite
def timely_worlds(draw: st.DrawFn) -> World:
    """Worlds where the entry fills and the exchange answers within the
    deadlines, with any REST lag, stream mode and acknowledgement style.
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
    return World(config, policy, (draw(requests()),))


# -- the harness ---------------------------------------------------------------------------------


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


@attrs.define
class Run:
    """One attempt's result inside an :class:`Outcome`."""

    request: OpenRequest
    attempt: Attempt | None  # None when refused with BadRequest (nothing sent)
    refused: BadRequest | None
    started: float
    ended: float

    @property
    def duration(self) -> float:
        return self.ended - self.started


@attrs.define
class Outcome:
    """What happened in a world: the runs, and the exchange's ground truth."""

    world: World
    exchange: SimulatedExchange
    runs: list[Run]
    alerts: list[Alert]
    journal: MemoryJournal
    recorder: SpyRecorder

    @property
    def run(self) -> Run:
        return self.runs[0]

    @property
    def attempt(self) -> Attempt | None:
        return self.runs[0].attempt


@contextlib.contextmanager
def quiet_engine_log() -> Iterator[None]:
    """Silence the engine's log while a world runs: thousands of examples
    would otherwise spend their time formatting ORPHANED alerts."""
    logger = logging.getLogger("fsm")
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


def run_many(world: World, requests: Sequence[OpenRequest] | None = None) -> Outcome:
    """Run every request of ``world`` concurrently through one opener, on a
    fresh simulated exchange, in virtual time."""
    reqs = tuple(requests) if requests is not None else world.requests
    exchange = SimulatedExchange(world.config)
    alerts: list[Alert] = []
    journal = MemoryJournal()
    opener = PositionOpener(exchange, policy=world.policy, alerts=alerts.append,
                            journal=journal, ids=counter_ids())
    spy = SpyRecorder()
    opener._recorder = spy  # the spec's window on the facts each step saw

    async def one(req: OpenRequest) -> Run:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            attempt = await opener.open(req)
        except BadRequest as exc:
            return Run(req, None, exc, t0, loop.time())
        return Run(req, attempt, None, t0, loop.time())

    async def all_of() -> list[Run]:
        return list(await asyncio.gather(*(one(r) for r in reqs)))

    with quiet_engine_log():
        runs = run_virtual(all_of())
    return Outcome(world, exchange, runs, alerts, journal, spy)


def run_world(world: World) -> Outcome:
    """Run the world's first request alone."""
    return run_many(world, world.requests[:1])
