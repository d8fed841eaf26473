"""Running attempts on the simulator in bulk, for the specs and the benchmarks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from adapters.simulated import Fault, SimConfig

__all__ = ["quiet_engine_log", "settle_time"]


@contextlib.contextmanager
def quiet_engine_log() -> Iterator[None]:
    """Silence the engine's log while a world runs: thousands of examples
    would otherwise spend their time formatting ORPHANED alerts."""
    logger = logging.getLogger("fsm")
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


def settle_time(config: SimConfig) -> float:
    """How long to keep the exchange running after the attempts end, so that
    every request still on its way (a ``DELAYED`` one) has landed, or been
    refused, before ground truth is read."""
    delayed = any(Fault.DELAYED in fates for fates in config.faults.values())
    return (config.delayed_arrival if delayed else 0.0) + 1.0
