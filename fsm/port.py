"""The exchange port: what the engine needs from an exchange, and nothing more.

Every adapter (ccxt for real exchanges, the simulator for everything else)
implements :class:`ExchangePort` and speaks only in the engine's vocabulary
(:mod:`fsm.model`). The port lives with the engine, not with the adapters:
the engine states what it needs, adapters depend on it, never the reverse.
It sits apart from :mod:`fsm.model` because it is the asynchronous boundary
(a protocol and the stream-fed :class:`PositionCache`), while the model is
plain values that pure code (table, guards, journal) can use without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from fsm.model import Fill, Market, OrderSnapshot, PositionSnapshot, Side, StopSnapshot

__all__ = ["AttachedStopPort", "ExchangePort", "PositionCache"]


# --------------------------------------------------------------------------
# The position cache (fed by a stream, read by the engine)
# --------------------------------------------------------------------------


class PositionCache:
    """Latest streamed position per symbol (and order per client id), with a
    way to wait for news.

    Adapters that run a position stream (WebSocket) feed it with
    :meth:`update`; the engine reads :meth:`latest` and waits with
    :meth:`wait_newer`. It holds no I/O of its own.
    """

    def __init__(self) -> None:
        self._latest: dict[str, PositionSnapshot] = {}
        self._versions: dict[str, int] = {}
        self._orders: dict[str, OrderSnapshot] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    def update(self, snapshot: PositionSnapshot) -> None:
        """Record a streamed snapshot and wake every waiter on its symbol.
        Synchronous, so a stream callback can call it without awaiting."""
        self._latest[snapshot.symbol] = snapshot
        self._versions[snapshot.symbol] = self._versions.get(snapshot.symbol, 0) + 1
        for fut in self._waiters.pop(snapshot.symbol, []):
            if not fut.done():
                fut.set_result(None)

    def update_order(self, snapshot: OrderSnapshot) -> None:
        """Record a streamed order update (keyed by client id, then by id)
        and wake every waiter on that order."""
        for key in (snapshot.client_id, snapshot.order_id):
            if key is None:
                continue
            k = "order:" + key
            self._orders[key] = snapshot
            self._versions[k] = self._versions.get(k, 0) + 1
            for fut in self._waiters.pop(k, []):
                if not fut.done():
                    fut.set_result(None)

    def latest_order(self, key: str) -> OrderSnapshot | None:
        """Latest streamed update of the order with this client id or id."""
        return self._orders.get(key)

    def latest(self, symbol: str) -> PositionSnapshot | None:
        """Latest streamed snapshot of ``symbol``, if any."""
        return self._latest.get(symbol)

    def version(self, symbol: str) -> int:
        """How many snapshots of ``symbol`` the cache has seen (for :meth:`wait_newer`)."""
        return self._versions.get(symbol, 0)

    async def wait_newer(self, symbol: str, version: int) -> PositionSnapshot:
        """Wait until the cache holds a snapshot for ``symbol`` newer than
        ``version`` (as returned by :meth:`version`). The caller bounds the
        wait with its own deadline."""
        await self._wait(symbol, version)
        return self._latest[symbol]

    def order_version(self, key: str) -> int:
        """How many updates of this order the cache has seen (for :meth:`wait_order`)."""
        return self._versions.get("order:" + key, 0)

    async def wait_order(self, key: str, version: int) -> OrderSnapshot:
        """Wait for an order update newer than ``version`` (see
        :meth:`order_version`)."""
        await self._wait("order:" + key, version)
        return self._orders[key]

    async def _wait(self, key: str, version: int) -> None:
        while self._versions.get(key, 0) <= version:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(key, []).append(fut)
            try:
                await fut
            finally:
                waiters = self._waiters.get(key)
                if waiters and fut in waiters:
                    waiters.remove(fut)


# --------------------------------------------------------------------------
# The port
# --------------------------------------------------------------------------


@runtime_checkable
class ExchangePort(Protocol):
    """What the engine asks of an exchange. Market orders only; one-way
    (netting) position mode. Every method either returns a fact or raises one
    of the errors in :mod:`fsm.model`; none retries a write on its own."""

    @property
    def name(self) -> str:
        """Short exchange name for logs (``"bybit"``, ``"simulated"``)."""
        ...

    @property
    def position_cache(self) -> PositionCache | None:
        """The stream-fed position cache, or ``None`` if this adapter has no
        stream. The engine works without it."""
        ...

    async def create_order(
        self, *, symbol: str, side: Side, amount: float, client_id: str, reduce_only: bool
    ) -> OrderSnapshot:
        """Send a market order. Returns the acknowledgement as reported (any
        field may be ``None``). Raises :class:`OrderRejected` when refused,
        :class:`AmbiguousError` when the outcome is unknown."""
        ...

    async def fetch_order(
        self, *, symbol: str, order_id: str | None, client_id: str | None
    ) -> OrderSnapshot:
        """Look an order up by exchange id, or by our client id when the id is
        not known. Raises :class:`OrderNotFound` when the exchange does not
        show it (yet)."""
        ...

    @property
    def receive_window(self) -> float | None:
        """Seconds after a write's timestamp beyond which the exchange refuses
        to execute it (Bybit ``recv_window``, Binance ``recvWindow``): the
        adapter stamps every write and sends this window explicitly. ``None``
        when the venue has no such window; then a lost request can never be
        proven absent, and the engine stays on its conservative path."""
        ...

    @property
    def lookup_lag(self) -> float:
        """Seconds an accepted order may stay invisible to :meth:`fetch_order`
        (the venue's visibility window). A not-found answer to a look-up sent
        later than the receive window plus this lag is authoritative."""
        ...

    async def market(self, symbol: str) -> Market:
        """The market for ``symbol`` in either spelling (unified or the
        exchange's id). Raises :class:`UnknownSymbol` when there is none."""
        ...

    async def fetch_fills(self, symbol: str, since: float | None) -> list[Fill]:
        """Executions on ``symbol`` at or after exchange time ``since``
        (seconds), everyone's. Raises on failure; never returns a partial
        list as if it were whole."""
        ...

    async def fetch_positions(self, symbols: Sequence[str] | None = None) -> list[PositionSnapshot]:
        """REST view of open positions (flat symbols may be omitted). May lag
        the stream: an absent symbol is not proof of a flat position."""
        ...

    async def fetch_price(self, symbol: str) -> float | None:
        """A reference price (last or mark) used to refuse a stop-loss on the
        wrong side before anything is sent; ``None`` if not available."""
        ...

    async def place_stop(
        self,
        *,
        symbol: str,
        side: Side,
        amount: float,
        trigger_price: float,
        client_id: str,
    ) -> StopSnapshot:
        """Place a reduce-only stop-market order. Raises :class:`OrderRejected`
        when the exchange refuses it."""
        ...

    async def fetch_stops(self, symbol: str | None = None) -> list[StopSnapshot]:
        """Open (untriggered) stop orders, for one symbol or all."""
        ...

    async def cancel_order(
        self, *, symbol: str, order_id: str | None, client_id: str | None
    ) -> None:
        """Cancel an open order (a stop). :class:`OrderNotFound` if it is
        already gone."""
        ...


@runtime_checkable
class AttachedStopPort(Protocol):
    """An exchange that can send the entry with its stop-loss attached, so
    that the exchange arms the stop at the moment of the fill (Bybit v5
    ``stopLoss`` with ``tpslMode=Partial``, OKX ``attachAlgoOrds``).

    Optional: an adapter that implements it and answers ``True`` from
    :attr:`attached_stops` lets ``Policy(protection="auto")`` use it. An
    attached stop is a claim until the exchange shows it: the engine reads it
    back with :meth:`fetch_attached_stop` before it trusts it.
    """

    @property
    def attached_stops(self) -> bool:
        """The venue (as this adapter drives it) arms a stop sent with a
        market entry, sized to that order's own fill."""
        ...

    async def create_order_with_stop(
        self, *, symbol: str, side: Side, amount: float, client_id: str,
        stop_price: float, stop_client_id: str,
    ) -> OrderSnapshot:
        """Send a market entry (never reduce-only) with a reduce-only
        stop-market attached at ``stop_price``, on the opposite side, for the
        order's filled quantity only. ``stop_client_id`` names the stop where
        the venue lets the caller name it. Errors as :meth:`ExchangePort.create_order`."""
        ...

    async def fetch_attached_stop(
        self, *, symbol: str, order_id: str | None, client_id: str | None,
        stop_client_id: str,
    ) -> StopSnapshot | None:
        """The stop the exchange armed for the entry ``order_id`` /
        ``client_id``, read from the venue's own fields: ``status`` OPEN when
        live, REJECTED or CANCELED when the venue refused or dropped it (the
        price crossed it at the fill), CLOSED when it triggered. ``None``
        while the venue shows none (not armed yet, or never). A field the
        venue does not report is ``None``, never a default."""
        ...
