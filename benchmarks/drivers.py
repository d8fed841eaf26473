"""The four drivers compared on the same worlds.

Each driver opens one position on a fresh simulated exchange and reports
only what it *decided* (:class:`Run`); everything measured (fill time, stop
time, doubled position, requests) is read from the exchange's ground truth by
the runner, the same way for every driver.

* ``engine``: this library, default :class:`~fsm.policy.Policy`.
* ``seed_plan``: the fix plan's algorithm (seed/fix-plan-orphaned-position.md,
  FIX #1.1 + #1.2 + #2.1 + #1.3 + #2.2), over the same exchange port.
* ``legacy``: the incident's algorithm, :func:`adapters.simulated.legacy.legacy_open`.
* ``limit``: the physical bound, an oracle reading ground truth.

The seed plan and the legacy code wait with fixed sleeps on purpose: that is
the behaviour being measured, not a pattern to copy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from adapters.port import ExchangeError, OrderSnapshot, OrderStatus, PositionCache, Side
from adapters.simulated import SimulatedExchange
from adapters.simulated.legacy import legacy_open
from benchmarks.profiles import Profile
from fsm import OpenRequest, PositionOpener, State, client_ids
from fsm.request import BadRequest

__all__ = ["DRIVERS", "Run", "client_ids_of", "engine", "legacy", "limit", "seed_plan"]


@attrs.frozen
class Run:
    """What a driver decided about its attempt."""

    #: The driver concluded the entry had failed and set out to undo it
    #: (a false rollback when the entry in fact filled).
    rolled_back: bool
    #: The driver raised the alarm: the exposure may be open and nobody
    #: protects it (the engine's ORPHANED; the seed plan's aborted or
    #: unverified rollback; the legacy code's failed close).
    alarmed: bool = False


def client_ids_of(driver: str, index: int) -> tuple[str, str, str]:
    """The (entry, stop, close) client ids ``driver`` uses in world ``index``."""
    if driver == "engine":
        return client_ids(f"{index:024x}")
    prefix = {"seed_plan": "seed", "legacy": "legacy", "limit": "limit"}[driver]
    return f"{prefix}{index}e", f"{prefix}{index}s", f"{prefix}{index}c"


Driver = Callable[[SimulatedExchange, OpenRequest, Profile, int], Awaitable[Run]]


# -- engine -------------------------------------------------------------------------------


async def engine(sim: SimulatedExchange, request: OpenRequest, profile: Profile,
                 index: int) -> Run:
    """Open through the engine."""
    opener = PositionOpener(sim, ids=lambda: f"{index:024x}")
    try:
        attempt = await opener.open(request)
    except BadRequest:
        return Run(rolled_back=False)  # refused, nothing sent (an opposite position held)
    return Run(rolled_back=any(t.dest is State.ROLLING_BACK for t in attempt.history),
               alarmed=attempt.state is State.ORPHANED)


# -- legacy -------------------------------------------------------------------------------


async def legacy(sim: SimulatedExchange, request: OpenRequest, profile: Profile,
                 index: int) -> Run:
    """Open with the incident's rules (the legacy witness)."""
    result = await legacy_open(sim, request, client_prefix=f"legacy{index}")
    return Run(rolled_back=result.close_side is not None, alarmed=result.state == "failed")


# -- seed plan ----------------------------------------------------------------------------

#: FIX #1.1: the fixed wait before fetching the order ("Bybit needs longer").
SEED_FETCH_WAIT = {"bybit": 0.5}
SEED_FETCH_WAIT_DEFAULT = 0.1
#: FIX #2.1: verification timeout, and its back-off 0.5 * 1.5**n capped at 2 s.
SEED_VERIFY_TIMEOUT = 10.0


class _AtomicPositionError(Exception):
    """The plan's AtomicPositionError: abandons the attempt into rollback."""


async def seed_plan(sim: SimulatedExchange, request: OpenRequest, profile: Profile,
                    index: int) -> Run:
    """The seed plan end to end: entry, fetch after a fixed wait (#1.1), fail
    fast on a missing side (#1.2), multi-source verification (#2.1), stop;
    on any failure after the entry, the rollback of #1.3 verified by #2.2."""
    sym = request.symbol
    prefix = f"seed{index}"
    try:
        raw = await sim.create_order(symbol=sym, side=request.side, amount=request.amount,
                                     client_id=prefix + "e", reduce_only=False)
    except ExchangeError:
        return Run(rolled_back=False)  # the plan treats a failed create as no position
    entry = raw
    if raw.order_id is not None:  # FIX #1.1, now for every exchange
        await asyncio.sleep(SEED_FETCH_WAIT.get(profile.exchange, SEED_FETCH_WAIT_DEFAULT))
        # "fallback to minimal response" on failure; #1.2 catches a missing side
        with contextlib.suppress(ExchangeError):
            entry = await sim.fetch_order(symbol=sym, order_id=raw.order_id, client_id=None)
    try:
        if entry.side is None:  # FIX #1.2: fail fast rather than 'unknown'
            raise _AtomicPositionError("order missing 'side'")
        if not await _seed_verify(sim, request, entry):
            return Run(rolled_back=False)  # closed with nothing filled: no position
        stop_side = entry.side.closing_side
        await sim.place_stop(symbol=sym, side=stop_side, amount=request.amount,
                             trigger_price=request.stop_loss, client_id=prefix + "s")
        return Run(rolled_back=False)
    except (_AtomicPositionError, ExchangeError):
        verified = await _seed_rollback(sim, request, entry, prefix)
        return Run(rolled_back=True, alarmed=not verified)


async def _seed_verify(sim: SimulatedExchange, request: OpenRequest,
                       entry: OrderSnapshot) -> bool:
    """FIX #2.1 ``_verify_position_exists_multi_source``, line for line:
    WebSocket (checked once), then order status (after a 0.5 s wait on the
    first round), then REST (first round and every third), back-off
    ``min(0.5 * 1.5**attempt, 2)``, 10 s timeout."""
    loop = asyncio.get_running_loop()
    sym = request.symbol
    start = loop.time()
    attempt = 0
    tried_ws = tried_order = tried_rest = False
    cache = sim.position_cache
    while loop.time() - start < SEED_VERIFY_TIMEOUT:
        attempt += 1
        if cache is not None and not tried_ws:
            if _seed_ws_sees(cache, sym, request.amount):
                return True
            tried_ws = True
        if not tried_order:
            decision, tried_order = await _seed_order_status(sim, sym, entry, attempt == 1)
            if decision is not None:
                return decision
        if not tried_rest or attempt % 3 == 0:
            seen, answered = await _seed_rest_sees(sim, sym)
            if seen:
                return True
            tried_rest = tried_rest or answered
        await asyncio.sleep(min(0.5 * (1.5**attempt), 2.0))
    raise _AtomicPositionError(f"could not verify position for {sym} after "
                               f"{SEED_VERIFY_TIMEOUT:g}s")


def _seed_ws_sees(cache: PositionCache, sym: str, amount: float) -> bool:
    """The plan's WebSocket check: a streamed size within 0.01 of the amount."""
    ws = cache.latest(sym)
    return ws is not None and ws.size > 0 and abs(ws.size - amount) <= 0.01


async def _seed_order_status(sim: SimulatedExchange, sym: str, entry: OrderSnapshot,
                             first: bool) -> tuple[bool | None, bool]:
    """The plan's order-status check: (decision, answered). The decision is
    True on a fill, False on a closed order with nothing filled, else None;
    a failed look-up is not an answer (retried next round)."""
    try:
        if first:
            await asyncio.sleep(0.5)
        o = await sim.fetch_order(symbol=sym, order_id=entry.order_id, client_id=None)
    except ExchangeError:
        return None, False
    filled = o.filled or 0.0
    if filled > 0:
        return True, True
    if o.status is OrderStatus.CLOSED and filled == 0:
        return False, True
    return None, True


async def _seed_rest_sees(sim: SimulatedExchange, sym: str) -> tuple[bool, bool]:
    """The plan's REST check: (a position is seen, REST answered)."""
    try:
        positions = await sim.fetch_positions([sym])
    except ExchangeError:
        return False, False
    return any(p.symbol == sym and p.size > 0 for p in positions), True


async def _seed_rollback(sim: SimulatedExchange, request: OpenRequest,
                         entry: OrderSnapshot, prefix: str) -> bool:
    """FIX #1.3 (close side from the entry, else from the position, else
    abort) and FIX #2.2 (1 s wait, then up to 10 checks a second apart).
    The plan's close is a plain market order, not reduce-only. Returns
    whether the plan considers the rollback done (False: its alert)."""
    sym = request.symbol
    try:
        positions = await sim.fetch_positions([sym])
    except ExchangeError:
        return False
    ours = next((p for p in positions if p.symbol == sym and p.size > 0), None)
    if ours is None:
        return True  # "if our_position:": nothing seen, nothing closed
    if entry.side is not None:
        close_side = entry.side.closing_side
    elif ours.side is not None:
        close_side = ours.side.closing_side
    else:
        return False  # "CATASTROPHIC": abort, position stays open
    try:
        await sim.create_order(symbol=sym, side=close_side, amount=request.amount,
                               client_id=prefix + "c", reduce_only=False)
    except ExchangeError:
        return False
    return await _seed_confirm_flat(sim, sym)


async def _seed_confirm_flat(sim: SimulatedExchange, sym: str) -> bool:
    """FIX #2.2's confirmation: a 1 s wait, then up to 10 checks a second
    apart, the stream first, then REST."""
    await asyncio.sleep(1.0)
    cache = sim.position_cache
    for i in range(10):
        if cache is not None:
            ws = cache.latest(sym)
            if ws is None or ws.size == 0:
                return True
        try:
            positions = await sim.fetch_positions([sym])
            if not any(p.symbol == sym and p.size > 0 for p in positions):
                return True
        except ExchangeError:
            pass
        if i < 9:
            await asyncio.sleep(1.0)
    return False


# -- limit --------------------------------------------------------------------------------


async def limit(sim: SimulatedExchange, request: OpenRequest, profile: Profile,
                index: int) -> Run:
    """The physical bound: send the stop the instant the fill is first
    observable anywhere, for the size ground truth says filled.

    "Observable" means the first message that leaves the exchange after the
    fill has reached us: the create reply (which could carry the fill, as a
    full acknowledgement does) or the stream's push, whichever lands first.
    So its time to protection is one leg back plus one leg out: fill time +
    one stop round trip. No checks, no fetches: only an oracle can do this.
    """
    sym = request.symbol
    cache = sim.position_cache
    create = asyncio.ensure_future(sim.create_order(
        symbol=sym, side=request.side, amount=request.amount,
        client_id=f"limit{index}e", reduce_only=False))
    waits: set[asyncio.Future[Any]] = {create}
    pushed: asyncio.Future[Any] | None = None
    if cache is not None:
        pushed = asyncio.ensure_future(cache.wait_newer(sym, cache.version(sym)))
        waits.add(pushed)
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    if pushed is not None and not pushed.done():
        pushed.cancel()
    # ground truth: what filled, on which side (net of a position held before)
    net = sim.net_position(sym) - sim.config.initial_positions.get(sym, 0.0)
    if net != 0:
        side = Side.SELL if net > 0 else Side.BUY
        with contextlib.suppress(ExchangeError):
            await sim.place_stop(symbol=sym, side=side, amount=abs(net),
                                 trigger_price=request.stop_loss, client_id=f"limit{index}s")
    with contextlib.suppress(ExchangeError):
        await create
    if pushed is not None:
        await asyncio.gather(pushed, return_exceptions=True)
    return Run(rolled_back=False)


DRIVERS: dict[str, Driver] = {
    "engine": engine,
    "seed_plan": seed_plan,
    "legacy": legacy,
    "limit": limit,
}
