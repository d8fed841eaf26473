"""Time to protection, false rollbacks, doubled positions and requests, for
every (profile, driver), measured from the simulated exchange's ground truth.

Time to protection of one attempt = exchange time at which the stop-loss was
accepted minus exchange time at which the entry filled, both read from
``SimulatedExchange.log``. An attempt whose filled entry never got an
accepted stop has an infinite time to protection: the position sat there
unprotected, which is the very thing being measured. A percentile that falls
among those is reported as ``None`` (JSON ``null``, "never" in the table).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import attrs

from adapters.port import qty_eq
from adapters.simulated import INCIDENT_REQUEST, Fault, SimConfig, run_virtual
from adapters.simulated.ledger import GroundTruthExchange, Own, ledger
from adapters.simulated.runs import quiet_engine_log, settle_time
from benchmarks.drivers import DRIVERS, Driver, Run, client_ids_of
from benchmarks.profiles import Profile
from fsm import OpenRequest

__all__ = ["REQUEST", "Sample", "Summary", "measure", "run_driver", "summarize"]

#: The incident's order: buy 43 AVL/USDT perpetual, stop at 0.1290.
REQUEST = INCIDENT_REQUEST


@attrs.frozen
class Sample:
    """One attempt, as ground truth saw it."""

    ttp: float  # seconds from fill to stop accepted; inf if never protected
    filled: bool
    false_rollback: bool
    doubled: bool
    requests: int
    #: alarmed (ORPHANED) while ground truth shows the attempt's exposure flat
    #: or protected by its own exact stop
    false_alarm: bool = False
    #: exposure the attempt did not create that its orders reduced (L11)
    foreign_touched: float = 0.0
    #: the world answers every request within its receive window (no request
    #: lost or delayed on the way, a window to prove absence with) and nobody
    #: else trades the symbol: where a false alarm has no excuse
    answering: bool = False


@attrs.frozen
class Summary:
    """One (profile, driver) cell; the JSON keys are these field names."""

    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    false_rollbacks: int
    doubled: int
    requests_per_attempt: float
    false_alarms: int
    foreign_touched: int  # attempts that touched foreign exposure
    #: false alarms in worlds that answer within the receive window, with
    #: nobody else trading (Sample.answering): the target is 0
    false_alarms_answering: int = 0


def measure(sim: GroundTruthExchange, request: OpenRequest, run: Run,
            ids: tuple[str, str, str]) -> Sample:
    """One attempt's sample, read from ground truth, not from the driver."""
    entry_cid, stop_cid, close_cid = ids
    sym = request.symbol
    led = ledger(sim.fills, Own(sym, request.side, request.amount, entry_cid, stop_cid,
                                close_cid),
                 initial=sim.config.initial_positions.get(sym, 0.0), arrivals=sim.arrivals)
    covered = any(s.client_id == stop_cid and s.side is request.side.closing_side
                  and qty_eq(s.amount or 0.0, led.exposure)
                  for s in sim.resting_stops(sym))
    entry = next((o for o in sim.log if o.kind == "market" and not o.reduce_only
                  and o.accepted and o.filled > 0 and o.client_id == entry_cid), None)
    stop = None
    if entry is not None:
        stop = next((o for o in sim.log if o.kind == "stop" and o.accepted
                     and o.at >= entry.at), None)
    ttp = stop.at - entry.at if entry is not None and stop is not None else math.inf
    amount = request.amount
    return Sample(
        ttp=ttp,
        filled=entry is not None,
        false_rollback=entry is not None and run.rolled_back,
        doubled=led.own_max_abs > amount * (1 + 1e-9),
        requests=sim.total_calls,
        false_alarm=run.alarmed and (led.exposure == 0 or covered),
        foreign_touched=led.foreign_touched,
        answering=_answering(sim.config),
    )


def _answering(config: SimConfig) -> bool:
    lost = (Fault.TIMEOUT_BEFORE, Fault.DELAYED)
    return (config.receive_window is not None and not config.operator
            and not any(f in lost for fates in config.faults.values() for f in fates))


async def _run(profile: Profile, name: str, driver: Driver, n: int, seed: int
               ) -> list[Sample]:
    out = []
    for i in range(n):
        sim = GroundTruthExchange(profile.world(i, seed))
        run = await driver(sim, REQUEST, profile, i)
        # Let anything the exchange still has in flight for this world land
        # (a stream push, a delayed request) before reading the truth.
        await asyncio.sleep(settle_time(sim.config))
        out.append(measure(sim, REQUEST, run, client_ids_of(name, i)))
    return out


def run_driver(profile: Profile, driver: str, n: int, seed: int = 0) -> list[Sample]:
    """Run ``driver`` on worlds 0..n-1 of ``profile``, in virtual time."""
    with quiet_engine_log():
        return run_virtual(_run(profile, driver, DRIVERS[driver], n, seed))


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (no interpolation: every value reported is
    one that an attempt actually had)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _ms(x: float) -> float | None:
    return None if math.isinf(x) or math.isnan(x) else round(x * 1000, 3)


def summarize(samples: Sequence[Sample]) -> Summary:
    """Percentiles and counts over one driver's samples on one profile."""
    ttps = sorted(s.ttp for s in samples if s.filled)
    return Summary(
        p50_ms=_ms(percentile(ttps, 50)),
        p99_ms=_ms(percentile(ttps, 99)),
        max_ms=_ms(ttps[-1]) if ttps else None,
        false_rollbacks=sum(s.false_rollback for s in samples),
        doubled=sum(s.doubled for s in samples),
        requests_per_attempt=round(sum(s.requests for s in samples) / max(1, len(samples)), 3),
        false_alarms=sum(s.false_alarm for s in samples),
        foreign_touched=sum(s.foreign_touched > 1e-9 for s in samples),
        false_alarms_answering=sum(s.false_alarm and s.answering for s in samples),
    )
