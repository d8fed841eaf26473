"""The legacy witness: the incident's decision rules, as an alternative driver.

This is *not* library code. It reproduces, over the same exchange port the
engine uses, the decisions of the old ``atomic_position_manager`` that turned
a 43-contract AVLUSDT buy into an unprotected 86-contract long (see
``../shared/seed/fix-plan-orphaned-position.md``):

1. the entry's side is taken from the create reply, with an ``'unknown'``
   fallback when the reply has none (``normalize_order``);
2. no fetch after create;
3. a single REST ``fetch_positions`` after a fixed 3 s wait decides whether
   the position "exists";
4. if it does not, roll back with
   ``close_side = 'sell' if side == 'buy' else 'buy'`` and a plain (not
   reduce-only) market order for the requested amount;
5. if it does, place the stop-loss for the requested amount, on the side
   opposite the *request* (the old stop-loss manager took the signal's side),
   and roll back as in 4 if the stop is refused. Only the rules above are
   the incident's; everything else is as favourable to the old code as
   possible, so that the witness fails for the incident's reasons alone.

The specs run the engine's exposure law against this driver and require
Hypothesis to find (and shrink) the doubled-position counterexample; that is
how we know the specs can see the bug the library exists for. The benchmarks
import :func:`legacy_open` to compare time-to-protection and cost.

API::

    result = await legacy_open(adapter, request)
    result.state     # "protected" | "rolled_back" | "rejected" | "failed"
    result.orders    # every order the legacy rules sent, in order
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Literal

import attrs

from adapters.port import ExchangeError, ExchangePort, OrderSnapshot, Side, StopSnapshot
from fsm.request import OpenRequest

__all__ = ["LEGACY_VERIFY_WAIT", "LegacyOrder", "LegacyResult", "legacy_open"]

#: The old code's fixed wait before its single REST position check (seconds).
LEGACY_VERIFY_WAIT = 3.0

LegacyState = Literal["protected", "rolled_back", "rejected", "failed"]

_seq = itertools.count(1)


@attrs.frozen
class LegacyOrder:
    """One order the legacy rules decided to send, and what came of it."""

    role: str  # "entry" | "stop" | "close"
    side: str  # the legacy string side, possibly derived from 'unknown'
    amount: float
    reduce_only: bool
    client_id: str
    accepted: bool
    error: str | None = None


@attrs.frozen
class LegacyResult:
    """How a legacy attempt ended and the orders it sent."""

    state: LegacyState
    entry_side: str  # as the legacy normaliser saw it: 'buy' | 'sell' | 'unknown'
    position_found: bool | None  # the single REST check's verdict (None: not reached)
    orders: tuple[LegacyOrder, ...]
    started_at: float
    ended_at: float

    @property
    def duration(self) -> float:
        """Seconds from the first order to the end."""
        return self.ended_at - self.started_at

    @property
    def close_side(self) -> str | None:
        """The side of the rollback order, if the legacy rules sent one."""
        return next((o.side for o in self.orders if o.role == "close"), None)


def normalize_side(ack: OrderSnapshot) -> str:
    """The incident's ``normalize_order``: ``data.get('side') or ... or 'unknown'``."""
    return ack.side.value if ack.side is not None else "unknown"


def legacy_close_side(side: str) -> str:
    """The incident's rollback rule, verbatim."""
    return "sell" if side == "buy" else "buy"


async def legacy_open(
    adapter: ExchangePort,
    request: OpenRequest,
    *,
    verify_wait: float = LEGACY_VERIFY_WAIT,
    client_prefix: str | None = None,
) -> LegacyResult:
    """Open ``request`` with the legacy rules over ``adapter``.

    ``client_prefix`` makes client order ids deterministic (default: a
    process-wide counter, so ids never collide on one simulated exchange).
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    prefix = client_prefix if client_prefix is not None else f"legacy{next(_seq)}"
    orders: list[LegacyOrder] = []

    def done(state: LegacyState, side: str, found: bool | None) -> LegacyResult:
        return LegacyResult(state, side, found, tuple(orders), started, loop.time())

    # 1. entry, side from the reply with the 'unknown' fallback
    entry_cid = prefix + "e"
    try:
        ack = await adapter.create_order(symbol=request.symbol, side=request.side,
                                         amount=request.amount, client_id=entry_cid,
                                         reduce_only=False)
    except ExchangeError as exc:
        # The old code treated every create error as "nothing happened".
        orders.append(LegacyOrder("entry", request.side.value, request.amount, False,
                                  entry_cid, False, str(exc)))
        return done("rejected", "unknown", None)
    orders.append(LegacyOrder("entry", request.side.value, request.amount, False,
                              entry_cid, True))
    side = normalize_side(ack)

    # 2. no fetch after create; 3. one REST check after a fixed wait
    await asyncio.sleep(verify_wait)
    try:
        positions = await adapter.fetch_positions([request.symbol])
        found = any(p.symbol == request.symbol and p.size > 0 for p in positions)
    except ExchangeError:
        found = False  # an error reads as "not found", as in the incident

    if found:
        # The stop side comes from the signal (the request), as the old
        # stop-loss manager's did; only the incident's rules are reproduced.
        stop_side = request.side.closing_side
        stop_cid = prefix + "s"
        try:
            stop: StopSnapshot = await adapter.place_stop(
                symbol=request.symbol, side=stop_side, amount=request.amount,
                trigger_price=request.stop_loss, client_id=stop_cid)
            orders.append(LegacyOrder("stop", stop_side.value, request.amount, True,
                                      stop_cid, stop.order_id is not None))
            return done("protected", side, True)
        except ExchangeError as exc:
            orders.append(LegacyOrder("stop", stop_side.value, request.amount, True,
                                      stop_cid, False, str(exc)))
            # fall through to the rollback, as the old code did

    # 4. rollback: the incident's close side, not reduce-only, unverified
    close = legacy_close_side(side)
    close_side = Side.parse(close)
    assert close_side is not None
    close_cid = prefix + "c"
    try:
        await adapter.create_order(symbol=request.symbol, side=close_side,
                                   amount=request.amount, client_id=close_cid,
                                   reduce_only=False)
        orders.append(LegacyOrder("close", close, request.amount, False, close_cid, True))
        return done("rolled_back", side, found)
    except ExchangeError as exc:
        orders.append(LegacyOrder("close", close, request.amount, False, close_cid, False,
                                  str(exc)))
        return done("failed", side, found)
