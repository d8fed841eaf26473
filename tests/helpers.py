"""Shared test helpers: run one attempt on the simulator in virtual time."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import attrs

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
