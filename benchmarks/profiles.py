"""Latency profiles: the simulated worlds every driver is measured on.

A profile draws one :class:`~adapters.simulated.SimConfig` per world from a
seeded generator, so world ``i`` of a profile is the same for every driver
(same lags, same latency seed) and the same on every run.

Every profile models Bybit v5, the incident's exchange: the create reply is
minimal (ids only, ``AckStyle.MINIMAL``), so nothing in it says whether, or
how much, the order filled. The seed plan's fixed wait is 0.5 s on Bybit.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

from adapters.simulated import (
    CALLS,
    INCIDENT,
    AckStyle,
    ClientIdScope,
    Fault,
    OperatorMove,
    SimConfig,
    StreamMode,
)

__all__ = ["PROFILES", "Profile"]


@attrs.frozen
class Profile:
    """A family of simulated worlds."""

    name: str
    summary: str  # one line, for the README and the table
    exchange: str  # what the seed plan's exchange-specific wait branches on
    draw: Callable[[random.Random, int], SimConfig]

    def world(self, index: int, seed: int = 0) -> SimConfig:
        """World ``index``: a pure function of (profile, index, seed)."""
        # A str seed is hashed with SHA-512 by ``random``: stable across runs
        # and processes (unlike hash()).
        rng = random.Random(f"{seed}:{self.name}:{index}")
        return self.draw(rng, rng.randrange(2**32))


def _calm(rng: random.Random, seed: int) -> SimConfig:
    # A co-located or nearby bot on a quiet day: 30 ms round trips with a few
    # ms of jitter, a private stream that pushes within ~15-35 ms of the
    # fill, REST positions a fraction of a second behind.
    return SimConfig(
        seed=seed,
        rtt=0.030,
        jitter=0.004,
        ack=AckStyle.MINIMAL,
        stream=StreamMode.PRESENT,
        stream_lag=rng.uniform(0.015, 0.035),
        rest_position_lag=rng.uniform(0.0, 0.5),
    )


def _calm_no_stream(rng: random.Random, seed: int) -> SimConfig:
    # The calm world for a bot without a private WebSocket (plain ccxt, no
    # ccxt pro): every fact must be fetched. Shows the one-RTT floor a
    # minimal acknowledgement imposes on anything that must fetch the order.
    return attrs.evolve(_calm(rng, seed), stream=StreamMode.ABSENT)


def _loaded(rng: random.Random, seed: int) -> SimConfig:
    # A busy market: heavy-tailed latency on every leg (Pareto, shape 1.5:
    # median +12 ms, p99 +0.4 s, capped at 3 s), a stream that lags 50-500
    # ms, orders invisible to fetch_order for up to 0.3 s, and REST
    # positions anywhere up to 5 s behind (the seed plan's "0.5-5 s").
    return SimConfig(
        seed=seed,
        rtt=0.050,
        jitter=0.020,
        jitter_tail=1.5,
        jitter_cap=3.0,
        ack=AckStyle.MINIMAL,
        stream=StreamMode.PRESENT,
        stream_lag=rng.uniform(0.05, 0.5),
        order_visibility_lag=rng.uniform(0.0, 0.3),
        rest_position_lag=rng.uniform(0.0, 5.0),
    )


def _incident(rng: random.Random, seed: int) -> SimConfig:
    # AVLUSDT, 2025-10-28 (seed/fix-plan-orphaned-position.md): the incident's
    # exchange (minimal ack, stream present ~100 ms behind), with the latencies
    # measured that day: the WebSocket showed size=43 at 06.036 and the create
    # reply was being handled at 06.044, so the stream (~100 ms after the fill)
    # beat the reply by a few ms: one-way ~100-110 ms, RTT ~0.2 s. REST
    # positions still showed nothing 4 s later.
    return attrs.evolve(
        INCIDENT,
        seed=seed,
        rtt=0.200,
        jitter=0.020,
        stream_lag=0.100,
        rest_position_lag=rng.uniform(3.5, 4.5),
    )


#: The faulty profile's account is drawn around the benchmark's request
#: (``timing.REQUEST``: buy 43 AVL/USDT perpetual, lot 1).
_AVL, _LOTS = "AVL/USDT:USDT", 43


def _faulty(rng: random.Random, seed: int) -> SimConfig:
    # The specs' world (specs/worlds.py), sampled with a seeded generator:
    # per-call fault schedules (timeouts before/after taking effect, rate
    # limits, 503s, requests delayed to either side of the receive window),
    # rejections, partial fills, terse acks, lagging or untimestamped REST,
    # either client-id scope, and a shared account: a position held before
    # (none, same side, opposite side) and an operator making 0-3 hand trades
    # on the symbol (open, close, flip) during the first 20 s.
    fates = list(Fault)
    faults = {kind: tuple(rng.choice(fates) for _ in range(rng.randint(1, 3)))
              for kind in rng.sample(CALLS, rng.randint(0, 4))}
    window = rng.choice([5.0, rng.uniform(0.5, 10.0), None])
    delayed = window * rng.uniform(0.1, 2.0) if window else rng.uniform(0.0, 20.0)
    held = rng.choice(["none", "none", "same", "opposite"])
    pre = 0 if held == "none" else rng.randint(1, 2 * _LOTS) * (1 if held == "same" else -1)
    moves = []
    for _ in range(rng.randint(0, 3)):
        at = rng.choice([rng.uniform(0.0, 0.5), rng.uniform(0.0, 3.0), rng.uniform(0.0, 20.0)])
        m = rng.randint(1, 2 * _LOTS)
        delta = {"open": m, "against": -m, "close_all": -(pre + _LOTS),
                 "flip": -(pre + _LOTS + m), "close_pre": -pre}[
            rng.choice(["open", "against", "close_all", "flip", "close_pre"])]
        if delta:
            moves.append(OperatorMove(at=at, symbol=_AVL, delta=float(delta)))
    return SimConfig(
        seed=seed,
        rtt=0.050,
        jitter=0.020,
        ack=rng.choice(list(AckStyle)),
        stream=rng.choice(list(StreamMode)),
        stream_lag=rng.uniform(0.02, 0.5),
        order_visibility_lag=rng.choice([0.0, rng.uniform(0.0, 1.0), rng.uniform(0.0, 5.0)]),
        rest_position_lag=rng.uniform(0.0, 5.0),
        rest_timestamps=rng.random() < 1 / 3,
        client_id_scope=rng.choice(list(ClientIdScope)),
        reject_entry=rng.random() < 0.05,
        entry_unfilled=rng.random() < 0.05,
        fill_ratio=1.0 if rng.random() < 0.8 else float(rng.randint(1, _LOTS)) / _LOTS,
        stop_rejected=rng.random() < 0.1,
        close_rejected=rng.random() < 0.05,
        faults=faults,
        receive_window=window,
        delayed_arrival=delayed,
        initial_positions={_AVL: float(pre)} if pre else {},
        operator=tuple(sorted(moves, key=lambda mv: mv.at)),
    )


PROFILES: tuple[Profile, ...] = (
    Profile("calm", "RTT 30 ms ± 4 ms, stream 15-35 ms, REST lag ≤ 0.5 s", "bybit", _calm),
    Profile("loaded", "RTT 50 ms + Pareto(1.5) tail per leg, stream 50-500 ms, "
            "order visibility ≤ 0.3 s, REST lag ≤ 5 s", "bybit", _loaded),
    Profile("incident", "AVLUSDT: RTT 200 ms, stream 100 ms, REST lag ≈ 4 s", "bybit",
            _incident),
    Profile("calm-no-stream", "calm without a WebSocket: every fact fetched", "bybit",
            _calm_no_stream),
    Profile("faulty", "the specs' fault schedules in a shared account (positions held "
            "before, an operator trading)", "bybit", _faulty),
)
