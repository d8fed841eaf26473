"""Replay of the AVLUSDT incident on the simulated exchange.

The incident: a market BUY of 43 AVLUSDT on Bybit v5. The create reply
carried only the order id (no side), and the REST positions endpoint lagged
the WebSocket by about 4 s. The old code read the side as ``'unknown'``,
believed the position had not opened, and "rolled back" with a BUY: 86 long,
no stop-loss. Here the same exchange behaviour is replayed against the
engine, once as it happened and once with the stop-loss refused so that the
rollback path is exercised too.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from adapters.simulated import INCIDENT, INCIDENT_REQUEST, SimConfig, SimulatedExchange, replay
from adapters.simulated.clock import run_virtual
from fsm.attempt import Alert, Attempt
from fsm.request import OpenRequest

__all__ = ["INCIDENT", "INCIDENT_REQUEST", "Scenario", "main", "run_scenario"]


@attrs.frozen
class Scenario:
    """One replay the demo prints: a title and the exchange it runs on."""

    title: str
    config: SimConfig


SCENARIOS = (
    Scenario("The incident, replayed: minimal ack, REST positions 4 s behind", INCIDENT),
    Scenario("The same, with the stop-loss refused by the exchange (rollback path)",
             attrs.evolve(INCIDENT, stop_rejected=True)),
)


async def run_scenario(
    config: SimConfig, request: OpenRequest = INCIDENT_REQUEST
) -> tuple[Attempt, SimulatedExchange, list[Alert], float]:
    """Run one attempt on a fresh simulator; returns the attempt, the exchange
    (for ground truth), the alerts raised and the loop time it started at."""
    r = await replay(config, request)
    return r.attempt, r.exchange, r.alerts, r.started_at


def render(attempt: Attempt, exchange: SimulatedExchange, alerts: list[Alert],
           start: float) -> str:
    """The story of one attempt, for a terminal."""
    r = attempt.request
    lines = [f"  request: {r.side.value} {r.amount:g} {r.symbol}, stop-loss {r.stop_loss}"]
    lines.append("  transitions (virtual ms since start):")
    for step in attempt.history:
        src = step.evidence.value if step.evidence else "-"
        lines.append(f"    {1000 * (step.at - start):7.1f}  {step.source.value:>12} "
                     f"--{step.trigger.value}--> {step.dest.value}")
        lines.append(f"    {'':7}  {'':>12}   guards: {', '.join(g for g, _ in step.guards)}")
        lines.append(f"    {'':7}  {'':>12}   evidence ({src}): {step.detail}")
    lines.append(f"  final state: {attempt.state.value}")
    lines.append("  exchange ground truth:")
    net = exchange.net_position(r.symbol)
    side = "long" if net > 0 else "short" if net < 0 else "flat"
    lines.append(f"    net position: {abs(net):g} {side} "
                 f"(largest ever: {exchange.max_abs_position(r.symbol):g})")
    stops = exchange.resting_stops(r.symbol)
    for s in stops:
        lines.append(f"    resting stop: {s.side.value if s.side else '?'} {s.amount:g} "
                     f"@ {s.trigger_price} reduce-only={s.reduce_only}")
    if not stops:
        lines.append("    resting stops: none")
    lines.append("    orders the exchange received:")
    for o in exchange.log:
        verdict = f"filled {o.filled:g}" if o.accepted else f"REFUSED ({o.reason})"
        lines.append(f"      {1000 * (o.at - start):7.1f} ms  {o.kind:6} {o.side.value:4} "
                     f"{o.amount:g} reduce-only={o.reduce_only!s:5}  {verdict}")
    buys_after_entry = [o for o in exchange.log[1:] if o.side is r.side and o.accepted]
    lines.append(f"    orders on the entry's side after the entry: {len(buys_after_entry)}")
    for a in alerts:
        lines.append(f"  ALERT: {a.message}")
    return "\n".join(lines)


def main(out: Callable[[str], object] = print) -> int:
    """Run both scenarios and print them. Returns a process exit code: 0 when
    the engine did what the incident needed (never more than 43 long)."""
    ok = True
    for n, sc in enumerate(SCENARIOS, 1):
        attempt, exchange, alerts, start = run_virtual(run_scenario(sc.config))
        out(f"\n[{n}] {sc.title}")
        out(render(attempt, exchange, alerts, start))
        ok = ok and exchange.max_abs_position(attempt.request.symbol) <= attempt.request.amount
    out("\nNever 86: the side comes from the request, checked against the exchange; "
        "every close is reduce-only.")
    return 0 if ok else 1
