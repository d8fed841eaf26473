"""The ccxt pro watch loop: one loop for every ``watch_*`` stream.

A watch call that fails is noted and retried with a capped exponential
backoff (0.5 s doubling to 10 s, reset by the next success); cancelling the
task is the only way out. What a result means is the caller's ``feed``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["BACKOFF_FIRST", "BACKOFF_MAX", "watch_forever"]

T = TypeVar("T")

#: Seconds before the first retry after a failed watch call.
BACKOFF_FIRST = 0.5
#: The longest wait between retries, in seconds.
BACKOFF_MAX = 10.0


async def watch_forever(
    watch: Callable[[], Awaitable[T]],
    feed: Callable[[T], None],
    on_error: Callable[[Exception], None],
) -> None:
    """Call ``watch`` forever, handing each result to ``feed`` and each
    failure to ``on_error`` before backing off. Runs until cancelled."""
    backoff = BACKOFF_FIRST
    while True:
        try:
            result = await watch()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any watch failure is noted, then retried
            on_error(exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            continue
        backoff = BACKOFF_FIRST
        feed(result)
