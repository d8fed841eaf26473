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
* ``binance``: NEW/0 create reply, no attached stop on a market entry.

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
import json
import math
from collections.abc import Sequence
from pathlib import Path

import attrs

from adapters.simulated import AckStyle, SimConfig, SimulatedExchange, StreamMode
from adapters.virtual_time import run_virtual
from benchmarks.profiles import PROFILES, Profile
from benchmarks.timing import REQUEST, percentile
from fsm import Policy, PositionOpener, attached_stop_id, client_ids
from fsm.request import BadRequest
from specs.worlds import quiet_engine_log, settle_time

__all__ = ["VENUES", "WindowSample", "honest_limit", "run_cell", "unprotected_window"]

#: venue -> how it changes a profile's world
VENUES: dict[str, dict[str, object]] = {
    "bybit": {"ack": AckStyle.MINIMAL, "attached_stops": True},
    "okx": {"ack": AckStyle.MINIMAL, "attached_stops": True},
    "binance": {"ack": AckStyle.NEW, "attached_stops": False},
}
MODES = ("auto", "separate")
BENCH_PROFILES = ("calm", "loaded", "incident")


@attrs.frozen
class WindowSample:
    window: float  # seconds; inf if the fill was never protected nor closed
    limit: float  # the honest limit for this world and mode
    filled: bool
    requests: int


def unprotected_window(sim: SimulatedExchange, ids: tuple[str, ...], entry_cid: str,
                       close_cid: str) -> float | None:
    """Ground truth: seconds from the entry's fill until a stop of the
    attempt was armed or its close filled; ``None`` if nothing filled."""
    entry = next((o for o in sim.log if o.kind == "market" and o.client_id == entry_cid
                  and o.accepted and o.filled > 0), None)
    if entry is None:
        return None
    ends = [o.at for o in sim.log if o.kind == "stop" and o.accepted and o.client_id in ids
            and o.at >= entry.at]
    ends += [f.at for f in sim.fills if f.client_id == close_cid]
    return (min(ends) - entry.at) if ends else math.inf


def honest_limit(config: SimConfig, attached: bool) -> float:
    """See the module docstring."""
    if attached:
        return 0.0
    rtt = config.rtt
    by_reply = rtt / 2 + (0.0 if config.ack is AckStyle.FULL else rtt)
    by_stream = config.stream_lag if config.stream is StreamMode.PRESENT else math.inf
    return min(by_reply, by_stream) + rtt / 2


async def _cell(profile: Profile, venue: str, mode: str, n: int, seed: int
                ) -> list[WindowSample]:
    out = []
    for i in range(n):
        config = attrs.evolve(profile.world(i, seed), **VENUES[venue])  # type: ignore[arg-type]
        sim = SimulatedExchange(config)
        aid = f"{i:024x}"
        opener = PositionOpener(sim, policy=Policy(protection=mode), ids=lambda a=aid: a)
        try:
            await opener.open(REQUEST)
        except BadRequest:
            pass
        await asyncio.sleep(settle_time(config))
        entry, stop, close = client_ids(aid)
        w = unprotected_window(sim, (stop, attached_stop_id(aid)), entry, close)
        attached = mode == "auto" and config.attached_stops
        out.append(WindowSample(math.inf if w is None else w, honest_limit(config, attached),
                                w is not None, sim.total_calls))
    return out


def run_cell(profile: str, venue: str, mode: str, n: int, seed: int = 0) -> list[WindowSample]:
    """Worlds 0..n-1 of ``profile`` as ``venue``, the engine in ``mode``."""
    prof = next(p for p in PROFILES if p.name == profile)
    with quiet_engine_log():
        return run_virtual(_cell(prof, venue, mode, n, seed))


def _ms(x: float) -> float | None:
    return None if math.isinf(x) or math.isnan(x) else round(x * 1000, 3)


def summarize(samples: Sequence[WindowSample]) -> dict[str, object]:
    filled = [s for s in samples if s.filled]
    windows = sorted(s.window for s in filled)
    limits = sorted(s.limit for s in filled)
    p99, lim99 = percentile(windows, 99), percentile(limits, 99)
    return {
        "p50_ms": _ms(percentile(windows, 50)),
        "p99_ms": _ms(p99),
        "p100_ms": _ms(windows[-1]) if windows else None,
        "limit_p99_ms": _ms(lim99),
        "p99_over_limit": (round(p99 / lim99, 3) if lim99 and not math.isinf(p99)
                           else (0.0 if p99 == 0 else None)),
        "requests_per_attempt": round(sum(s.requests for s in samples) / max(1, len(samples)),
                                      3),
        "unprotected_forever": sum(math.isinf(s.window) for s in filled),
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
                s = summarize(run_cell(profile, venue, mode, args.n, args.seed))
                rows.append({"profile": profile, "venue": venue, "mode": mode, **s})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "protection.json").write_text(json.dumps(rows, indent=1) + "\n")

    def cell(v: object) -> str:
        return "never" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    lines = [f"Unprotected window (ms, ground truth), {args.n} worlds per row, seed "
             f"{args.seed}: `python -m benchmarks.protection --n {args.n}`", "",
             "| profile | venue | mode | p50 | p99 | p100 | honest limit p99 | p99/limit "
             "| requests/attempt |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['profile']} | {r['venue']} | {r['mode']} | {cell(r['p50_ms'])} | "
                     f"{cell(r['p99_ms'])} | {cell(r['p100_ms'])} | {cell(r['limit_p99_ms'])} "
                     f"| {cell(r['p99_over_limit'])} | {cell(r['requests_per_attempt'])} |")
    text = "\n".join(lines) + "\n"
    (args.out / "protection.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
