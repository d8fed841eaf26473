"""The AVLUSDT incident, defined once: the exchange as it behaved, the
request, and a replay of it on the simulator.

The incident (2025-10-28): a market BUY of 43 AVLUSDT on Bybit v5. The
create reply carried only the order id (no side), and the REST positions
endpoint lagged the WebSocket by about 4 s. The old code read the side as
``'unknown'``, believed the position had not opened, and "rolled back" with a
BUY: 86 long, no stop-loss.

The demo (:mod:`fsm.demo`) replays it, the diagrams (:mod:`fsm.diagrams`)
draw its paths, and the benchmarks time the same request on exchanges drawn
around it; all three take the definition from here.
"""

from __future__ import annotations

import asyncio

import attrs

from adapters.simulated.exchange import AckStyle, SimConfig, SimulatedExchange, StreamMode
from fsm.attempt import Alert, Attempt
from fsm.driver import PositionOpener
from fsm.request import OpenRequest

__all__ = ["INCIDENT", "INCIDENT_REQUEST", "SYMBOL", "Replay", "replay"]

#: The incident's symbol (ccxt unified spelling of Bybit's ``AVLUSDT``).
SYMBOL = "AVL/USDT:USDT"

#: The exchange as it behaved on the day: Bybit-style minimal acknowledgement,
#: REST positions 4 s behind, the private WebSocket about 100 ms behind.
INCIDENT = SimConfig(
    seed=20251028,
    rtt=0.03,
    ack=AckStyle.MINIMAL,
    rest_position_lag=4.0,
    stream=StreamMode.PRESENT,
    stream_lag=0.1,
    prices={SYMBOL: 0.1358},
)

#: The incident's order: buy 43 AVL/USDT perpetual, stop-loss at 0.1290.
INCIDENT_REQUEST = OpenRequest(
    symbol=SYMBOL, side="buy", amount=43, stop_loss=0.1290, reference_price=0.1358
)


@attrs.frozen
class Replay:
    """One attempt replayed on a fresh simulator, with its ground truth."""

    attempt: Attempt
    exchange: SimulatedExchange  # the exchange's ground truth after the attempt
    alerts: list[Alert]  # the alerts the attempt raised
    started_at: float  # the loop time the attempt started at


async def replay(
    config: SimConfig = INCIDENT,
    request: OpenRequest = INCIDENT_REQUEST,
    *,
    attempt_id: str | None = None,
) -> Replay:
    """Run one attempt on a fresh simulator built from ``config``.

    Attempt ids are deterministic: ``attempt_id`` when given, else derived
    from the seed and a counter, so the same config gives the same history.
    """
    exchange = SimulatedExchange(config)
    alerts: list[Alert] = []
    counter = iter(range(1, 1_000_000))

    def ids() -> str:
        if attempt_id is not None:
            return attempt_id
        return f"{config.seed:016x}{next(counter):08x}"

    opener = PositionOpener(exchange, alerts=alerts.append, ids=ids)
    start = asyncio.get_running_loop().time()
    attempt = await opener.open(request)
    return Replay(attempt, exchange, alerts, start)
