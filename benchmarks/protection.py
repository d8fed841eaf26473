"""The unprotected window, per venue and protection mode, from ground truth.

Unprotected window of one attempt = exchange time during which the
attempt's filled exposure had no live stop on the exchange: from the
entry's fill until the first of (a stop of the attempt armed for it, the
attempt's close filled). Read from ``SimulatedExchange.log`` and ``fills``,
never from what the engine believed. An attempt whose fill was neither
protected nor closed has an infinite window.

Venues (on each latency profile's worlds):

* ``bybit``: minimal create reply (ids only), stops attached to the entry
  are armed at the fill (``stopLoss`` + ``tpslMode=Partial``);
* ``okx``: minimal create reply (``ordId``/``clOrdId``/``sCode``), attached
  stops (``attachAlgoOrds``);
* ``binance``: NEW/0 create reply, no attached stop on a market entry;
* ``bybit, armed 0.3 s late`` and ``bybit, refused at the fill``: the
  attached stop's failure modes (``auto`` only): the window is then the
  arming delay, or the fallback to a separate stop.

Modes: ``auto`` (attached where the venue arms them) and ``separate``.

The honest limit for a separate stop is "fill observable through any
channel + the stop's trip": the earliest of the stream's push
(``stream_lag`` after the fill) and the create reply's return plus one
fetch round trip (the minimal and NEW/0 replies do not carry the fill),
plus the stop request's one-way trip to the exchange (it is live on
arrival; stricter than a whole round trip). Latencies use the world's base
RTT without jitter or heavy tail, so the limit is a lower bound: in the
loaded profile most of the gap is the Pareto tail on each leg. For an attached stop the
limit is 0. The old oracle (``limit`` driver in :mod:`benchmarks.timing`,
which assumes the create reply carries the fill) is not used here.

Run: ``python -m benchmarks.protection [--n 200] [--out benchmarks/results]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from adapters.port import Side
from adapters.simulated import AckStyle, SimConfig, SimulatedExchange, StreamMode
from adapters.simulated.runs import quiet_engine_log, settle_time
from adapters.virtual_time import run_virtual
from benchmarks.profiles import PROFILES, Profile
from benchmarks.timing import REQUEST, percentile
from fsm import Policy, PositionOpener, attached_stop_id, client_ids
from fsm.request import BadRequest

__all__ = ["VENUES", "WindowSample", "honest_limit", "run_cell", "unprotected_window"]

#: venue -> how it changes a profile's world
VENUES: dict[str, dict[str, object]] = {
    "bybit": {"ack": AckStyle.MINIMAL, "attached_stops": True},
    "okx": {"ack": AckStyle.MINIMAL, "attached_stops": True},
    "binance": {"ack": AckStyle.NEW, "attached_stops": False},
    # Bybit with the attached stop's failure modes: what the fallback costs.
    "bybit, armed 0.3 s late": {"ack": AckStyle.MINIMAL, "attached_stops": True,
                                "attached_stop_delay": 0.3},
    "bybit, refused at the fill": {"ack": AckStyle.MINIMAL, "attached_stops": True,
                                   "attached_stop_refused": True},
}
MODES = ("auto", "separate")
BENCH_PROFILES = ("calm", "loaded", "incident", "calm-no-stream", "faulty")


@attrs.frozen
class WindowSample:
    """One attempt's unprotected window, as ground truth saw it."""

    window: float  # seconds; inf if the fill was never protected nor closed
    limit: float  # the honest limit for this world and mode
    filled: bool
    requests: int
    #: where the time went (separate stops): from the fill until the first
    #: channel could show it, from then until the engine sent the stop, and
    #: the stop request's own trip to the exchange
    observable: float = 0.0
    engine: float = 0.0
    trip: float = 0.0


def unprotected_window(sim: SimulatedExchange, ids: tuple[str, ...], entry_cid: str,
                       close_cid: str) -> float | None:
    """Ground truth: seconds from the entry's fill until a stop of the
    attempt was armed or its close filled; ``None`` if the fill added no
    exposure on the request's side (nothing filled, or, in a shared account,
    the fill only reduced someone else's opposite position: a netted account
    then holds nothing of the attempt's to protect)."""
    entry = next((o for o in sim.log if o.kind == "market" and o.client_id == entry_cid
                  and o.accepted and o.filled > 0), None)
    if entry is None or not _exposed_after(sim, entry_cid, entry.side):
        return None
    ends = [o.at for o in sim.log if o.kind == "stop" and o.accepted and o.client_id in ids
            and o.at >= entry.at]
    ends += [f.at for f in sim.fills if f.client_id == close_cid]
    return (min(ends) - entry.at) if ends else math.inf


def _exposed_after(sim: SimulatedExchange, entry_cid: str, side: Side) -> bool:
    """The account's net position, right after the entry's fill, is on the
    side the entry opens."""
    fill = next(f for f in sim.fills if f.client_id == entry_cid)
    net = sim.config.initial_positions.get(fill.symbol, 0.0)
    for f in sim.fills:
        if f.symbol == fill.symbol:
            net += f.amount if f.side is Side.BUY else -f.amount
        if f is fill:
            break
    return net > 1e-12 if side is Side.BUY else net < -1e-12


def fill_observable(config: SimConfig) -> float:
    """Seconds after the fill at which the first channel can show it: the
    stream's push, or the create reply back plus one fetch round trip (the
    minimal and NEW/0 replies carry no fill) answered no earlier than the
    order becomes visible, at the base RTT."""
    rtt = config.rtt
    by_reply = rtt / 2
    if config.ack is not AckStyle.FULL:
        # one fetch, which can show the order only once it is visible
        by_reply = max(rtt / 2 + rtt, config.order_visibility_lag + rtt / 2)
    by_stream = config.stream_lag if config.stream is StreamMode.PRESENT else math.inf
    return min(by_reply, by_stream)


def honest_limit(config: SimConfig, attached: bool, trip: float | None = None) -> float:
    """See the module docstring. ``trip``: the stop request's actual trip to
    the exchange in this world, when known (else half the base RTT)."""
    if attached:
        return 0.0
    return fill_observable(config) + (config.rtt / 2 if trip is None else trip)


def _time_stops(sim: SimulatedExchange) -> list[float]:
    """Record when the engine sends each separate stop (loop time)."""
    sent: list[float] = []
    place = sim.place_stop

    async def timed_place(**kw: Any) -> Any:
        sent.append(asyncio.get_running_loop().time())
        return await place(**kw)

    sim.place_stop = timed_place  # type: ignore[method-assign]
    return sent


async def _cell(profile: Profile, venue: str, mode: str, n: int, seed: int
                ) -> list[WindowSample]:
    out = []
    for i in range(n):
        config = attrs.evolve(profile.world(i, seed), **VENUES[venue])  # type: ignore[arg-type]
        sim = SimulatedExchange(config)
        sent = _time_stops(sim)
        aid = f"{i:024x}"
        opener = PositionOpener(sim, policy=Policy(protection=mode),
                                ids=itertools.repeat(aid).__next__)
        with contextlib.suppress(BadRequest):  # refused, nothing sent
            await opener.open(REQUEST)
        await asyncio.sleep(settle_time(config))
        entry, stop, close = client_ids(aid)
        w = unprotected_window(sim, (stop, attached_stop_id(aid)), entry, close)
        attached = mode == "auto" and config.attached_stops
        fill_at = next((o.at for o in sim.log if o.client_id == entry and o.filled > 0), None)
        armed = next((o.at for o in sim.log if o.kind == "stop" and o.accepted
                      and o.client_id == stop), None)
        trip = armed - sent[0] if sent and armed is not None else None
        obs = fill_observable(config)
        engine = sent[0] - fill_at - obs if sent and fill_at is not None else 0.0
        out.append(WindowSample(math.inf if w is None else w,
                                honest_limit(config, attached, trip), w is not None,
                                sim.total_calls, 0.0 if attached else obs, engine,
                                trip or 0.0))
    return out


def run_cell(profile: str, venue: str, mode: str, n: int, seed: int = 0) -> list[WindowSample]:
    """Worlds 0..n-1 of ``profile`` as ``venue``, the engine in ``mode``."""
    prof = next(p for p in PROFILES if p.name == profile)
    with quiet_engine_log():
        return run_virtual(_cell(prof, venue, mode, n, seed))


def _ms(x: float) -> float | None:
    return None if math.isinf(x) or math.isnan(x) else round(x * 1000, 3) + 0.0


def summarize(samples: Sequence[WindowSample]) -> dict[str, object]:
    filled = [s for s in samples if s.filled]
    windows = sorted(s.window for s in filled)
    limits = sorted(s.limit for s in filled)
    p99, lim99 = percentile(windows, 99), percentile(limits, 99)
    at = next((s for s in filled if s.window == p99), None)
    return {
        "p50_ms": _ms(percentile(windows, 50)),
        "p99_ms": _ms(p99),
        "p100_ms": _ms(windows[-1]) if windows else None,
        "limit_p99_ms": _ms(lim99),
        # n/a: a limit of 0 (attached) that a failing venue cannot reach
        "p99_over_limit": (round(p99 / lim99, 3) if lim99 and not math.isinf(p99)
                           else 0.0 if p99 == 0 else None if lim99 else "n/a"),
        "requests_per_attempt": round(sum(s.requests for s in samples) / max(1, len(samples)),
                                      3),
        "unprotected_forever": sum(math.isinf(s.window) for s in filled),
        # where the p99 attempt's time went: fill -> observable -> stop sent -> armed
        "p99_split_ms": None if at is None else [_ms(at.observable), _ms(at.engine),
                                                 _ms(at.trip)],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    rows = []
    for profile in BENCH_PROFILES:
        for venue in VENUES:
            for mode in MODES:
                if venue == "binance" and mode == "auto":
                    continue  # the same as separate: Binance arms no attached stop
                if venue.startswith("bybit,") and mode == "separate":
                    continue  # the attached stop's failures matter to auto only
                s = summarize(run_cell(profile, venue, mode, args.n, args.seed))
                rows.append({"profile": profile, "venue": venue, "mode": mode, **s})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "protection.json").write_text(json.dumps(rows, indent=1) + "\n")

    def cell(v: object) -> str:
        return "never" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    def split(v: object) -> str:
        if not isinstance(v, list) or not any(v):
            return "-"
        return " / ".join(cell(x) for x in v)

    lines = [f"Unprotected window (ms, ground truth), {args.n} worlds per row, seed "
             f"{args.seed}: `python -m benchmarks.protection --n {args.n}`", "",
             "| profile | venue | mode | p50 | p99 | p100 | honest limit p99 | p99/limit "
             "| p99 split: observable / engine / stop trip | requests/attempt |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['profile']} | {r['venue']} | {r['mode']} | {cell(r['p50_ms'])} | "
                     f"{cell(r['p99_ms'])} | {cell(r['p100_ms'])} | {cell(r['limit_p99_ms'])} "
                     f"| {cell(r['p99_over_limit'])} | {split(r['p99_split_ms'])} "
                     f"| {cell(r['requests_per_attempt'])} |")
    text = "\n".join(lines) + "\n"
    (args.out / "protection.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
