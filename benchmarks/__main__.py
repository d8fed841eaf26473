"""``python -m benchmarks [--quick] [--out benchmarks/results]``
``python -m benchmarks --journal [--quick] [--dsn DSN]``

Runs every driver on every profile's seeded worlds in virtual time, measures
the engine's cost, and writes ``latest.json``, ``latest.md`` and
``time_to_protection.png`` into ``--out``. ``--quick`` (CI) uses fewer
worlds and shorter cost runs; the JSON has the same keys either way.
``--journal`` instead measures the journal's cost per store (memory, SQLite,
PostgreSQL) and writes ``journal.json`` and ``journal.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from benchmarks import cost, report
from benchmarks.drivers import DRIVERS
from benchmarks.profiles import PROFILES
from benchmarks.timing import Sample, Summary, run_driver, summarize

#: (worlds per profile, CPU attempts, CPU rounds, simulated attempts) by mode.
MODES = {
    "full": (10_000, 5_000, 5, 5_000),
    "quick": (200, 500, 2, 500),
}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and write the results; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="CI mode: fewer worlds and shorter cost runs (< 1 minute)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                        help="output directory (default: benchmarks/results)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument("--worlds", type=int, default=None,
                        help="worlds per profile (default: 10,000; quick: 200)")
    parser.add_argument("--journal", action="store_true",
                        help="measure the journal's cost per store instead (benchmarks/journal.py)")
    parser.add_argument("--dsn", default=None,
                        help="with --journal: an existing PostgreSQL database (default: start "
                             "a throwaway server if PostgreSQL is installed)")
    args = parser.parse_args(argv)
    if args.journal:
        return _journal(args)
    mode = "quick" if args.quick else "full"
    worlds, cpu_n, cpu_rounds, sim_n = MODES[mode]
    if args.worlds is not None:
        worlds = args.worlds
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    summaries: dict[str, dict[str, Summary]] = {}
    samples: dict[str, dict[str, list[Sample]]] = {}
    for profile in PROFILES:
        summaries[profile.name] = {}
        samples[profile.name] = {}
        for driver in DRIVERS:
            t0 = time.perf_counter()
            runs = run_driver(profile, driver, worlds, args.seed)
            samples[profile.name][driver] = runs
            summaries[profile.name][driver] = s = summarize(runs)
            print(f"{profile.name:>15} {driver:>9}: p50 {s.p50_ms} ms, p99 {s.p99_ms} ms, "
                  f"max {s.max_ms} ms, false rollbacks {s.false_rollbacks}, doubled "
                  f"{s.doubled}, false alarms {s.false_alarms}, foreign touched "
                  f"{s.foreign_touched}, {s.requests_per_attempt} req  "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)

    engine_us, hand_us = cost.cpu_per_attempt(cpu_n, cpu_rounds)
    print(f"engine CPU {engine_us:.1f} µs/attempt, hand-written {hand_us:.1f} µs", flush=True)
    mem = cost.memory_per_attempt((1, 100, 10_000))
    print("memory per live attempt: " + ", ".join(f"{n}: {b:,.0f} B" for n, b in mem.items()),
          flush=True)
    rate = cost.sim_attempts_per_s(sim_n, PROFILES[0], seed=args.seed)
    no_stream = next(p for p in PROFILES if p.name == "calm-no-stream")
    rate_no_stream = cost.sim_attempts_per_s(sim_n, no_stream, seed=args.seed)
    print(f"simulated attempts per CPU second: {rate:,.0f} ({PROFILES[0].name}), "
          f"{rate_no_stream:,.0f} ({no_stream.name})", flush=True)

    engine = {
        "cpu_us_per_attempt": round(engine_us, 2),
        "overhead_ratio": round(engine_us / hand_us, 2),
        "bytes_per_attempt_10k": round(mem[10_000], 1),
        "sim_attempts_per_s": round(rate, 1),
    }
    data = report.to_json(summaries, engine)
    report.write_json(args.out / "latest.json", data)
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    meta = {
        "mode": mode, "worlds": worlds, "seed": args.seed, "command": command,
        "python": platform.python_version(), "handwritten_us": hand_us,
        "bytes_per_attempt": mem, "elapsed_s": time.perf_counter() - started,
        "sim_attempts_per_s_no_stream": rate_no_stream,
    }
    (args.out / "latest.md").write_text(report.markdown(data, meta=meta))
    print(report.plot(args.out / "time_to_protection.png", samples))
    missed = [(w, m) for w, m, ok in report.verdicts(data) if not ok]
    for what, measured in missed:
        print(f"target missed: {what} (measured {measured})")
    print(f"wrote {args.out / 'latest.json'} and {args.out / 'latest.md'} "
          f"in {time.perf_counter() - started:.0f} s")
    return 0


def _journal(args: argparse.Namespace) -> int:
    from benchmarks import journal

    args.out.mkdir(parents=True, exist_ok=True)
    results = journal.measure(quick=args.quick, dsn=args.dsn)
    command = "python -m benchmarks --journal" + (" --quick" if args.quick else "")
    (args.out / "journal.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "journal.md").write_text(journal.markdown(results, command))
    print(f"wrote {args.out / 'journal.json'} and {args.out / 'journal.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
