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

from adapters.simulated import AckStyle, SimConfig, StreamMode

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
    # AVLUSDT, 2025-10-28 (seed/fix-plan-orphaned-position.md): minimal ack;
    # the WebSocket showed size=43 at 06.036 and the create reply was being
    # handled at 06.044, so the stream (~100 ms after the fill) beat the
    # reply by a few ms: one-way ~100-110 ms, RTT ~0.2 s. REST positions
    # still showed nothing 4 s later.
    return SimConfig(
        seed=seed,
        rtt=0.200,
        jitter=0.020,
        ack=AckStyle.MINIMAL,
        stream=StreamMode.PRESENT,
        stream_lag=0.100,
        rest_position_lag=rng.uniform(3.5, 4.5),
    )


PROFILES: tuple[Profile, ...] = (
    Profile("calm", "RTT 30 ms ± 4 ms, stream 15-35 ms, REST lag ≤ 0.5 s", "bybit", _calm),
    Profile("loaded", "RTT 50 ms + Pareto(1.5) tail per leg, stream 50-500 ms, "
            "order visibility ≤ 0.3 s, REST lag ≤ 5 s", "bybit", _loaded),
    Profile("incident", "AVLUSDT: RTT 200 ms, stream 100 ms, REST lag ≈ 4 s", "bybit",
            _incident),
    Profile("calm-no-stream", "calm without a WebSocket: every fact fetched", "bybit",
            _calm_no_stream),
)
