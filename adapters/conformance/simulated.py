"""The simulator as a conformance venue: it is its own adapter and venue,
so its driver turns :class:`~adapters.simulated.SimConfig` knobs."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import attrs

from adapters.conformance.venue import (
    Call,
    Failure,
    Outcome,
    Received,
    Unsupported,
    Venue,
)
from adapters.simulated import (
    AckStyle,
    Fault,
    OperatorMove,
    SimConfig,
    SimulatedExchange,
    StreamMode,
)

__all__ = ["SimulatedDriver", "simulated_venue"]

_FAULTS: dict[Failure, Fault] = {
    "timeout_before": Fault.TIMEOUT_BEFORE,
    "timeout_after": Fault.TIMEOUT_AFTER,
    "unavailable": Fault.UNAVAILABLE,
    "rate_limit": Fault.RATE_LIMIT,
}
#: The kit's call names onto the simulator's fault-schedule keys (the kit
#: aims "create" at entries, which the simulator keys apart from closes).
_KINDS: dict[Call, str] = {
    "create": "create", "fetch_order": "fetch_order", "place_stop": "place_stop",
    "fetch_stops": "fetch_stops", "fetch_positions": "fetch_positions", "cancel": "cancel",
}


class SimulatedDriver:
    """:class:`~adapters.conformance.venue.VenueDriver` over a
    :class:`SimulatedExchange`."""

    def __init__(self, sim: SimulatedExchange) -> None:
        self.sim = sim

    def _set(self, **knobs: object) -> None:
        self.sim.config = attrs.evolve(self.sim.config, **knobs)  # type: ignore[arg-type]

    def _schedule(self, call: Call, fault: Fault) -> None:
        kind = _KINDS[call]
        done = self.sim._fault_pos.get(kind, 0)  # calls already made of this kind
        faults = dict(self.sim.config.faults)
        faults[kind] = (Fault.OK,) * done + (fault,)
        self._set(faults=faults)

    def set_price(self, symbol: str, price: float) -> None:
        """The simulator's price for ``symbol``."""
        self._set(prices={**self.sim.config.prices, symbol: price})

    def next_order(self, outcome: Outcome) -> None:
        """Refuse the next entry (``reject_entry`` for one order)."""
        if outcome == "rest":
            raise Unsupported("the simulator cannot leave a market order resting")
        if outcome == "fill":
            self._set(reject_entry=False)
            return
        self._set(reject_entry=True)
        previous = self.sim.on_arrival

        def once(kind: str) -> None:
            if kind == "create":  # the refusal happens right after arrival
                asyncio.get_running_loop().call_soon(lambda: self._set(reject_entry=False))
                self.sim.on_arrival = previous
            if previous is not None:
                previous(kind)

        self.sim.on_arrival = once

    def fail_next(self, call: Call, failure: Failure) -> None:
        """Schedule the fault for the next call of that kind."""
        self._schedule(call, _FAULTS[failure])

    def delay_next(self, call: Call, seconds: float) -> None:
        """A ``DELAYED`` fault arriving ``seconds`` later."""
        self._set(delayed_arrival=seconds)
        self._schedule(call, Fault.DELAYED)

    def venue_error(self, call: Call, code: str) -> None:
        """The simulator has no venue error codes."""
        raise Unsupported("the simulator has no venue error codes")

    def hide_orders(self, seconds: float) -> None:
        """``order_visibility_lag``: look-ups miss younger orders."""
        self._set(order_visibility_lag=seconds)

    def ids_only_replies(self) -> Collection[Call]:
        """Minimal (Bybit v5 style) create acknowledgements."""
        self._set(ack=AckStyle.MINIMAL)
        stripped: tuple[Call, ...] = ("create",)
        return stripped

    def set_position(self, symbol: str, signed: float) -> None:
        """The operator trades the account to ``signed``."""
        delta = signed - self.sim.net_position(symbol)
        self.sim.operate(OperatorMove(at=0.0, symbol=symbol, delta=delta))

    def hedge_legs(self, symbol: str, long: float, short: float) -> None:
        """The simulator nets one way."""
        raise Unsupported("the simulator nets one way; it cannot hold hedge-mode legs")

    def push_position(self, symbol: str, signed: float, at: float) -> None:
        """The simulator's stream pushes only its own moves."""
        raise Unsupported("the simulator cannot push a chosen position on its stream")

    def received(self, client_id: str) -> Received | None:
        """The order the simulator holds under ``client_id``."""
        order = self.sim._by_client.get(client_id)
        if order is None:
            return None
        return Received(side=order.side, amount=order.amount, reduce_only=order.reduce_only,
                        trigger_price=order.trigger_price)


async def simulated_venue(config: SimConfig | None = None) -> Venue:
    """The simulator as a venue: strict symbols (as on a real venue), a
    position stream, AVL/USDT:USDT at 0.1358."""
    base = config or SimConfig(prices={"AVL/USDT:USDT": 0.1358}, strict_symbols=True,
                               stream=StreamMode.PRESENT)
    sim = SimulatedExchange(base)
    return Venue(name="simulated", adapter=sim, driver=SimulatedDriver(sim),
                 symbol="AVL/USDT:USDT", native_symbol="AVLUSDT", amount=43.0, price=0.1358)
