"""The engine's vocabulary: sides, snapshots, markets, fills, evidence
sources and the errors an exchange answers with.

The engine (``fsm``) owns these words; every adapter speaks them
(:mod:`fsm.port` says what an adapter must do with them). The rule for the
value types is the lesson of the AVLUSDT incident: a field the exchange did
not report is ``None`` ("not known"), never a made-up default such as
``'unknown'``, ``0`` or ``'buy'``.

Errors are classified here, once, so the engine can tell a definitive answer
("the exchange refused") from an ambiguous one ("we do not know whether the
request took effect"). Adapters map their exchange's errors onto these.
"""

from __future__ import annotations

import enum
import math

import attrs

__all__ = [
    "AmbiguousError",
    "DuplicateClientId",
    "ExchangeError",
    "Fill",
    "Market",
    "OrderNotFound",
    "OrderRejected",
    "OrderSnapshot",
    "OrderStatus",
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
    def closing_side(self) -> Side:
        """The other side: the order side that reduces what an order of this
        side opens (a buy is closed by a sell). The one spelling of "the
        other side", shared with :attr:`PositionSide.closing_side`."""
        return Side.SELL if self is Side.BUY else Side.BUY

    @property
    def opens(self) -> PositionSide:
        """The position side an order of this side opens (one-way mode): the
        same direction in the position's terms, not another side."""
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
    """The direction of a net one-way position. Flat has no side (``None``)."""

    LONG = "long"
    SHORT = "short"

    @property
    def closing_side(self) -> Side:
        """The order side that reduces a position of this side: the same
        answer :attr:`Side.closing_side` gives for the side that opened it."""
        return Side.SELL if self is PositionSide.LONG else Side.BUY

    @classmethod
    def parse(cls, value: object) -> PositionSide | None:
        """Parse an exchange's position side; anything unrecognised is ``None``."""
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
    """An order's status as the exchange reports it."""
    OPEN = "open"  # accepted, may still fill
    CLOSED = "closed"  # fully filled
    CANCELED = "canceled"  # ended; may have filled partially (IOC remainder)
    REJECTED = "rejected"  # refused after acceptance; filled nothing
    EXPIRED = "expired"  # ended by time in force; may have filled partially

    @property
    def terminal(self) -> bool:
        """The order can no longer fill."""
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
        """The order can no longer fill."""
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
        """No position."""
        return self.size == 0

    def signed(self) -> float:
        """The size, negative for a short."""
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
