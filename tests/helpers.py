"""Shared test helpers: run one attempt on the simulator in virtual time."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import attrs

from adapters.port import OrderSnapshot, Side, StopSnapshot
from adapters.simulated import SimConfig, SimulatedExchange
from adapters.virtual_time import run_virtual
from fsm import Alert, Attempt, MemoryJournal, OpenRequest, Policy, PositionOpener

SYMBOL = "AVL/USDT:USDT"
PRICE = 0.1358


def request(**overrides: Any) -> OpenRequest:
    base: dict[str, Any] = dict(symbol=SYMBOL, side="buy", amount=43, stop_loss=0.1290,
                                reference_price=PRICE)
    base.update(overrides)
    return OpenRequest(**base)


@attrs.define
class Outcome:
    attempt: Attempt
    exchange: SimulatedExchange
    alerts: list[Alert]
    journal: MemoryJournal
    started: float
    ended: float

    @property
    def duration(self) -> float:
        return self.ended - self.started

    @property
    def entry_sent(self) -> float:
        """When the entry left: its intent is journalled just before."""
        return next(r.at for r in self.journal.records
                    if r.kind == "intent" and r.data["action"] == "entry")

    @property
    def steps(self) -> list[tuple[str, str, str]]:
        return [(s.source.value, s.trigger.value, s.dest.value) for s in self.attempt.history]


def ids() -> Any:
    counter = itertools.count(1)
    return lambda: f"{next(counter):024x}"


def run_attempt(config: SimConfig | None = None, req: OpenRequest | None = None,
                policy: Policy | None = None, linger: float = 0.0, **knobs: Any) -> Outcome:
    """One attempt on the simulator configured by ``config`` and ``knobs``.
    ``linger``: virtual seconds the world runs on after the attempt ended
    (a stop the venue arms late arms then)."""
    cfg = attrs.evolve(config or SimConfig(prices={SYMBOL: PRICE}), **knobs)
    exchange = SimulatedExchange(cfg)
    alerts: list[Alert] = []
    journal = MemoryJournal()
    opener = PositionOpener(exchange, policy=policy, alerts=alerts.append, journal=journal,
                            ids=ids())

    async def go() -> Outcome:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        attempt = await opener.open(req or request())
        ended = loop.time()
        if linger:
            await asyncio.sleep(linger)
        return Outcome(attempt, exchange, alerts, journal, t0, ended)

    return run_virtual(go())


class Breaks(SimulatedExchange):
    """The simulator, except that the chosen writes fail once, before they
    reach the venue, with an error no adapter should raise (a bug in an
    adapter, an unmapped venue error): the engine cannot know they were not
    sent, and must say so loudly and carry on safely. ``entry``: the first
    create that is not reduce-only; ``close``: the first reduce-only one;
    ``stop``: the first stop."""

    def __init__(self, config: SimConfig, *, entry: bool = False, close: bool = False,
                 stop: bool = False) -> None:
        super().__init__(config)
        self.to_break = {"entry": entry, "close": close, "stop": stop}
        self.creates = 0  # create_order calls, broken ones included
        self.broke: list[str] = []  # what broke, in order

    def _breaks(self, what: str) -> None:
        if self.to_break[what]:
            self.to_break[what] = False
            self.broke.append(what)
            raise KeyError("unmapped venue error")

    async def create_order(self, *, symbol: str, side: Side, amount: float, client_id: str,
                           reduce_only: bool) -> OrderSnapshot:
        self.creates += 1
        self._breaks("close" if reduce_only else "entry")
        return await super().create_order(symbol=symbol, side=side, amount=amount,
                                          client_id=client_id, reduce_only=reduce_only)

    async def place_stop(self, *, symbol: str, side: Side, amount: float,
                         trigger_price: float, client_id: str) -> StopSnapshot:
        self._breaks("stop")
        return await super().place_stop(symbol=symbol, side=side, amount=amount,
                                        trigger_price=trigger_price, client_id=client_id)
