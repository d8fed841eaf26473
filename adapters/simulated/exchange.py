"""A deterministic simulated futures exchange, for tests, specs, the demo
and the benchmarks. No keys, no network.

It runs on whatever asyncio loop it is awaited on; on a
:class:`~adapters.simulated.clock.VirtualTimeLoop` a 10 s deadline costs
microseconds. Exchange time *is* loop time, so ``as_of`` and order timestamps
compare directly with deadlines.

What it models (one-way netting, market orders, reduce-only stop-markets):

* every call travels ``rtt/2`` (plus seeded jitter) each way, and takes
  effect on arrival;
* a reduce-only order that would increase or flip a position is rejected,
  as on real exchanges, and one larger than the position fills only what
  reduces it;
* client order ids are unique per account (Bybit) or only among *open*
  orders (Binance: a duplicate of a filled market order executes again),
  per :attr:`SimConfig.client_id_scope`;
* a shared account: positions held before the run (``initial_positions``)
  and an operator trading by hand on the same symbols at scheduled times
  (:attr:`SimConfig.operator`), whose executions show in
  :meth:`SimulatedExchange.fetch_fills` like everyone's;
* markets with a tick, a lot step and minimums, found by their unified or
  native spelling (``"AVLUSDT"``), as ccxt's ``market()`` does;
* a receive window: a write that arrives later than ``receive_window`` after
  it was sent is refused unexecuted (a ``DELAYED`` fault makes the client
  time out and the request arrive late);
* REST position views with or without an exchange timestamp
  (``rest_timestamps=False`` is what ccxt reports);
* faults, each a knob of :class:`SimConfig`: minimal (Bybit v5) or NEW/0
  (Binance) acknowledgements, order visibility lag, REST position lag,
  stream absent / present / lagging, per-call fault schedules (timeouts before
  or after taking effect, rate limits, unavailability), entry rejection or
  zero fill, partial fill, stop rejected, close rejected;
* a hostile venue, each betrayal a knob: a stop accepted without its
  reduce-only flag, on the other side, or for another size (it rests, and
  reads back, as the venue made it); acknowledgements carrying only one of
  the two ids; a reduce-only close larger than the position cut to the
  position and reported filled in full; a position stream whose message
  stamped with a fill's instant still shows the position before the fill
  (late by exactly zero time), the true one following later;
* stops attached to the entry (``attached_stops``): armed at the fill for
  the filled quantity, or late (``attached_stop_delay``), or refused at the
  fill (``attached_stop_refused``, or a trigger the price has crossed), or
  armed for the ordered amount instead of the fill
  (``attached_stop_whole_amount``).

Ground truth for tests: :meth:`SimulatedExchange.net_position`,
:meth:`SimulatedExchange.resting_stops` and :attr:`SimulatedExchange.log`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import enum
import random
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import attrs

from fsm.model import (
    AmbiguousError,
    DuplicateClientId,
    Fill,
    Market,
    OrderNotFound,
    OrderRejected,
    OrderSnapshot,
    OrderStatus,
    PositionSide,
    PositionSnapshot,
    Side,
    Source,
    StopSnapshot,
    TransientError,
    UnknownSymbol,
)
from fsm.port import PositionCache

T = TypeVar("T")

__all__ = [
    "DEFAULT_MARKETS",
    "AckStyle",
    "ClientIdScope",
    "Fault",
    "OperatorMove",
    "SentOrder",
    "SimConfig",
    "SimFill",
    "SimMarket",
    "SimulatedExchange",
    "StreamMode",
]


class AckStyle(enum.Enum):
    """What the create reply carries."""
    FULL = "full"  # side, amount, status closed, filled reported
    MINIMAL = "minimal"  # ids only (Bybit v5 create reply)
    NEW = "new"  # status open, filled 0 (Binance ACK/NEW reply)


class StreamMode(enum.Enum):
    """Whether, and how, a position stream feeds the cache."""
    ABSENT = "absent"  # no WebSocket: the adapter has no cache
    PRESENT = "present"  # pushes after ``stream_lag``
    SILENT = "silent"  # connected but never pushes (a dead socket)


class Fault(enum.Enum):
    """One call's fate in a fault schedule."""

    OK = "ok"
    TIMEOUT_BEFORE = "timeout_before"  # lost on the way: no effect, no reply
    TIMEOUT_AFTER = "timeout_after"  # took effect, reply lost
    RATE_LIMIT = "rate_limit"  # refused before taking effect
    #: 503: refused before taking effect, but a write's client cannot know
    #: that, so a write raises AmbiguousError
    UNAVAILABLE = "unavailable"
    #: The client times out; the request reaches the exchange only after
    #: ``SimConfig.delayed_arrival`` seconds, and is executed only if that is
    #: within the receive window.
    DELAYED = "delayed"


class ClientIdScope(enum.Enum):
    """Where an exchange enforces client-order-id uniqueness."""

    ACCOUNT = "account"  # Bybit orderLinkId: unique per account, always
    OPEN = "open"  # Binance clientOrderId: unique among open orders only


@attrs.frozen
class OperatorMove:
    """Someone else on the account trades by hand: a market order for the
    signed ``delta`` on ``symbol`` (positive buys, negative sells; it may
    flip the position), executed ``at`` seconds after the exchange's first
    request."""

    at: float
    symbol: str
    delta: float


@attrs.frozen
class SimMarket:
    """Trading rules of one simulated market."""

    price_step: float | None = None
    amount_step: float | None = None
    min_amount: float | None = None
    min_notional: float | None = None


#: Default markets: real grids (Bybit's AVLUSDT, BTCUSDT, ETHUSDT linear
#: perpetuals), so requests must respect them. Minimum notionals are left to
#: the worlds that test them.
DEFAULT_MARKETS: Mapping[str, SimMarket] = {
    "AVL/USDT:USDT": SimMarket(price_step=0.0001, amount_step=1.0, min_amount=1.0),
    "BTC/USDT:USDT": SimMarket(price_step=0.1, amount_step=0.001, min_amount=0.001),
    "ETH/USDT:USDT": SimMarket(price_step=0.01, amount_step=0.01, min_amount=0.01),
}


#: Call kinds that fault schedules are keyed by.
CALLS = ("create", "close", "fetch_order", "fetch_positions", "place_stop", "fetch_stops",
         "cancel", "fetch_price", "fetch_fills", "market", "fetch_attached_stop")


@attrs.frozen
class SimConfig:
    """Every knob of the simulated world. Defaults: a calm, honest exchange."""

    seed: int = 0
    rtt: float = 0.03  # seconds, round trip
    jitter: float = 0.0  # uniform extra one-way latency in [0, jitter)
    #: Heavy-tailed latency (benchmarks' loaded profile): when > 0, the extra
    #: one-way latency is ``jitter * (Pareto(jitter_tail) - 1)`` instead of
    #: uniform, so most calls are quick and a few are very slow. Shape 1.5:
    #: median 0.6 x jitter, p99 20 x jitter.
    jitter_tail: float = 0.0
    jitter_cap: float = float("inf")  # upper bound on the extra one-way latency
    client_timeout: float = 2.0  # how long a lost request takes to time out
    ack: AckStyle = AckStyle.FULL
    order_visibility_lag: float = 0.0  # fetch_order says not-found this long after create
    rest_position_lag: float = 0.0  # REST positions show the past by this much
    stream: StreamMode = StreamMode.ABSENT
    stream_lag: float = 0.1
    # entry faults
    reject_entry: bool = False  # refused at create (insufficient margin)
    entry_unfilled: bool = False  # accepted, then cancelled with nothing filled
    fill_ratio: float = 1.0  # partial fill: fraction of the amount that fills
    stop_rejected: bool = False  # the stop is refused
    close_rejected: bool = False  # reduce-only closes are refused
    misreport_side: bool = False  # order reads report the opposite side (an anomaly)
    #: symbol -> signed net position held before the test starts
    initial_positions: Mapping[str, float] = attrs.field(factory=dict)
    #: call kind -> fates of its successive calls (then OK).
    faults: Mapping[str, tuple[Fault, ...]] = attrs.field(factory=dict)
    prices: Mapping[str, float] = attrs.field(factory=lambda: {"AVL/USDT:USDT": 0.1358})
    default_price: float = 100.0
    #: unified symbol -> trading rules; a symbol not listed has no grid
    markets: Mapping[str, SimMarket] = attrs.field(factory=lambda: dict(DEFAULT_MARKETS))
    #: only symbols in ``prices`` or ``markets`` exist (as on a real venue)
    strict_symbols: bool = False
    #: seconds after sending beyond which a write is refused unexecuted;
    #: ``None``: the venue has no receive window
    receive_window: float | None = 5.0
    #: how long a DELAYED request takes to reach the exchange
    delayed_arrival: float = 10.0
    #: REST position views carry the exchange time of the view. Off by
    #: default: ccxt reports Bybit's and Binance's REST positions without one,
    #: and a simulator kinder than the venue proves a world that does not exist.
    rest_timestamps: bool = False
    client_id_scope: ClientIdScope = ClientIdScope.ACCOUNT
    #: an operator trading by hand on the same account
    operator: tuple[OperatorMove, ...] = ()
    # -- the hostile venue: ways a real venue betrays a client -------------------------
    #: the stop is accepted, but rests without its reduce-only flag
    stop_drops_reduce_only: bool = False
    #: the stop is accepted, but rests on the side opposite to the one asked
    stop_flips_side: bool = False
    #: the stop is accepted, but rests for the amount asked plus this
    stop_amount_skew: float = 0.0
    #: the stop's acknowledgement carries its ids only (Bybit v5's create
    #: reply): what the venue made of it shows only when it is read back
    stop_ack_ids_only: bool = False
    #: acknowledgements of creates carry only this one of the two ids
    #: (``"order_id"`` or ``"client_id"``); ``None``: both
    ack_only: str | None = None
    #: a reduce-only close larger than the position is cut to the position
    #: and reported as an order of that size, filled in full (as Bybit
    #: shrinks the quantity), instead of filled in part
    close_cut_to_position: bool = False
    #: the position stream first pushes, stamped with a move's instant, the
    #: position as it was before the move (right for every earlier instant,
    #: wrong at its own stamp: late by exactly zero time), and the true
    #: position this many seconds later; ``None``: every push is true
    stream_stale_at_move: float | None = None
    #: the venue arms a stop sent with the entry (Bybit, OKX); ``False``
    #: (default): it has no such thing (Binance USDⓈ-M market entries)
    attached_stops: bool = False
    #: seconds after the fill at which an attached stop is armed (and shows)
    attached_stop_delay: float = 0.0
    #: the attached stop is refused at the fill (the price crossed it): the
    #: venue reports it failed, and nothing protects the fill
    attached_stop_refused: bool = False
    #: the attached stop is armed for the order's amount, not its fill (a
    #: venue in "full position" mode): wrong-sized after a partial fill
    attached_stop_whole_amount: bool = False


@attrs.frozen
class SimFill:
    """Ground truth: one execution, by anyone."""

    at: float
    symbol: str
    order_id: str
    client_id: str | None
    side: Side
    amount: float
    actor: str  # "client" (this exchange's caller) or "operator"


@attrs.frozen
class SentOrder:
    """Ground truth: one order as the exchange received it."""

    at: float
    kind: str  # "market" | "stop"
    symbol: str
    side: Side
    amount: float
    reduce_only: bool
    client_id: str | None
    accepted: bool
    filled: float
    reason: str = ""


@attrs.define
class _Order:
    order_id: str
    client_id: str | None
    symbol: str
    side: Side
    amount: float
    filled: float
    status: OrderStatus
    reduce_only: bool
    created_at: float
    average: float | None
    trigger_price: float | None = None
    kind: str = "market"
    #: an attached stop: the entry order it belongs to
    parent: str | None = None


class SimulatedExchange:
    """A deterministic exchange implementing :class:`~adapters.port.ExchangePort`."""

    def __init__(self, config: SimConfig | None = None, **knobs: object) -> None:
        base = config if config is not None else SimConfig()
        config = attrs.evolve(base, **knobs) if knobs else base  # type: ignore[arg-type]
        self.config = config
        self._rng = random.Random(config.seed)
        self._orders: dict[str, _Order] = {}
        self._by_client: dict[str, _Order] = {}
        self._net: dict[str, float] = {}
        self._net_history: dict[str, list[tuple[float, float]]] = {}
        self._streamed: dict[str, int] = {}  # per symbol: last move the stream delivered
        self._fault_pos: dict[str, int] = {}
        self._attached: dict[str, _Order] = {}  # entry order id -> its attached stop
        self._pending_attach: set[str] = set()  # client ids of stops not armed yet
        self._next_id = 1
        self.log: list[SentOrder] = []
        #: every execution, the operator's included
        self.fills: list[SimFill] = []
        self.calls: dict[str, int] = {}
        #: every cancel asked for, as (order id, client id), whatever its fate
        self.cancel_requests: list[tuple[str | None, str | None]] = []
        #: Called with the call kind when a request reaches the exchange (a
        #: request lost on the way, refused at the gateway or delayed past its
        #: receive window never does), in the sender's task, so the sender's
        #: context variables are visible to it.
        self.on_arrival: Callable[[str], None] | None = None
        self._operator_started = False
        self._cache = PositionCache() if config.stream is not StreamMode.ABSENT else None
        for sym, net in config.initial_positions.items():
            self._net[sym] = net
            self._net_history[sym] = [(float("-inf"), net)]

    # -- ground truth ------------------------------------------------------------------

    @property
    def name(self) -> str:
        """Always ``"simulated"``."""
        return "simulated"

    @property
    def position_cache(self) -> PositionCache | None:
        """The stream-fed cache, or ``None`` when the config has no stream."""
        return self._cache

    def net_position(self, symbol: str) -> float:
        """Signed net position: positive long, negative short."""
        return self._net.get(symbol, 0.0)

    def max_abs_position(self, symbol: str) -> float:
        """The largest absolute net position the symbol ever had."""
        return max((abs(v) for _, v in self._net_history.get(symbol, [])), default=0.0)

    def max_change(self, symbol: str) -> float:
        """The largest distance the net position ever moved from where it
        started (``initial_positions``): the exposure this run added."""
        start = self.config.initial_positions.get(symbol, 0.0)
        return max((abs(v - start) for _, v in self._net_history.get(symbol, [])), default=0.0)

    def resting_stops(self, symbol: str | None = None) -> list[StopSnapshot]:
        """Ground truth: the stops resting on the book, for one symbol or all."""
        return [self._stop_snapshot(o) for o in self._orders.values()
                if o.kind == "stop" and o.status is OrderStatus.OPEN
                and (symbol is None or o.symbol == symbol)]

    @property
    def total_calls(self) -> int:
        """Ground truth: how many port calls reached the exchange."""
        return sum(self.calls.values())

    def price(self, symbol: str) -> float:
        """Ground truth: the symbol's current price."""
        return self.config.prices.get(symbol, self.config.default_price)

    # -- the port -------------------------------------------------------------------------

    @property
    def receive_window(self) -> float | None:
        """The config's receive window, in seconds (``None``: none)."""
        return self.config.receive_window

    @property
    def lookup_lag(self) -> float:
        """The config's order visibility lag, in seconds."""
        return self.config.order_visibility_lag

    def canonical(self, symbol: str) -> str:
        """The unified spelling of ``symbol`` (unified or native id), as
        ccxt's ``market()`` resolves it; raises :class:`UnknownSymbol`."""
        known = {*self.config.prices, *self.config.markets, *self.config.initial_positions}
        if symbol in known:
            return symbol
        for unified in sorted(known):
            if _native(unified) == symbol:
                return unified
        if self.config.strict_symbols or "/" not in symbol:
            raise UnknownSymbol(f"no market {symbol!r}")
        return symbol

    async def market(self, symbol: str) -> Market:
        """The market in either spelling (see :meth:`fsm.port.ExchangePort.market`)."""
        def look() -> Market:
            unified = self.canonical(symbol)
            m = self.config.markets.get(unified, SimMarket())
            return Market(symbol=unified, native_id=_native(unified), price_step=m.price_step,
                          amount_step=m.amount_step, min_amount=m.min_amount,
                          min_notional=m.min_notional)

        return await self._call("market", look, write=False)

    async def fetch_fills(self, symbol: str, since: float | None) -> list[Fill]:
        """Every execution on the symbol at or after ``since``, everyone's."""
        def look() -> list[Fill]:
            unified = self.canonical(symbol)
            return [Fill(symbol=f.symbol, order_id=f.order_id, client_id=f.client_id,
                         side=f.side, amount=f.amount, timestamp=f.at)
                    for f in self.fills
                    if f.symbol == unified and (since is None or f.at >= since)]

        return await self._call("fetch_fills", look, write=False)

    async def fetch_price(self, symbol: str) -> float | None:
        """The symbol's current price."""
        return await self._call("fetch_price", lambda: self.price(self.canonical(symbol)),
                                write=False)

    async def create_order(
        self, *, symbol: str, side: Side, amount: float, client_id: str, reduce_only: bool
    ) -> OrderSnapshot:
        """Send a market order through the config's latency and faults."""
        kind = "close" if reduce_only else "create"
        return await self._call(
            kind, lambda: self._create(self.canonical(symbol), side, amount, client_id,
                                       reduce_only), write=True
        )

    @property
    def attached_stops(self) -> bool:
        """Whether this venue arms a stop sent with the entry (the knob)."""
        return self.config.attached_stops

    async def create_order_with_stop(
        self, *, symbol: str, side: Side, amount: float, client_id: str,
        stop_price: float, stop_client_id: str,
    ) -> OrderSnapshot:
        """The entry, with a stop the venue arms at the fill (see the knobs)."""

        def create() -> OrderSnapshot:
            if not self.config.attached_stops:
                raise OrderRejected("this venue takes no stop attached to a market entry")
            return self._create(self.canonical(symbol), side, amount, client_id, False,
                                attach=(stop_price, stop_client_id))

        return await self._call("create", create, write=True)

    async def fetch_attached_stop(
        self, *, symbol: str, order_id: str | None, client_id: str | None,
        stop_client_id: str,
    ) -> StopSnapshot | None:
        """The stop armed for the entry (refused ones too), or ``None``."""

        def look() -> StopSnapshot | None:
            parent = self._find(order_id, client_id)
            if parent is None or parent.symbol != self.canonical(symbol):
                return None
            stop = self._attached.get(parent.order_id)
            if stop is None:
                return None
            return self._stop_snapshot(stop)

        return await self._call("fetch_attached_stop", look, write=False)

    async def fetch_order(
        self, *, symbol: str, order_id: str | None, client_id: str | None
    ) -> OrderSnapshot:
        """Look an order up; not found while the visibility lag lasts."""
        def look() -> OrderSnapshot:
            o = self._find(order_id, client_id)
            now = self._now()
            hidden = o is not None and now < o.created_at + self.config.order_visibility_lag
            if o is None or o.symbol != self.canonical(symbol) or hidden:
                raise OrderNotFound(f"order {order_id or client_id} not found")
            return self._snapshot(o)

        return await self._call("fetch_order", look, write=False)

    async def fetch_positions(self, symbols: Sequence[str] | None = None) -> list[PositionSnapshot]:
        """REST positions as they were ``rest_position_lag`` seconds ago."""
        def view() -> list[PositionSnapshot]:
            now = self._now()
            as_of = now - self.config.rest_position_lag
            out = []
            names = ([self.canonical(x) for x in symbols] if symbols is not None
                     else sorted(self._net_history))
            for sym in names:
                net = self._net_at(sym, as_of)
                if net != 0:
                    stamp = as_of if self.config.rest_timestamps else None
                    out.append(self._position(sym, net, Source.REST, now, stamp))
            return out

        return await self._call("fetch_positions", view, write=False)

    async def place_stop(
        self, *, symbol: str, side: Side, amount: float, trigger_price: float, client_id: str
    ) -> StopSnapshot:
        """Place a reduce-only stop-market (refused when ``stop_rejected``)."""
        return await self._call(
            "place_stop", lambda: self._place_stop(self.canonical(symbol), side, amount,
                                                   trigger_price, client_id),
            write=True,
        )

    async def fetch_stops(self, symbol: str | None = None) -> list[StopSnapshot]:
        """Open stops, for one symbol or all."""
        return await self._call(
            "fetch_stops",
            lambda: self.resting_stops(None if symbol is None else self.canonical(symbol)),
            write=False)

    async def cancel_order(
        self, *, symbol: str, order_id: str | None, client_id: str | None
    ) -> None:
        """Cancel an open order (a stop); :class:`~fsm.model.OrderNotFound` if it is not open."""
        self.cancel_requests.append((order_id, client_id))

        def cancel() -> None:
            o = self._find(order_id, client_id)
            if o is None and order_id is None and client_id in self._pending_attach:
                # An attached stop not armed yet is part of its entry: the
                # venue drops it (OKX cancels an attached algo order by its
                # attachAlgoClOrdId).
                self._pending_attach.discard(client_id)
                return
            # A venue looks an order up within the symbol the cancel names
            # (Binance and Bybit require it): one on another symbol, or a
            # cancel that names none, finds nothing.
            if o is None or o.status is not OrderStatus.OPEN or not symbol \
                    or o.symbol != self.canonical(symbol):
                raise OrderNotFound(f"order {order_id or client_id} not open on {symbol}")
            o.status = OrderStatus.CANCELED

        await self._call("cancel", cancel, write=True)

    # -- matching ----------------------------------------------------------------------------

    def _create(
        self, symbol: str, side: Side, amount: float, client_id: str, reduce_only: bool,
        attach: tuple[float, str] | None = None,
    ) -> OrderSnapshot:
        now = self._now()
        cfg = self.config
        if self._duplicate(client_id):
            self._record(now, "market", symbol, side, amount, reduce_only, client_id, False, 0,
                         "duplicate client id")
            raise DuplicateClientId(f"duplicate client order id {client_id}")
        if reduce_only:
            if cfg.close_rejected:
                self._record(now, "market", symbol, side, amount, True, client_id, False, 0,
                             "close rejected (fault)")
                raise OrderRejected("reduce-only order rejected (simulated fault)")
            reducible = self._reducible(symbol, side)
            if reducible <= 0:
                self._record(now, "market", symbol, side, amount, True, client_id, False, 0,
                             "reduce-only would increase position")
                raise OrderRejected("reduce-only order would increase the position")
            fill = min(amount, reducible)
            if cfg.close_cut_to_position and fill < amount:
                # The venue shrinks the order to the position: it reports an
                # order of that size, filled in full.
                self._record(now, "market", symbol, side, amount, True, client_id, True, fill,
                             "cut to the position")
                order = self._new_order(symbol, side, fill, fill, OrderStatus.CLOSED, True,
                                        client_id, now)
                self._move(symbol, side, fill, now)
                self.fills.append(SimFill(now, symbol, order.order_id, client_id, side, fill,
                                          "client"))
                self._push_order(order)
                return self._ack(order)
        else:
            if cfg.reject_entry:
                self._record(now, "market", symbol, side, amount, False, client_id, False, 0,
                             "insufficient margin (fault)")
                raise OrderRejected("insufficient available balance (simulated)")
            fill = 0.0 if cfg.entry_unfilled else self._whole_lots(symbol, amount * cfg.fill_ratio)
        status = OrderStatus.CLOSED if fill == amount else OrderStatus.CANCELED
        order = self._new_order(symbol, side, amount, fill, status, reduce_only, client_id, now)
        self._record(now, "market", symbol, side, amount, reduce_only, client_id, True, fill)
        if fill > 0:
            self._move(symbol, side, fill, now)
            self.fills.append(SimFill(now, symbol, order.order_id, client_id, side, fill,
                                      "client"))
        self._push_order(order)
        if attach is not None and fill > 0:
            self._arm_later(order, *attach)
        return self._ack(order)

    def _arm_later(self, entry: _Order, trigger: float, client_id: str) -> None:
        delay = self.config.attached_stop_delay
        if delay <= 0:
            self._arm(entry, trigger, client_id)
            return
        self._pending_attach.add(client_id)

        def arm() -> None:
            if client_id in self._pending_attach:
                self._pending_attach.discard(client_id)
                self._arm(entry, trigger, client_id)

        asyncio.get_running_loop().call_later(delay, arm)

    def _arm(self, entry: _Order, trigger: float, client_id: str) -> None:
        """The venue arms the stop attached to ``entry``, for its fill: or
        refuses it, when the price has crossed the trigger."""
        now = self._now()
        cfg = self.config
        side = entry.side.closing_side
        size = entry.amount if cfg.attached_stop_whole_amount else entry.filled
        price = self.price(entry.symbol)
        crossed = ((side is Side.SELL and trigger >= price)
                   or (side is Side.BUY and trigger <= price))
        refused = cfg.attached_stop_refused or crossed or self._reducible(entry.symbol, side) <= 0
        o = self._new_order(entry.symbol, side, size, 0.0,
                            OrderStatus.REJECTED if refused else OrderStatus.OPEN, True,
                            client_id, now)
        o.kind = "stop"
        o.trigger_price = trigger
        o.parent = entry.order_id
        self._attached[entry.order_id] = o
        self._record(now, "stop", entry.symbol, side, size, True, client_id, not refused, 0,
                     "attached stop refused at the fill" if refused else "attached")

    def _whole_lots(self, symbol: str, qty: float) -> float:
        """A partial fill is whole lots, as on a real venue."""
        step = self.config.markets.get(symbol, SimMarket()).amount_step
        if not step:
            return qty
        return round(int(qty / step + 1e-9) * step, 12)

    def _duplicate(self, client_id: str) -> bool:
        held = self._by_client.get(client_id)
        if held is None:
            return False
        if self.config.client_id_scope is ClientIdScope.OPEN:
            return held.status is OrderStatus.OPEN
        return True

    def operate(self, move: OperatorMove) -> None:
        """The operator trades now (``move.at`` is ignored): a market order
        that executes in full and may flip the position."""
        self._operate(move)

    def _operate(self, move: OperatorMove) -> None:
        """The operator's market order: executes in full, may flip."""
        if move.delta == 0:
            return
        now = self._now()
        sym = self.canonical(move.symbol)
        side = Side.BUY if move.delta > 0 else Side.SELL
        qty = abs(move.delta)
        o = self._new_order(sym, side, qty, qty, OrderStatus.CLOSED, False, None, now)
        self._move(sym, side, qty, now)
        self.fills.append(SimFill(now, sym, o.order_id, None, side, qty, "operator"))

    def _start_operator(self) -> None:
        if self._operator_started:
            return
        self._operator_started = True
        loop = asyncio.get_running_loop()
        for move in self.config.operator:
            loop.call_later(max(0.0, move.at), self._operate, move)

    def _place_stop(
        self, symbol: str, side: Side, amount: float, trigger: float, client_id: str
    ) -> StopSnapshot:
        now = self._now()
        price = self.price(symbol)
        reason = ""
        if self._duplicate(client_id):
            reason = "duplicate client id"
        elif self.config.stop_rejected:
            reason = "stop rejected (fault)"
        elif (side is Side.SELL and trigger >= price) or (side is Side.BUY and trigger <= price):
            # Bybit 110093/Binance -2021: the trigger would fire at once.
            reason = "trigger price on the wrong side of the market"
        elif self._reducible(symbol, side) <= 0:
            reason = "reduce-only stop would not reduce a position"
        if reason:
            self._record(now, "stop", symbol, side, amount, True, client_id, False, 0, reason)
            if reason == "duplicate client id":
                raise DuplicateClientId(f"duplicate client order id {client_id}")
            raise OrderRejected(reason)
        # The log keeps what was asked; the order is what the venue made of it.
        cfg = self.config
        made_side = side.closing_side if cfg.stop_flips_side else side
        made_amount = amount + cfg.stop_amount_skew
        o = self._new_order(symbol, made_side, made_amount, 0.0, OrderStatus.OPEN,
                            not cfg.stop_drops_reduce_only, client_id, now)
        o.kind = "stop"
        o.trigger_price = trigger
        self._record(now, "stop", symbol, side, amount, True, client_id, True, 0)
        if cfg.stop_ack_ids_only:
            return StopSnapshot(symbol=o.symbol, order_id=o.order_id, client_id=o.client_id,
                                side=None, amount=None, trigger_price=None, reduce_only=None,
                                status=None)
        return self._stop_snapshot(o)

    def _reducible(self, symbol: str, side: Side) -> float:
        net = self._net.get(symbol, 0.0)
        if side is Side.SELL and net > 0:
            return net
        if side is Side.BUY and net < 0:
            return -net
        return 0.0

    def _move(self, symbol: str, side: Side, qty: float, now: float) -> None:
        before = self._net.get(symbol, 0.0)
        net = before + (qty if side is Side.BUY else -qty)
        if abs(net) < 1e-12:
            net = 0.0
        self._net[symbol] = net
        self._net_history.setdefault(symbol, [(float("-inf"), 0.0)]).append((now, net))
        if self._cache is not None and self.config.stream is StreamMode.PRESENT:
            snap_time = now
            cache = self._cache
            seq = 2 * len(self._net_history[symbol])

            def push(at_seq: int, shown: float) -> None:
                # A stream is sequenced: the loop may run same-time pushes in
                # any order, so a push older than one delivered is dropped, as
                # a client drops an out-of-sequence message.
                if at_seq <= self._streamed.get(symbol, 0):
                    return
                self._streamed[symbol] = at_seq
                cache.update(self._position(symbol, shown, Source.STREAM, self._now(),
                                            snap_time))

            loop = asyncio.get_running_loop()
            stale = self.config.stream_stale_at_move
            if stale is None:
                loop.call_later(self.config.stream_lag, push, seq, net)
            else:
                loop.call_later(self.config.stream_lag, push, seq - 1, before)
                loop.call_later(self.config.stream_lag + stale, push, seq, net)

    def _push_order(self, o: _Order) -> None:
        if self._cache is not None and self.config.stream is StreamMode.PRESENT:
            snap = self._snapshot(o)
            cache = self._cache
            asyncio.get_running_loop().call_later(self.config.stream_lag, cache.update_order, snap)

    def _net_at(self, symbol: str, t: float) -> float:
        hist = self._net_history.get(symbol)
        if not hist:
            return 0.0
        i = bisect.bisect_right([h[0] for h in hist], t) - 1
        return hist[i][1] if i >= 0 else 0.0

    # -- plumbing ---------------------------------------------------------------------------

    async def _call(self, kind: str, effect: Callable[[], T], *, write: bool) -> T:
        """One request: travel, fate from the fault schedule, effect on
        arrival, travel back (errors travel back too)."""
        self._start_operator()
        self.calls[kind] = self.calls.get(kind, 0) + 1
        fate = self._fault(kind)
        sent = self._now()
        if fate is Fault.DELAYED:
            self._deliver_late(kind, effect, sent, write=write)
            await asyncio.sleep(max(self.config.client_timeout, self._latency()))
            raise _timed_out(kind, write=write)
        await asyncio.sleep(self._latency())
        if write and self._expired(sent):
            await asyncio.sleep(self._latency())
            raise OrderRejected(f"{kind}: request outside the receive window")
        if fate is not Fault.TIMEOUT_BEFORE and self.on_arrival is not None:
            self.on_arrival(kind)
        if fate is Fault.TIMEOUT_BEFORE:
            await asyncio.sleep(max(0.0, self.config.client_timeout - self.config.rtt / 2))
            raise _timed_out(kind, write=write)
        if fate in (Fault.RATE_LIMIT, Fault.UNAVAILABLE):
            await asyncio.sleep(self._latency())
            raise _gateway_refusal(kind, fate, write=write)
        try:
            result = effect()
        except Exception:
            if fate is not Fault.TIMEOUT_AFTER:
                await asyncio.sleep(self._latency())
                raise
            # The answer (a refusal, "no such order") is lost with the reply:
            # the client sees the timeout, not what the exchange said.
        if fate is Fault.TIMEOUT_AFTER:
            await asyncio.sleep(max(0.0, self.config.client_timeout - self.config.rtt / 2))
            if write:
                raise AmbiguousError(f"{kind}: reply lost after the request took effect")
            raise TransientError(f"{kind}: reply lost")
        await asyncio.sleep(self._latency())
        return result

    def _expired(self, sent: float) -> bool:
        window = self.config.receive_window
        return window is not None and self._now() > sent + window

    def _deliver_late(self, kind: str, effect: Callable[[], object], sent: float, *,
                      write: bool) -> None:
        """A request that reaches the exchange ``delayed_arrival`` after it was
        sent: a write executes then, unless the receive window has passed."""
        if not write:
            return

        def arrive() -> None:
            if self._expired(sent):
                return  # refused at the gateway, unexecuted; nobody hears of it
            if self.on_arrival is not None:
                self.on_arrival(kind)
            # A refusal travels back to a client that stopped listening.
            with contextlib.suppress(Exception):
                effect()

        asyncio.get_running_loop().call_later(
            max(0.0, self.config.delayed_arrival), arrive)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _latency(self) -> float:
        cfg = self.config
        if not cfg.jitter:
            extra = 0.0
        elif cfg.jitter_tail > 0:
            extra = min(cfg.jitter * (self._rng.paretovariate(cfg.jitter_tail) - 1.0),
                        cfg.jitter_cap)
        else:
            extra = min(self._rng.random() * cfg.jitter, cfg.jitter_cap)
        return self.config.rtt / 2 + extra

    def _fault(self, kind: str) -> Fault:
        schedule = self.config.faults.get(kind, ())
        i = self._fault_pos.get(kind, 0)
        self._fault_pos[kind] = i + 1
        return schedule[i] if i < len(schedule) else Fault.OK

    def _new_order(self, symbol: str, side: Side, amount: float, filled: float,
                   status: OrderStatus, reduce_only: bool, client_id: str | None,
                   now: float) -> _Order:
        oid = f"sim-{self._next_id}"
        self._next_id += 1
        o = _Order(oid, client_id, symbol, side, amount, filled, status, reduce_only, now,
                   self.price(symbol) if filled > 0 else None)
        self._orders[oid] = o
        if client_id is not None:
            self._by_client[client_id] = o
        return o

    def _find(self, order_id: str | None, client_id: str | None) -> _Order | None:
        if order_id is not None:
            return self._orders.get(order_id)
        if client_id is not None:
            return self._by_client.get(client_id)
        return None

    def _record(self, now: float, kind: str, symbol: str, side: Side, amount: float,
                reduce_only: bool, client_id: str | None, accepted: bool, filled: float,
                reason: str = "") -> None:
        self.log.append(SentOrder(now, kind, symbol, side, amount, reduce_only, client_id,
                                  accepted, filled, reason))

    def _snapshot(self, o: _Order) -> OrderSnapshot:
        side = o.side.closing_side if self.config.misreport_side else o.side
        return OrderSnapshot(symbol=o.symbol, order_id=o.order_id, client_id=o.client_id,
                             side=side, amount=o.amount, filled=o.filled, status=o.status,
                             reduce_only=o.reduce_only, average=o.average,
                             timestamp=o.created_at)

    def _ack(self, o: _Order) -> OrderSnapshot:
        snap = self._ack_style(o)
        only = self.config.ack_only
        if only == "order_id":
            return attrs.evolve(snap, client_id=None)
        if only == "client_id":
            return attrs.evolve(snap, order_id=None)
        return snap

    def _ack_style(self, o: _Order) -> OrderSnapshot:
        style = self.config.ack
        if style is AckStyle.MINIMAL:
            return OrderSnapshot(symbol=o.symbol, order_id=o.order_id, client_id=o.client_id)
        if style is AckStyle.NEW:
            return OrderSnapshot(symbol=o.symbol, order_id=o.order_id, client_id=o.client_id,
                                 side=o.side, amount=o.amount, filled=0.0,
                                 status=OrderStatus.OPEN, reduce_only=o.reduce_only)
        return self._snapshot(o)

    def _stop_snapshot(self, o: _Order) -> StopSnapshot:
        return StopSnapshot(symbol=o.symbol, order_id=o.order_id, client_id=o.client_id,
                            side=o.side, amount=o.amount, trigger_price=o.trigger_price,
                            reduce_only=o.reduce_only, status=o.status)

    def _position(self, symbol: str, net: float, source: Source, received: float,
                  as_of: float | None) -> PositionSnapshot:
        side = None if net == 0 else (PositionSide.LONG if net > 0 else PositionSide.SHORT)
        return PositionSnapshot(symbol=symbol, side=side, size=abs(net), source=source,
                                received_at=received, as_of=as_of)


def _gateway_refusal(kind: str, fate: Fault, *, write: bool) -> TransientError:
    """A rate limit or a 503, refused before taking effect. A 503 does not
    tell the client that a write was not executed (Binance: "the execution
    status is UNKNOWN"); only the simulator knows, so a write's is ambiguous."""
    if fate is Fault.UNAVAILABLE and write:
        return AmbiguousError(f"{kind}: service unavailable")
    what = "rate limit exceeded" if fate is Fault.RATE_LIMIT else "service unavailable"
    return TransientError(f"{kind}: {what}", retry_after=0.1)


def _timed_out(kind: str, *, write: bool) -> TransientError:
    """A request that timed out: ambiguous for a write (it may have taken
    effect), plainly transient for a read."""
    if write:
        return AmbiguousError(f"{kind}: request timed out")
    return TransientError(f"{kind}: request timed out")


def _native(unified: str) -> str:
    """The exchange-id spelling of a unified symbol: ``AVL/USDT:USDT`` ->
    ``AVLUSDT`` (Bybit and Binance USDⓈ-M linear perpetuals)."""
    return unified.split(":")[0].replace("/", "")
