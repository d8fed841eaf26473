"""Leases on ``(account, symbol)``: one attempt at a time per key, across
tasks, processes and machines that share one journal.

Netting makes a fill attributable to an attempt only if no other attempt of
ours moves the same position at the same time; a per-process lock gives that
within one process only. A lease gives it across every process that writes
the same journal database:

* **The lease row.** The store keeps one row per key: ``owner`` (who holds
  it, for humans), ``token`` (the fencing token, strictly increasing per key
  and never reused) and ``expires`` (on the store's clock: the database
  server's for PostgreSQL, the host's for SQLite). Taking a lease is one
  transaction that succeeds only when the row is absent or expired, and
  increments the token.
* **Fencing.** Every journal write of a live attempt carries its lease
  (:func:`current_lease`), and the store checks it in the same transaction
  as the insert: a token that is not the key's current one, or a lease past
  its expiry, is refused with :class:`LeaseLost` and nothing is written. A
  process that was paused or partitioned past its expiry therefore cannot
  write after another took over; and since every order is preceded by its
  durable intent (rule 8), it cannot send after its next refused intent: the
  driver abandons the attempt there, exactly as after a crash, and the new
  holder's ``recover()`` drives it.
* **Renewal.** While an attempt is live its holder renews the lease every
  ``Policy.lease_renew`` seconds for ``Policy.lease_duration`` more. A
  renewal that is refused means the lease was lost: the attempt's task is
  cancelled and :class:`LeaseLost` raised in it.
* **Waiting.** A key held by someone else is waited for (polling with the
  policy's back-off) up to ``Policy.lease_wait``; past it,
  :class:`LeaseBusy` is raised and nothing was sent.

The gap that no lease closes: an order already on the wire when the lease
expires still arrives. That window is one request long, and a new holder
never trusts memory: it looks up every journalled intent by client id
before it sends anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from fsm.fence import CURRENT, Held, Lease, LeaseLost, check_held, current_lease, lease_data
from fsm.journal import JournalError

if TYPE_CHECKING:
    from fsm.policy import Policy

__all__ = [
    "Lease",
    "LeaseBusy",
    "LeaseLost",
    "LeaseStore",
    "account_of",
    "api_key_account",
    "check_held",
    "current_lease",
    "hold",
    "lease_data",
    "new_owner",
]

log = logging.getLogger("fsm.lease")


class LeaseBusy(Exception):
    """Another holder kept the ``(account, symbol)`` lease for longer than
    ``Policy.lease_wait``. Nothing was sent."""

    def __init__(self, message: str, holder: Lease | None = None) -> None:
        super().__init__(message)
        self.holder = holder


@runtime_checkable
class LeaseStore(Protocol):
    """Where leases live: the journal's own database, so that a write's
    fence is checked in the write's own transaction."""

    def acquire(self, account: str, symbol: str, owner: str,
                duration: float) -> Lease | None:
        """Take the key if it is free or expired (a new token); ``None`` if
        a live lease holds it."""
        ...

    def renew(self, lease: Lease, duration: float) -> Lease:
        """Extend a lease that is still current and unexpired; raise
        :class:`LeaseLost` otherwise."""
        ...

    def release(self, lease: Lease) -> None:
        """Expire the lease now if it is still current (the token stays)."""
        ...

    def holder(self, account: str, symbol: str) -> Lease | None:
        """The key's current row, live or expired; ``None`` if never taken."""
        ...


def new_owner() -> str:
    """An owner label: host, process id and a random part (one opener)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def account_of(adapter: object) -> str:
    """The default account label of an adapter: its own ``account_id`` if
    it has one, else its name plus a hash of its API key (never the key)."""
    own = getattr(adapter, "account_id", None)
    if isinstance(own, str) and own:
        return own
    name = str(getattr(adapter, "name", type(adapter).__name__))
    key = getattr(getattr(adapter, "exchange", None), "apiKey", None)
    return api_key_account(name, key if isinstance(key, str) else None)


def api_key_account(exchange_id: str, api_key: str | None) -> str:
    """``exchange_id`` plus the first 16 hex digits of the SHA-256 of the
    API key: stable across processes and machines, and the key cannot be
    read back from it."""
    if not api_key:
        return exchange_id
    digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return f"{exchange_id}:{digest}"


@contextlib.asynccontextmanager
async def hold(store: LeaseStore, account: str, symbol: str, owner: str,
               policy: Policy) -> AsyncIterator[Lease]:
    """Hold the ``(account, symbol)`` lease for the body: wait for it (up to
    ``policy.lease_wait``, else :class:`LeaseBusy`), renew it while the body
    runs, release it after. Re-entrant within one task (a held key is not
    taken twice). If a renewal is refused, the body's task is cancelled and
    :class:`LeaseLost` is raised from the ``async with``."""
    held = CURRENT.get()
    if held is not None and (held.lease.account, held.lease.symbol) == (account, symbol):
        yield held.lease
        return
    lease, started = await _acquire(store, account, symbol, owner, policy)
    held = Held(lease, asyncio.current_task(), started + policy.lease_duration)
    token = CURRENT.set(held)
    renewer = asyncio.ensure_future(_renew(store, held, policy))
    try:
        yield lease
    except asyncio.CancelledError as exc:
        if held.lost and held.task is not None:
            held.task.uncancel()
            raise held.lost[0] from exc
        raise
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError, LeaseLost):
            await renewer
        CURRENT.reset(token)
        try:
            store.release(lease)
        except Exception as exc:  # noqa: BLE001 - a lost or unreachable lease expires by itself
            log.warning("lease %s/%s: release failed: %s", account, symbol, exc)
    if held.lost:
        raise held.lost[0]


async def _acquire(store: LeaseStore, account: str, symbol: str, owner: str,
                   policy: Policy) -> tuple[Lease, float]:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + policy.lease_wait
    tries = 0
    failure: Exception | None = None
    while True:
        started = loop.time()
        try:
            lease, failure = store.acquire(account, symbol, owner, policy.lease_duration), None
        except Exception as exc:  # noqa: BLE001 - a busy or unreachable store: retried until lease_wait
            lease, failure = None, exc
        if lease is not None:
            return lease, started
        now = loop.time()
        if now >= give_up and failure is not None:
            raise JournalError(f"cannot take the lease on {symbol} for account {account}: "
                               f"the journal failed ({failure}); nothing was sent") from failure
        if now >= give_up:
            other = store.holder(account, symbol)
            who = f" by {other.owner} (token {other.token})" if other is not None else ""
            raise LeaseBusy(f"the lease on {symbol} for account {account} is held{who} and "
                            f"was not released within {policy.lease_wait:g}s; nothing was "
                            "sent", other)
        await asyncio.sleep(min(policy.backoff(tries), give_up - now))
        tries += 1


async def _renew(store: LeaseStore, held: Held, policy: Policy) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(policy.lease_renew)
        lease = held.lease
        started = loop.time()
        try:
            held.lease = store.renew(lease, policy.lease_duration)
            held.local_expiry = started + policy.lease_duration
        except LeaseLost as exc:
            log.critical("lease %s/%s (token %d) was lost: %s; abandoning the attempt, the "
                         "new holder drives it", lease.account, lease.symbol, lease.token, exc)
            held.lost.append(exc)
            if held.task is not None:
                held.task.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - see below
            # The store is unreachable: keep trying until the lease expires;
            # the fence refuses our writes after that, and check_held() our
            # requests.
            log.warning("lease %s/%s: renewal failed: %s", lease.account, lease.symbol, exc)
