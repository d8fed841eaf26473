"""A virtual-time asyncio event loop: a 10 s timeout costs microseconds.

Why our own and not the ``looptime`` package: we need exactly one thing, a
loop whose clock jumps to the next scheduled timer whenever nothing is ready
to run, with no pytest coupling and no real I/O, and it is twenty lines on
top of the standard ``SelectorEventLoop``. Everything asyncio offers
(``sleep``, ``wait_for``, ``timeout``, ``call_later``) then runs unchanged, in
a deterministic order, which is what the simulator and the specs need.

The trick: the selector's ``select(timeout)`` is the only place a loop ever
blocks. Ours never blocks; it advances the virtual clock by ``timeout`` (the
delay until the next timer) and reports no I/O. A loop that is idle with no
timers (``timeout is None``) would block forever in real life; here that is a
deadlock, and we say so instead of hanging.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["VirtualTimeDeadlock", "VirtualTimeLoop", "run_virtual"]

T = TypeVar("T")


class VirtualTimeDeadlock(RuntimeError):
    """The loop had nothing to run and no timer to wait for."""


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._vloop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            # Only the loop's self-pipe is registered; nothing can wake us.
            raise VirtualTimeDeadlock(
                "virtual-time loop is idle with no timers: every task is waiting "
                "on something that can never happen"
            )
        loop = self._vloop
        if timeout > 0:
            loop._now += timeout
        # asyncio runs a timer due within its clock resolution (1 ns) at
        # once. A real clock moves past it a moment later; a virtual one
        # would not, and a loop waiting for a deadline a few ULPs away would
        # spin forever (found by the L9 spec). Move the clock to it.
        sched = loop._scheduled  # type: ignore[attr-defined]
        if sched:
            first = sched[0].when()
            if loop._now < first < loop._now + loop._clock_resolution:  # type: ignore[attr-defined]
                loop._now = first
        # Poll real descriptors without blocking (the self-pipe, used by
        # call_soon_threadsafe), so thread wake-ups still work.
        return list(super().select(0))


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is virtual and starts at ``start``."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        super().__init__(selector=_VirtualSelector(self))

    def time(self) -> float:
        """The virtual clock: advanced only by the selector, never by the wall."""
        return self._now


def run_virtual(coro: Coroutine[Any, Any, T], *, start: float = 0.0) -> T:
    """Run ``coro`` to completion on a fresh :class:`VirtualTimeLoop`."""
    loop = VirtualTimeLoop(start)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in pending:
        t.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
