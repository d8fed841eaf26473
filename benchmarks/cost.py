"""What the engine costs: CPU per attempt, memory per live attempt, and
simulated attempts per second.

* CPU: attempts against :class:`InstantExchange`, an exchange port that
  answers every call at once (Bybit-style minimal ack, then a filled order,
  then an accepted stop), so the time measured is the engine's own. The
  baseline is :func:`handwritten`, the least code that makes the same five
  adapter calls (market, fetch_positions, create, fetch_order, place_stop)
  with no state machine, no history, no deadlines and no checks beyond "no
  opposite position" and "filled on our side".
* Memory: attempts parked mid-flight (entry acknowledged, ``fetch_order``
  never answers), measured with ``tracemalloc``: everything the opener
  allocated for them (task, coroutine frames, attempt, evidence, history,
  timers, per-symbol lock) divided by their number.
* Throughput: engine attempts on the simulated exchange (calm profile) in
  virtual time, attempts per CPU second, exchange and event loop included.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
import tracemalloc
from collections.abc import Sequence

from adapters.port import (
    Fill,
    Market,
    OrderSnapshot,
    OrderStatus,
    PositionCache,
    PositionSnapshot,
    Side,
    StopSnapshot,
)
from adapters.simulated import SimulatedExchange, run_virtual
from adapters.simulated.runs import quiet_engine_log
from benchmarks.profiles import PROFILES, Profile
from benchmarks.timing import REQUEST
from fsm import OpenRequest, PositionOpener

__all__ = [
    "InstantExchange",
    "cpu_per_attempt",
    "handwritten",
    "memory_per_attempt",
    "sim_attempts_per_s",
]


class InstantExchange:
    """An exchange port whose every call returns at once, without yielding to
    the loop: only the caller's CPU is left to measure."""

    name = "instant"
    position_cache: PositionCache | None = None

    receive_window: float | None = 5.0
    lookup_lag: float = 0.0

    def __init__(self) -> None:
        self._n = 0

    async def market(self, symbol: str) -> Market:
        """A market with no grid."""
        return Market(symbol=symbol)

    async def fetch_fills(self, symbol: str, since: float | None) -> list[Fill]:
        """No executions."""
        return []

    async def create_order(self, *, symbol: str, side: Side, amount: float, client_id: str,
                           reduce_only: bool) -> OrderSnapshot:
        """Acknowledge with ids only, at once."""
        self._n += 1
        return OrderSnapshot(symbol=symbol, order_id=str(self._n), client_id=client_id)

    async def fetch_order(self, *, symbol: str, order_id: str | None,
                          client_id: str | None) -> OrderSnapshot:
        """The order, fully filled."""
        return OrderSnapshot(symbol=symbol, order_id=order_id, client_id=client_id,
                             side=Side.BUY, amount=43.0, filled=43.0,
                             status=OrderStatus.CLOSED, reduce_only=False, average=0.1358,
                             timestamp=0.0)

    async def fetch_positions(self, symbols: Sequence[str] | None = None
                              ) -> list[PositionSnapshot]:
        """Nothing (REST never shows the position)."""
        return []

    async def fetch_price(self, symbol: str) -> float | None:
        """The incident's price."""
        return 0.1358

    async def place_stop(self, *, symbol: str, side: Side, amount: float, trigger_price: float,
                         client_id: str) -> StopSnapshot:
        """Accept the stop as asked."""
        return StopSnapshot(symbol=symbol, order_id="s" + client_id, client_id=client_id,
                            side=side, amount=amount, trigger_price=trigger_price,
                            reduce_only=True)

    async def fetch_stops(self, symbol: str | None = None) -> list[StopSnapshot]:
        """No stops."""
        return []

    async def cancel_order(self, *, symbol: str, order_id: str | None,
                           client_id: str | None) -> None:
        """Nothing to cancel."""
        return None


async def handwritten(ex: InstantExchange, request: OpenRequest, n: int) -> None:
    """The baseline: the same five adapter calls per attempt as the engine
    (the market and the account's position before the entry, then create,
    fetch_order, place_stop), and nothing else."""
    for i in range(n):
        cid = f"hand{i}"
        await ex.market(request.symbol)
        held = await ex.fetch_positions([request.symbol])
        if any(p.size > 0 and p.side is not request.side.opens for p in held):
            continue
        ack = await ex.create_order(symbol=request.symbol, side=request.side,
                                    amount=request.amount, client_id=cid + "e",
                                    reduce_only=False)
        order = await ex.fetch_order(symbol=request.symbol, order_id=ack.order_id,
                                     client_id=cid + "e")
        if order.terminal and order.filled and order.side is request.side:
            await ex.place_stop(symbol=request.symbol, side=request.side.closing_side,
                                amount=order.filled, trigger_price=request.stop_loss,
                                client_id=cid + "s")


async def _engine(ex: InstantExchange, request: OpenRequest, n: int) -> None:
    counter = itertools.count()
    opener = PositionOpener(ex, ids=lambda: f"{next(counter):024x}")
    for _ in range(n):
        await opener.open(request)


def _cpu(kind: str, n: int, rounds: int) -> float:
    """Best of ``rounds`` runs of ``n`` attempts, CPU seconds per attempt."""
    best = float("inf")
    for _ in range(rounds):
        ex = InstantExchange()
        coro = _engine(ex, REQUEST, n) if kind == "engine" else handwritten(ex, REQUEST, n)
        gc.collect()
        t0 = time.process_time()
        asyncio.run(coro)
        best = min(best, (time.process_time() - t0) / n)
    return best


def cpu_per_attempt(n: int = 5000, rounds: int = 3) -> tuple[float, float]:
    """(engine, handwritten) CPU microseconds per attempt. The logging
    configuration is Python's default (warnings and up), as in a bot that
    has not turned on INFO for the ``fsm`` logger."""
    _cpu("engine", min(n, 200), 1)  # warm-up: imports, caches
    engine = _cpu("engine", n, rounds)
    hand = _cpu("hand", n, rounds)
    return engine * 1e6, hand * 1e6


class ParkedExchange(InstantExchange):
    """Acknowledges the entry, then never answers ``fetch_order``: every
    attempt stays live in PLACED, mid-request."""

    def __init__(self) -> None:
        super().__init__()
        self.parked = 0
        self.target = 0
        self.all_parked = asyncio.Event()
        self._never: asyncio.Future[None] | None = None

    async def fetch_order(self, *, symbol: str, order_id: str | None,
                          client_id: str | None) -> OrderSnapshot:
        if self._never is None:
            self._never = asyncio.get_running_loop().create_future()
        self.parked += 1
        if self.parked >= self.target:
            self.all_parked.set()
        await self._never
        raise AssertionError("unreachable")


async def _parked_bytes(n: int) -> float:
    ex = ParkedExchange()
    counter = itertools.count()
    opener = PositionOpener(ex, ids=lambda: f"{next(counter):024x}")
    # The requests are the caller's; one symbol each, since one opener runs
    # attempts on the same symbol one after another.
    requests = [OpenRequest(symbol=f"C{i}/USDT:USDT", side="buy", amount=43, stop_loss=0.129,
                            reference_price=0.1358) for i in range(n)]
    # Let the one-off allocations of a first attempt (the ParkedExchange's
    # future, the loop's internals) happen before the baseline.
    ex.target = 1
    warm = asyncio.ensure_future(opener.open(OpenRequest(
        symbol="WARM/USDT:USDT", side="buy", amount=1, stop_loss=0.1, reference_price=1.0)))
    await ex.all_parked.wait()
    ex.all_parked.clear()
    ex.target = n + 1
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tasks = [asyncio.ensure_future(opener.open(r)) for r in requests]
        await ex.all_parked.wait()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    for t in [*tasks, warm]:
        t.cancel()
    await asyncio.gather(*tasks, warm, return_exceptions=True)
    return used / n


def memory_per_attempt(counts: Sequence[int] = (1, 100, 10_000)) -> dict[int, float]:
    """Bytes per live attempt at each level of concurrency."""
    with quiet_engine_log():
        return {n: asyncio.run(_parked_bytes(n)) for n in counts}


def sim_attempts_per_s(n: int = 5000, profile: Profile = PROFILES[0], seed: int = 0,
                       rounds: int = 3) -> float:
    """Engine attempts per second of CPU on the simulated exchange, one
    fresh exchange and opener per world (as the timing runs and the specs
    do), in virtual time; best of ``rounds``. CPU seconds rather than wall
    seconds: a virtual-time simulation is CPU-bound, and CPU time does not
    count other processes sharing the machine."""
    worlds = [profile.world(i, seed) for i in range(n)]

    async def go() -> None:
        for i, cfg in enumerate(worlds):
            sim = SimulatedExchange(cfg)
            opener = PositionOpener(sim, ids=itertools.repeat(f"{i:024x}").__next__)
            await opener.open(REQUEST)

    best = float("inf")
    with quiet_engine_log():
        for _ in range(rounds):
            gc.collect()
            t0 = time.process_time()
            run_virtual(go())
            best = min(best, time.process_time() - t0)
    return n / best
