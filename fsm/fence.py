"""The fence a journal write carries: the lease a task holds on
``(account, symbol)``, and the one rule by which every store refuses a
stale or expired one. Kept apart from :mod:`fsm.lease` (taking, renewing
and releasing leases) so that the journal, which checks fences, does not
depend on the code that takes them.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

import attrs

__all__ = ["CURRENT", "Held", "Lease", "LeaseLost", "check_held", "current_lease", "fence_refusal",
           "lease_data"]

log = logging.getLogger("fsm.lease")


@attrs.frozen
class Lease:
    """A lease as granted: ``expires`` is on the store's clock (seconds).
    ``taken_over``: the previous holder's lease expired instead of being
    released (it died or was paused), so the key may have an unfinished
    attempt that nobody drives."""

    account: str
    symbol: str
    owner: str
    token: int
    expires: float
    taken_over: bool = False


class LeaseLost(Exception):
    """This process's lease was taken over (it expired: the process was
    paused, partitioned or too slow to renew). The store refused the write;
    the attempt is abandoned here, as after a crash, and the new holder
    drives it."""


@attrs.define
class Held:
    """A lease held by a task: ``local_expiry`` is on this process's loop
    clock, counted from *before* the request that granted or renewed it,
    so it never outlasts the store's expiry."""

    lease: Lease
    task: asyncio.Task[object] | None
    local_expiry: float
    lost: list[LeaseLost] = attrs.field(factory=list)


CURRENT: contextvars.ContextVar[Held | None] = contextvars.ContextVar(
    "fsm_lease", default=None)


def current_lease() -> Lease | None:
    """The lease the running task holds, if any: the fence its journal
    writes carry."""
    held = CURRENT.get()
    return held.lease if held is not None else None


def fence_refusal(fence: Lease, current: Lease | None, now: float) -> str | None:
    """Why a write carrying ``fence`` must be refused, given the key's
    ``current`` lease row at the store's time ``now``; ``None`` if it may go.
    One rule for every store."""
    where = f"{fence.symbol} for account {fence.account}"
    if current is None:
        return f"fenced out: no lease on {where} was ever granted"
    if current.token != fence.token:
        return (f"fenced out: the lease on {where} is now token {current.token} held by "
                f"{current.owner}; this writer holds stale token {fence.token}")
    if current.expires <= now:
        return (f"fenced out: the lease on {where} (token {fence.token}) expired "
                f"{now - current.expires:.3f}s ago")
    return None


def check_held() -> None:
    """Before each exchange request of a live attempt: if the lease it holds
    has expired by this process's own clock (the process was paused, or its
    renewals failed), stop here, before anything is sent: the holding task is
    cancelled and :class:`LeaseLost` raised from its ``hold``. A process
    resumed after a pause would otherwise send what it was about to send
    before its next journal write could be refused."""
    held = CURRENT.get()
    if held is None or asyncio.get_running_loop().time() < held.local_expiry:
        return
    lease = held.lease
    if not held.lost:
        held.lost.append(LeaseLost(
            f"fenced out: the lease on {lease.symbol} for account {lease.account} (token "
            f"{lease.token}) expired by this process's clock before a request; nothing more "
            "is sent"))
        log.critical("%s", held.lost[0])
    if held.task is not None:
        held.task.cancel()
    raise asyncio.CancelledError("lease lost")


def lease_data() -> dict[str, Any]:
    """What a ``lease`` or ``recover`` record says about the lease held:
    account, symbol, owner and fence (empty when none is held)."""
    lease = current_lease()
    if lease is None:
        return {}
    return {"account": lease.account, "symbol": lease.symbol, "owner": lease.owner,
            "fence": lease.token}
