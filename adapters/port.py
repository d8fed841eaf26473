"""The exchange port: what the engine needs from an exchange, and nothing more.

Every adapter (ccxt for real exchanges, the simulator for everything else)
implements :class:`ExchangePort` and speaks only in the value types below.
The rule for those types is the lesson of the AVLUSDT incident: a field the
exchange did not report is ``None`` ("not known"), never a made-up default
such as ``'unknown'``, ``0`` or ``'buy'``.

Errors are classified here, once, so the engine can tell a definitive answer
("the exchange refused") from an ambiguous one ("we do not know whether the
request took effect"). Adapters map their exchange's errors onto these.
"""

from __future__ import annotations

import asyncio
import enum
import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import attrs

__all__ = [
    "AmbiguousError",
    "AttachedStopPort",
    "DuplicateClientId",
    "ExchangeError",
    "ExchangePort",
    "Fill",
    "Market",
    "OrderNotFound",
    "OrderRejected",
    "OrderSnapshot",
    "OrderStatus",
    "PositionCache",
    "PositionSide",
    "PositionSnapshot",
    "Side",
    "Source",
    "StopSnapshot",
    "TransientError",
    "UnknownSymbol",
    "qty_eq",
]


# --------------------------------------------------------------------------
# Enumerations: one per concept, so a misspelt or invented value cannot exist.
# --------------------------------------------------------------------------


class Side(enum.Enum):
    """The side of an order. There is deliberately no ``UNKNOWN`` member:
    an unknown side is ``None`` at the type level."""

    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @property
    def opens(self) -> PositionSide:
        """The position side an order of this side opens (one-way mode)."""
        return PositionSide.LONG if self is Side.BUY else PositionSide.SHORT

    @classmethod
    def parse(cls, value: object) -> Side | None:
        """Parse an exchange's side string; anything unrecognised is ``None``."""
        if isinstance(value, Side):
            return value
        if isinstance(value, str):
            v = value.strip().lower()
            if v == "buy":
                return cls.BUY
            if v == "sell":
                return cls.SELL
        return None


class PositionSide(enum.Enum):
    LONG = "long"
    SHORT = "short"

    @property
    def closing_side(self) -> Side:
        """The order side that reduces a position of this side."""
        return Side.SELL if self is PositionSide.LONG else Side.BUY

    @classmethod
    def parse(cls, value: object) -> PositionSide | None:
        if isinstance(value, PositionSide):
            return value
        if isinstance(value, str):
            v = value.strip().lower()
            if v in ("long", "buy"):
                return cls.LONG
            if v in ("short", "sell"):
                return cls.SHORT
        return None


class OrderStatus(enum.Enum):
    OPEN = "open"  # accepted, may still fill
    CLOSED = "closed"  # fully filled
    CANCELED = "canceled"  # ended; may have filled partially (IOC remainder)
    REJECTED = "rejected"  # refused after acceptance; filled nothing
    EXPIRED = "expired"  # ended by time in force; may have filled partially

    @property
    def terminal(self) -> bool:
        return self is not OrderStatus.OPEN


class Source(enum.Enum):
    """Where a piece of evidence came from. Appears in logs and history."""

    ACK = "ack"  # the create reply
    ORDER = "order"  # an order fetched by id or client id
    STREAM = "stream"  # the position cache fed by a WebSocket stream
    REST = "rest"  # REST positions
    STOP = "stop"  # the stop-loss placement reply
    CLOSE = "close"  # the reduce-only close reply / fetch
    CLOCK = "clock"  # a deadline passed
    JOURNAL = "journal"  # replayed from the journal during recovery


# --------------------------------------------------------------------------
# Value types: immutable snapshots; a new fact is a new object.
# --------------------------------------------------------------------------


def _opt_nonneg(_inst: object, attr: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None and (not math.isfinite(value) or value < 0):
        raise ValueError(f"{attr.name} must be a finite number >= 0 or None, got {value!r}")


def _nonneg(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{attr.name} must be a finite number >= 0, got {value!r}")


@attrs.frozen
class OrderSnapshot:
    """What the exchange told us about one order, at one moment.

    ``side``, ``amount``, ``filled`` and ``status`` are ``None`` when the
    exchange did not report them (Bybit v5's create reply carries only the
    ids). Nothing here is inferred from our own request.
    """

    symbol: str
    order_id: str | None
    client_id: str | None
    side: Side | None = None
    amount: float | None = attrs.field(default=None, validator=_opt_nonneg)
    filled: float | None = attrs.field(default=None, validator=_opt_nonneg)
    status: OrderStatus | None = None
    reduce_only: bool | None = None
    average: float | None = None
    timestamp: float | None = None  # exchange time, seconds, when reported

    @property
    def terminal(self) -> bool:
        return self.status is not None and self.status.terminal


@attrs.frozen
class PositionSnapshot:
    """The net one-way position in one symbol as one source saw it.

    ``size`` is in contracts and never negative; ``0`` means flat, in which
    case ``side`` is ``None``. ``as_of`` is the exchange's timestamp for the
    view when the source reports one (streams do; REST often does not).
    ``received_at`` is the local event-loop time at which we received it.
    """

    symbol: str
    side: PositionSide | None
    size: float = attrs.field(converter=float, validator=_nonneg)
    source: Source
    received_at: float
    as_of: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.size == 0 and self.side is not None:
            raise ValueError("a flat position has no side")
        if self.size > 0 and self.side is None:
            # An open position of unknown direction is not something an
            # adapter may report as a fact; it must say which side, or fail.
            raise ValueError("an open position must carry its side")

    @property
    def flat(self) -> bool:
        return self.size == 0

    def signed(self) -> float:
        if self.side is PositionSide.SHORT:
            return -self.size
        return self.size


@attrs.frozen
class StopSnapshot:
    """A resting stop-loss order (stop-market, reduce-only)."""

    symbol: str
    order_id: str | None
    client_id: str | None
    side: Side | None
    amount: float | None
    trigger_price: float | None
    reduce_only: bool | None
    status: OrderStatus | None = OrderStatus.OPEN


@attrs.frozen
class Market:
    """One symbol's trading rules, as the exchange states them.

    ``symbol`` is the canonical (ccxt unified) spelling, whatever spelling
    the caller used to look it up (``"AVLUSDT"`` resolves to
    ``"AVL/USDT:USDT"``). Every comparison the engine, the journal and the
    monitor make uses it. A rule the exchange does not state is ``None``:
    no grid, no minimum.
    """

    symbol: str
    native_id: str | None = None  # the exchange's own spelling ("AVLUSDT")
    price_step: float | None = attrs.field(default=None, validator=_opt_nonneg)  # tick
    amount_step: float | None = attrs.field(default=None, validator=_opt_nonneg)  # lot step
    min_amount: float | None = attrs.field(default=None, validator=_opt_nonneg)
    min_notional: float | None = attrs.field(default=None, validator=_opt_nonneg)  # quote


@attrs.frozen
class Fill:
    """One execution on the account (ours or anyone's): what the exchange's
    trade history reports. Recovery and the rollback read these to tell
    whether anything but the attempt's own orders moved the symbol since the
    attempt's fill (rule 9)."""

    symbol: str
    order_id: str | None
    client_id: str | None
    side: Side | None
    amount: float = attrs.field(validator=_nonneg)
    timestamp: float | None = None  # exchange time, seconds


def qty_eq(a: float, b: float, *, rel: float = 1e-9, abs_: float = 1e-12) -> bool:
    """Quantity equality tolerant of float representation only, not of lot
    rounding: a position of 42.9 does not "cover" 43."""
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class ExchangeError(Exception):
    """Base class of everything an adapter raises on the engine's behalf."""

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class OrderRejected(ExchangeError):
    """Definitive: the exchange refused the request and nothing took effect
    (invalid order, insufficient funds, reduce-only would increase...)."""


class DuplicateClientId(OrderRejected):
    """The exchange already holds an order with this client id, so it refused
    a second one. After an ambiguous send this is good news: the first one
    arrived. Look it up by client id."""


class OrderNotFound(ExchangeError):
    """The exchange does not (yet) show this order. Right after a create this
    means "not visible yet", never "rejected". Only this error is a "miss":
    a look-up that failed any other way (timeout, 5xx, rate limit) says
    nothing about the order (rule 10)."""


class UnknownSymbol(ExchangeError):
    """The exchange lists no market under this symbol (neither the unified
    spelling nor its own id)."""


class TransientError(ExchangeError):
    """The request failed and may be retried (rate limit, unavailable).

    For a read this is harmless. For a write it is *ambiguous* unless the
    adapter knows the request was refused before reaching the matching engine;
    adapters raise :class:`AmbiguousError` for writes whose fate is unknown.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, cause: BaseException | None = None
    ) -> None:
        super().__init__(message, cause=cause)
        self.retry_after = retry_after


class AmbiguousError(TransientError):
    """A write whose outcome is unknown (timeout, connection lost after send):
    the order may exist. Look it up by client id before sending again."""


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
        return self._latest.get(symbol)

    def version(self, symbol: str) -> int:
        return self._versions.get(symbol, 0)

    async def wait_newer(self, symbol: str, version: int) -> PositionSnapshot:
        """Wait until the cache holds a snapshot for ``symbol`` newer than
        ``version`` (as returned by :meth:`version`). The caller bounds the
        wait with its own deadline."""
        await self._wait(symbol, version)
        return self._latest[symbol]

    def order_version(self, key: str) -> int:
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
    of the errors above; none retries a write on its own."""

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
