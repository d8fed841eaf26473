"""The production adapter: real exchanges through ``ccxt.async_support``.

The port methods live here; the rest of the package is pure: parsing ccxt
structures (:mod:`adapters.ccxt.parsing`), classifying errors
(:mod:`adapters.ccxt.errors`), the watch loop (:mod:`adapters.ccxt.stream`)
and the venues' facts (:mod:`adapters.ccxt.profiles`).

:class:`CcxtAdapter` implements :class:`fsm.port.ExchangePort` over a ccxt
async exchange that the caller built (keys, sandbox or demo mode, options are
the caller's). It never guesses: a field the exchange did not send is
``None``. Exchange differences live in :mod:`adapters.ccxt.profiles`.

What the adapter sets on the caller's exchange, and why
--------------------------------------------------------
The constructor does no I/O. It changes ccxt options only where ccxt would
otherwise make hidden requests on the critical path, and only when the caller
left the option unset:

* Bybit: ``enableUnifiedMargin=False`` and ``enableUnifiedAccount=True``.
  ccxt's ``bybit.is_unified_enabled()`` fires two extra GETs
  (``/v5/user/query-api`` and ``/v5/account/info``, gathered) the first time
  ``create_order``, ``fetch_order``, ``cancel_orders``, ``fetch_balance`` or a
  private ``watch_*`` runs, unless *both* options are set (or
  ``enableDemoTrading`` is on, which assumes UTA the same way). New Bybit
  accounts are all Unified Trading Accounts, and for linear contracts the flag
  only changes ccxt's spot-market handling. Holders of a classic account set
  both options themselves; the adapter then leaves them alone.

* The receive window (Bybit ``recv_window``, Binance ``recvWindow``) is the
  profile's, and it is put on the wire on every write, whatever the caller
  configured: on Bybit ccxt signs ``options['recvWindow']`` into the
  ``X-BAPI-RECV-WINDOW`` header (``bybit.sign``), so the adapter sets that
  option (at construction and again before each write); on Binance it sends
  a ``recvWindow`` parameter, which ``binance.sign`` signs into the query in
  preference to the option. The engine relies on that window to prove that
  a lost request can never execute (DESIGN rule 10), so it is not left to
  ccxt's defaults (Binance's is 10 s, not the profile's 5 s).

Per request, never as an option:

* Every write (entry, stop, close, cancel) carries ``maxRetriesOnFailure=0``:
  ccxt's ``fetch2`` would otherwise resend a POST blindly after a timeout if
  the caller configured retries, which for an order means possibly doubling
  the exposure. ``fetch2`` strips the key before signing, so the exchange
  never sees it.

Hidden requests the caller can move off the critical path with
:meth:`CcxtAdapter.prepare`: ``load_markets`` (every ccxt method loads markets
lazily on first use) and, on Binance, the leverage brackets that
``fetch_positions`` loads on first use (``GET /fapi/v1/leverageBracket``).

Error mapping (:func:`adapters.ccxt.errors.map_error`)
---------------------------------------------------
* writes: ``InvalidOrder``, ``InsufficientFunds``, ``BadRequest``,
  ``OperationRejected``, authentication errors and anything ccxt refuses
  locally → :class:`OrderRejected` (definitive: nothing took effect);
  timeouts, network errors, ``ExchangeNotAvailable``, ``DDoSProtection``,
  ``RateLimitExceeded``, ``BadResponse``, the profile's ambiguous codes (Bybit
  10016, Binance -1007) and any error we cannot classify →
  :class:`AmbiguousError` (the order may exist: look it up by client id);
  a duplicate-client-id refusal on create → :class:`AmbiguousError` too.
  Exception: a rate-limit or expired-timestamp refusal that carries the
  exchange's own code (Bybit 10006/10018/10002, Binance -1003/-1015/-1021)
  was refused at the gateway, before matching, so it is a plain
  :class:`TransientError` with ``retry_after``: nothing was placed.
* reads: the same transient classes → :class:`TransientError`; "no such
  order" → :class:`OrderNotFound`; request errors → :class:`ExchangeError`.
* ccxt's ``OrderNotFound`` (a subclass of ``InvalidOrder``) →
  :class:`OrderNotFound`, checked first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import ccxt.async_support as ccxt_async

from adapters.ccxt.errors import InvalidClientId, map_error
from adapters.ccxt.parsing import (
    ack_snapshot,
    client_id_in,
    grid_step,
    num,
    order_snapshot,
    order_time,
    seconds,
    side_of,
    signed_contracts,
    stop_snapshot,
)
from adapters.ccxt.profiles import (
    BINANCE_USDM,
    BYBIT_LINEAR,
    GENERIC,
    OKX_SWAP,
    AttachedStyle,
    ExchangeProfile,
    LookupStyle,
    StopStyle,
    profile_for,
)
from adapters.ccxt.stream import watch_forever
from fsm import redact as _redact
from fsm.model import (
    ExchangeError,
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
    UnknownSymbol,
)
from fsm.port import ExchangePort, PositionCache

__all__ = [
    "BINANCE_USDM",
    "BYBIT_LINEAR",
    "GENERIC",
    "OKX_SWAP",
    "CcxtAdapter",
    "ExchangeProfile",
    "InvalidClientId",
]

log = logging.getLogger("adapters.ccxt")  # the name users configure, whatever the module
# ccxt's errors quote the signed request; no log line of ours may carry it.
_redact.install(log)

class CcxtAdapter:
    """:class:`~adapters.port.ExchangePort` over a ``ccxt.async_support``
    exchange. See the module docstring for what it sets and why.

    ``exchange`` is any ccxt async exchange instance; a ``ccxt.pro`` instance
    additionally enables :meth:`start_stream`. ``profile`` defaults to the one
    matching ``exchange.id`` (:func:`adapters.ccxt.profiles.profile_for`).
    """

    def __init__(
        self,
        exchange: Any,
        *,
        profile: ExchangeProfile | None = None,
        apply_profile_options: bool = True,
    ) -> None:
        self._exchange = exchange
        self._profile = profile if profile is not None else profile_for(str(exchange.id))
        #: Options this adapter set on the exchange (for logs and audits).
        self.applied_options: dict[str, object] = {}
        if apply_profile_options:
            self._apply_default_options()
        self._cache: PositionCache | None = None
        self._stream_tasks: list[asyncio.Task[None]] = []
        #: Errors seen by the stream loops, newest last (bounded).
        self.stream_errors: list[BaseException] = []
        #: exchange time of entries whose attached stop is being read back
        self._entry_times: dict[str, float] = {}

    # ------------------------------------------------------------------
    # identity and setup
    # ------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The ccxt exchange id (``"bybit"``, ``"binanceusdm"``)."""
        return str(self._exchange.id)

    @property
    def account_id(self) -> str:
        """The account label leases and the journal use: the exchange id plus
        a hash of the API key (never the key), so processes trading one
        account agree on it and a journal can serve several accounts."""
        from fsm.lease import api_key_account

        key = getattr(self._exchange, "apiKey", None)
        return api_key_account(str(self._exchange.id), key if isinstance(key, str) else None)

    @property
    def profile(self) -> ExchangeProfile:
        """The venue's facts this adapter follows."""
        return self._profile

    @property
    def exchange(self) -> Any:
        """The wrapped ccxt exchange (the caller's object)."""
        return self._exchange

    @property
    def position_cache(self) -> PositionCache | None:
        """The stream-fed cache once :meth:`start_stream` has run, else
        ``None`` (an unfed cache would only make the engine wait)."""
        return self._cache

    @property
    def receive_window(self) -> float | None:
        """The profile's receive window, in seconds; sent on every write."""
        return self._profile.receive_window

    @property
    def lookup_lag(self) -> float:
        """The profile's visibility window for :meth:`fetch_order`, in seconds."""
        return self._profile.lookup_lag

    def _receive_window_ms(self) -> int | None:
        window = self._profile.receive_window
        return None if window is None else round(window * 1000)

    def _stamp_receive_window(self, params: dict[str, object]) -> None:
        """Put the profile's receive window on this write (see the module
        docstring for how each venue carries it)."""
        ms = self._receive_window_ms()
        if ms is None:
            return
        if self._profile.receive_window_via == "param":
            params["recvWindow"] = ms
        elif self._profile.receive_window_via == "option":
            # Read by ccxt's sign() synchronously within the same request;
            # re-set each time in case the caller changed it meanwhile.
            self._exchange.options["recvWindow"] = ms

    def _apply_default_options(self) -> None:
        options = self._exchange.options
        ms = self._receive_window_ms()
        if ms is not None and self._profile.receive_window_via == "option":
            options["recvWindow"] = ms
            self.applied_options["recvWindow"] = ms
        defaults = self._profile.default_options
        if not defaults:
            return
        # All-or-nothing: Bybit probes unless *both* flags are set, and a
        # caller who set one of them has an opinion we must not half-override.
        if any(options.get(key) is not None for key in defaults):
            return
        for key, value in defaults.items():
            options[key] = value
            self.applied_options[key] = value

    async def prepare(self) -> None:
        """Do, ahead of time, the requests ccxt would otherwise make lazily on
        the first order: load markets and (Binance) leverage brackets."""
        try:
            await self._exchange.load_markets()
            if self._profile.warm_leverage_brackets and hasattr(
                self._exchange, "load_leverage_brackets"
            ):
                await self._exchange.load_leverage_brackets()
        except Exception as exc:
            raise self._map_error(exc, write=False, what="prepare") from exc

    # ------------------------------------------------------------------
    # writes
    # ------------------------------------------------------------------

    def _check_client_id(self, client_id: str) -> None:
        p = self._profile
        if not isinstance(client_id, str) or not client_id:
            raise InvalidClientId(f"{self.name}: a client order id is required")
        if len(client_id) > p.client_id_max_len:
            raise InvalidClientId(
                f"{self.name}: client order id {client_id!r} is {len(client_id)} characters;"
                f" the limit is {p.client_id_max_len}. Nothing was sent."
            )
        if not p.client_id_pattern.fullmatch(client_id):
            raise InvalidClientId(
                f"{self.name}: client order id {client_id!r} does not match"
                f" {p.client_id_pattern.pattern}. Nothing was sent."
            )

    def _write_params(self, client_id: str) -> dict[str, object]:
        params: dict[str, object] = dict(self._profile.common_params)
        params["clientOrderId"] = client_id
        # Never let ccxt resend an order on its own (see module docstring).
        params["maxRetriesOnFailure"] = 0
        self._stamp_receive_window(params)
        return params

    async def create_order(
        self, *, symbol: str, side: Side, amount: float, client_id: str, reduce_only: bool
    ) -> OrderSnapshot:
        """Send a market order (see :meth:`fsm.port.ExchangePort.create_order`)."""
        self._check_client_id(client_id)
        params = self._write_params(client_id)
        if reduce_only:
            params["reduceOnly"] = True
        what = f"create {side.value} {amount} {symbol} ({client_id})"
        raw = await self._send_market(symbol, side, amount, params, what)
        return ack_snapshot(raw, symbol, self._profile.filled_info_keys)


    # -- stops attached to the entry (adapters.port.AttachedStopPort) ---------------

    @property
    def attached_stops(self) -> bool:
        """The profile's venue arms a stop sent with a market entry."""
        return self._profile.attached_style is not None

    async def create_order_with_stop(
        self, *, symbol: str, side: Side, amount: float, client_id: str,
        stop_price: float, stop_client_id: str,
    ) -> OrderSnapshot:
        """A market entry with a reduce-only stop-market attached, for this
        order's fill only (see :class:`~adapters.ccxt.profiles.AttachedStyle`)."""
        style = self._profile.attached_style
        if style is None:
            raise OrderRejected(f"{self.name}: no stop can be attached to a market entry here. "
                                "Nothing was sent.")
        self._check_client_id(client_id)
        self._check_client_id(stop_client_id)
        params = self._write_params(client_id)
        stop: dict[str, object] = {"triggerPrice": stop_price}
        if style is AttachedStyle.BYBIT_PARTIAL:
            params["tpslMode"] = "Partial"
            params["slOrderType"] = "Market"
            params["slTriggerBy"] = "LastPrice"
        else:
            stop["type"] = "market"  # slOrdPx=-1
        params["stopLoss"] = stop
        what = (f"create {side.value} {amount} {symbol} ({client_id}) with stop @ "
                f"{stop_price} attached")
        if style is AttachedStyle.OKX_ATTACH_ALGO:
            # ccxt builds attachAlgoOrds from params["stopLoss"] and copies no
            # client id into it: send the list ourselves, as ccxt would, plus
            # attachAlgoClOrdId (OKX docs, Place order).
            market = self._resolve_market(symbol)
            params.pop("stopLoss")
            params["attachAlgoOrds"] = [{
                "attachAlgoClOrdId": stop_client_id,
                "slTriggerPx": self._exchange.price_to_precision(market["symbol"], stop_price),
                "slOrdPx": "-1",
                "slTriggerPxType": "last",
            }]
        raw = await self._send_market(symbol, side, amount, params, what)
        return ack_snapshot(raw, symbol, self._profile.filled_info_keys)

    async def fetch_attached_stop(
        self, *, symbol: str, order_id: str | None, client_id: str | None,
        stop_client_id: str,
    ) -> StopSnapshot | None:
        """The stop the venue armed for the entry, from the venue's own
        fields; ``None`` while it shows none."""
        style = self._profile.attached_style
        what = f"fetch the stop attached to {order_id or client_id} on {symbol}"
        try:
            if style is AttachedStyle.OKX_ATTACH_ALGO:
                return await self._attached_okx(symbol, order_id, client_id, stop_client_id)
            if style is AttachedStyle.BYBIT_PARTIAL:
                return await self._attached_bybit(symbol, order_id, client_id)
        except ExchangeError:
            raise
        except Exception as exc:
            raise self._map_error(exc, write=False, what=what) from exc
        return None

    async def _attached_okx(self, symbol: str, order_id: str | None, client_id: str | None,
                            stop_client_id: str) -> StopSnapshot | None:
        # 1. The algo order OKX placed from the attachment, by algoClOrdId
        #    (GET /api/v5/trade/order-algo).
        params: dict[str, object] = {"trigger": True, "clientOrderId": stop_client_id}
        try:
            raw = await self._exchange.fetch_order(None, symbol, params)
        except ccxt_async.OrderNotFound:
            raw = None
        if raw is not None:
            info = raw.get("info") if isinstance(raw.get("info"), Mapping) else {}
            if info.get("algoClOrdId") == stop_client_id:
                return stop_snapshot(raw, symbol)
        # 2. Not placed (yet): the entry says whether placing it failed
        #    (attachAlgoOrds[].failCode, e.g. the price crossed the trigger).
        if order_id is None and client_id is None:
            return None
        entry_params: dict[str, object] = {}
        if order_id is None:
            entry_params["clOrdId"] = client_id
        try:
            entry = await self._exchange.fetch_order(order_id, symbol, entry_params)
        except ccxt_async.OrderNotFound:
            return None
        info = entry.get("info") if isinstance(entry.get("info"), Mapping) else {}
        for att in info.get("attachAlgoOrds") or []:
            if not isinstance(att, Mapping) or att.get("attachAlgoClOrdId") != stop_client_id:
                continue
            if att.get("failCode") not in (None, "", "0"):
                return StopSnapshot(
                    symbol=symbol, order_id=None, client_id=stop_client_id, side=None,
                    amount=None, trigger_price=num(att.get("slTriggerPx")), reduce_only=None,
                    status=OrderStatus.REJECTED)
        return None

    async def _attached_bybit(self, symbol: str, order_id: str | None,
                              client_id: str | None) -> StopSnapshot | None:
        # The PartialStopLoss conditional order Bybit arms at the fill
        # carries no client id and names no parent: it is the one open
        # partial stop-loss order on the symbol created at or after the
        # entry. Two candidates are ambiguous: report none (the engine then
        # falls back to a stop of its own, after cancelling nothing).
        key = order_id or client_id
        since = self._entry_times.get(key) if key is not None else None
        if since is None:
            entry = await self.fetch_order(symbol=symbol, order_id=order_id,
                                           client_id=client_id)
            since = entry.timestamp
            if since is None or key is None:
                return None
            self._entry_times[key] = since
        # No orderFilter: for a unified account /v5/order/realtime then lists
        # every kind of open order (Bybit docs, Get Open & Closed Orders),
        # TP/SL orders included, whatever family Bybit files them under.
        raws = await self._exchange.fetch_open_orders(
            symbol, None, self._profile.stops_page_limit, dict(self._profile.common_params))
        found = []
        for raw in raws:
            info = raw.get("info") if isinstance(raw.get("info"), Mapping) else {}
            if info.get("stopOrderType") != "PartialStopLoss":
                continue
            created = order_time(raw)
            if created is None or created < since:
                continue
            found.append(raw)
        if len(found) != 1:
            return None
        return stop_snapshot(found[0], symbol)

    async def _send_market(
        self, symbol: str, side: Side, amount: float, params: dict[str, object], what: str
    ) -> Any:
        """One market (or stop-market) create, its errors mapped as a write's:
        the single place an order leaves this adapter."""
        try:
            return await self._exchange.create_order(
                symbol, "market", side.value, amount, None, params
            )
        except Exception as exc:
            raise self._map_error(exc, write=True, what=what, create=True) from exc

    async def place_stop(
        self,
        *,
        symbol: str,
        side: Side,
        amount: float,
        trigger_price: float,
        client_id: str,
    ) -> StopSnapshot:
        """Place a reduce-only stop-market in the profile's style (see
        :meth:`fsm.port.ExchangePort.place_stop`)."""
        self._check_client_id(client_id)
        params = self._write_params(client_id)
        if self._profile.stop_client_id_key != "clientOrderId":
            params[self._profile.stop_client_id_key] = params.pop("clientOrderId")
        params["reduceOnly"] = True
        if self._profile.stop_style is StopStyle.TRIGGER_WITH_DIRECTION:
            # A stop-loss for a long is a sell that fires when the price
            # FALLS to the trigger; for a short, a buy when it RISES.
            params["triggerPrice"] = trigger_price
            params["triggerDirection"] = "descending" if side is Side.SELL else "ascending"
        else:
            params["stopLossPrice"] = trigger_price
        what = f"stop {side.value} {amount} {symbol} @ {trigger_price} ({client_id})"
        raw = await self._send_market(symbol, side, amount, params, what)
        snap = stop_snapshot(raw, symbol)
        if snap.client_id is None and isinstance(raw.get("info"), Mapping) \
                and raw["info"].get(self._profile.stop_client_id_key) == client_id:
            snap = attrs.evolve(snap, client_id=client_id)
        return snap

    async def cancel_order(
        self, *, symbol: str, order_id: str | None, client_id: str | None
    ) -> None:
        """Cancel an order (a stop) by id or client id; a write, never retried."""
        if order_id is None and client_id is None:
            raise ValueError("cancel_order needs order_id or client_id")
        params: dict[str, object] = dict(self._profile.common_params)
        params["maxRetriesOnFailure"] = 0
        self._stamp_receive_window(params)
        if self._profile.stops_need_trigger_flag:
            params["trigger"] = True
        if order_id is None and client_id is not None:
            params[self._cancel_client_id_param()] = client_id
        what = f"cancel {order_id or client_id} on {symbol}"
        try:
            await self._exchange.cancel_order(order_id, symbol, params)
        except Exception as exc:
            raise self._map_error(exc, write=True, what=what) from exc

    def _cancel_client_id_param(self) -> str:
        # ccxt's cancel_order takes the same key as the lookup, except that
        # Binance algo orders are addressed by clientAlgoId (ccxt maps
        # clientOrderId to it when trigger=True).
        if self._profile.stops_need_trigger_flag:
            return "clientOrderId"
        return self._profile.client_id_lookup_param

    # ------------------------------------------------------------------
    # reads
    # ------------------------------------------------------------------

    async def fetch_order(
        self, *, symbol: str, order_id: str | None, client_id: str | None
    ) -> OrderSnapshot:
        """Look an order up: a terminal state the order stream already reported,
        else REST in the profile's lookup style."""
        if order_id is None and client_id is None:
            raise ValueError("fetch_order needs order_id or client_id")
        streamed = self._streamed_terminal(order_id, client_id)
        if streamed is not None:
            # The private order stream already reported this order's end:
            # an exchange fact, newer than anything REST can tell us.
            return streamed
        what = f"fetch order {order_id or client_id} on {symbol}"
        try:
            if self._profile.lookup_style is LookupStyle.BYBIT_REALTIME_THEN_HISTORY:
                return await self._fetch_order_bybit(symbol, order_id, client_id)
            return await self._fetch_order_generic(symbol, order_id, client_id)
        except ExchangeError:
            raise
        except Exception as exc:
            raise self._map_error(exc, write=False, what=what) from exc

    async def _fetch_order_bybit(
        self, symbol: str, order_id: str | None, client_id: str | None
    ) -> OrderSnapshot:
        params: dict[str, object] = dict(self._profile.common_params)
        if order_id is not None:
            params["orderId"] = order_id
        else:
            params["orderLinkId"] = client_id
        # 1. /v5/order/realtime: open orders, and usually the latest 500
        #    closed ones ("after a server release or restart, filled,
        #    cancelled and rejected orders ... only through order history").
        found = self._match(
            await self._exchange.fetch_open_orders(symbol, None, None, dict(params)),
            symbol,
            order_id,
            client_id,
        )
        if found is not None:
            return found
        # 2. /v5/order/history with no orderStatus: every terminal state.
        #    (fetch_closed_orders would add orderStatus=Filled and miss a
        #    cancelled or rejected entry, which is proof of no exposure.)
        found = self._match(
            await self._exchange.fetch_canceled_and_closed_orders(symbol, None, None, dict(params)),
            symbol,
            order_id,
            client_id,
        )
        if found is not None:
            return found
        raise OrderNotFound(
            f"{self.name}: order {order_id or client_id} not in /v5/order/realtime"
            f" nor /v5/order/history (yet)"
        )

    async def _fetch_order_generic(
        self, symbol: str, order_id: str | None, client_id: str | None
    ) -> OrderSnapshot:
        params: dict[str, object] = dict(self._profile.common_params)
        if order_id is None:
            params[self._profile.client_id_lookup_param] = client_id
        raw = await self._exchange.fetch_order(order_id, symbol, params)
        found = self._match([raw], symbol, order_id, client_id)
        if found is None:
            # The exchange answered with an order that is not the one we
            # asked about: treat as not (yet) visible, never as ours.
            raise OrderNotFound(
                f"{self.name}: lookup of {order_id or client_id} returned another order"
            )
        return found

    def _match(
        self,
        raws: Sequence[Mapping[str, Any]],
        symbol: str,
        order_id: str | None,
        client_id: str | None,
    ) -> OrderSnapshot | None:
        for raw in raws:
            if order_id is not None and str(raw.get("id")) != order_id:
                continue
            if order_id is None and raw.get("clientOrderId") != client_id:
                continue
            if raw.get("symbol") not in (None, symbol):
                continue
            return order_snapshot(raw, symbol, self._profile.filled_info_keys)
        return None

    async def market(self, symbol: str) -> Market:
        """The market for ``symbol``, unified (``"AVL/USDT:USDT"``) or the
        exchange's id (``"AVLUSDT"``). An id that names several markets
        (Bybit's ``BTCUSDT`` is both the spot pair and the linear perpetual)
        resolves to the perpetual swap, then any contract: this adapter
        trades futures. Loads markets if ccxt has not yet."""
        try:
            await self._exchange.load_markets()
        except Exception as exc:
            raise self._map_error(exc, write=False, what="load markets") from exc
        raw = self._resolve_market(symbol)
        mode = getattr(self._exchange, "precisionMode", None)
        precision = raw.get("precision") or {}
        limits = raw.get("limits") or {}
        min_notional = num((limits.get("cost") or {}).get("min"))
        if not min_notional and self._profile.min_notional_info_path:
            node: Any = raw.get("info")
            for key in self._profile.min_notional_info_path:
                node = node.get(key) if isinstance(node, Mapping) else None
            min_notional = num(node)
        native = raw.get("id")
        return Market(
            symbol=str(raw["symbol"]),
            native_id=None if native is None else str(native),
            price_step=grid_step(precision.get("price"), mode),
            amount_step=grid_step(precision.get("amount"), mode),
            min_amount=num((limits.get("amount") or {}).get("min")) or None,
            min_notional=min_notional or None,
        )

    def _resolve_market(self, symbol: str) -> Mapping[str, Any]:
        markets: Mapping[str, Any] = self._exchange.markets or {}
        if isinstance(symbol, str) and symbol in markets:
            return markets[symbol]  # type: ignore[no-any-return]
        by_id: Mapping[str, Any] = getattr(self._exchange, "markets_by_id", None) or {}
        candidates = list(by_id.get(symbol) or []) if isinstance(symbol, str) else []
        for wanted in ("swap", "contract"):
            for m in candidates:
                if m.get(wanted) is True:
                    return m  # type: ignore[no-any-return]
        try:
            return self._exchange.market(symbol)  # type: ignore[no-any-return]
        except ccxt_async.BadSymbol as exc:
            raise UnknownSymbol(
                f"{self.name}: no market {symbol!r} (neither a unified symbol nor an exchange id)",
                cause=exc,
            ) from exc
        except Exception as exc:
            raise self._map_error(exc, write=False, what=f"market {symbol}") from exc

    async def fetch_fills(self, symbol: str, since: float | None) -> list[Fill]:
        """Every execution on ``symbol`` at or after exchange time ``since``
        (seconds): ``fetch_my_trades`` (Bybit ``GET /v5/execution/list``,
        Binance ``GET /fapi/v1/userTrades``), everyone's orders included.

        One page of the venue's largest size is asked for; a full page may
        hide more, so it raises :class:`ExchangeError` rather than return
        a list that might be partial. Without ``since`` the venue's default
        window applies (both: the last 7 days)."""
        market = await self.market(symbol)
        limit = self._profile.fills_page_limit
        since_ms = None if since is None else math.floor(since * 1000)
        what = f"fetch fills on {market.symbol}"
        try:
            raws = await self._exchange.fetch_my_trades(
                market.symbol, since_ms, limit, dict(self._profile.common_params)
            )
        except Exception as exc:
            raise self._map_error(exc, write=False, what=what) from exc
        if len(raws) >= limit:
            raise ExchangeError(
                f"{self.name}: {what}: {len(raws)} executions fill a whole page;"
                " there may be more, and a partial list is never reported as whole"
            )
        fills: list[Fill] = []
        for raw in raws:
            info = raw.get("info") or {}
            exec_type = info.get("execType") if isinstance(info, Mapping) else None
            if (
                exec_type is not None
                and self._profile.fill_exec_types
                and exec_type not in self._profile.fill_exec_types
            ):
                continue
            if raw.get("symbol") not in (None, market.symbol):
                continue
            amount = num(raw.get("amount"))
            if amount is None:
                raise ExchangeError(f"{self.name}: {what}: an execution without amount: {raw!r}")
            stamp = seconds(raw.get("timestamp"))
            if since is not None and stamp is not None and stamp < since:
                continue
            order = raw.get("order")
            client = client_id_in(info)
            fills.append(
                Fill(
                    symbol=market.symbol,
                    order_id=None if order is None else str(order),
                    client_id=client,
                    side=Side.parse(raw.get("side")),
                    amount=amount,
                    timestamp=stamp,
                )
            )
        fills.sort(key=lambda f: (f.timestamp is None, f.timestamp or 0.0))
        return fills

    async def _raw_positions(self, wanted: list[str] | None) -> list[Mapping[str, Any]]:
        # Bybit refuses more than one symbol per call (ArgumentsRequired);
        # asking for all and filtering here works everywhere.
        arg = wanted if wanted is not None and len(wanted) == 1 else None
        try:
            raws = await self._exchange.fetch_positions(arg, dict(self._profile.common_params))
        except Exception as exc:
            raise self._map_error(exc, write=False, what="fetch positions") from exc
        return [r for r in raws if isinstance(r.get("symbol"), str)
                and (wanted is None or r["symbol"] in wanted)]

    async def fetch_position_legs(
        self, symbols: Sequence[str] | None = None
    ) -> list[PositionSnapshot]:
        """Every open position *leg*, not netted: for the reconciliation
        monitor. In hedge mode (Binance ``positionSide`` LONG/SHORT, Bybit
        ``positionIdx`` 1/2) one symbol can be long 10 and short 10 at once;
        :meth:`fetch_positions` nets that to flat, but each leg is an
        exposure that needs its own stop. A one-way account gets the same
        answer as :meth:`fetch_positions`. An open leg whose side cannot be
        told is an error, never skipped: the monitor must not call it flat."""
        wanted = list(symbols) if symbols is not None else None
        raws = await self._raw_positions(wanted)
        now = asyncio.get_running_loop().time()
        legs: dict[tuple[str, PositionSide], float] = {}
        for raw in raws:
            size = num(raw.get("contracts"))
            if not size:
                continue
            info: Mapping[str, Any] = raw["info"] if isinstance(raw.get("info"), Mapping) else {}
            side = PositionSide.parse(raw.get("side")) or PositionSide.parse(
                {"1": "long", "2": "short"}.get(str(info.get("positionIdx")),
                                                info.get("positionSide")))
            if side is None:
                raise ExchangeError(f"{self.name}: a {raw['symbol']} position of {size:g} "
                                    "reports no side")
            key = (str(raw["symbol"]), side)
            legs[key] = legs.get(key, 0.0) + size
        return [PositionSnapshot(symbol=sym, side=side, size=size, source=Source.REST,
                                 received_at=now, as_of=None)
                for (sym, side), size in legs.items()]

    async def fetch_positions(self, symbols: Sequence[str] | None = None) -> list[PositionSnapshot]:
        """REST positions, netted per symbol (see
        :meth:`fsm.port.ExchangePort.fetch_positions`)."""
        wanted = list(symbols) if symbols is not None else None
        raws = await self._raw_positions(wanted)
        now = asyncio.get_running_loop().time()
        # Net per symbol (one-way mode has one entry per symbol; netting keeps
        # the port's meaning if an exchange splits it).
        net: dict[str, float] = {}
        for raw in raws:
            sym = str(raw["symbol"])
            signed = signed_contracts(raw)
            if signed is None:
                continue
            net[sym] = net.get(sym, 0.0) + signed
        out: list[PositionSnapshot] = []
        for sym, signed in net.items():
            out.append(
                PositionSnapshot(
                    symbol=sym,
                    side=side_of(signed),
                    size=abs(signed),
                    source=Source.REST,
                    received_at=now,
                    # A REST position carries the time of its last change,
                    # not of the view: the view's age is unknown.
                    as_of=None,
                )
            )
        return out

    async def fetch_price(self, symbol: str) -> float | None:
        """Last traded price (what Bybit's default ``triggerBy=LastPrice`` and
        Binance's ``workingType=CONTRACT_PRICE`` stops trigger on), else the
        mark price; ``None`` when the ticker has neither."""
        try:
            ticker = await self._exchange.fetch_ticker(symbol, dict(self._profile.common_params))
        except Exception as exc:
            raise self._map_error(exc, write=False, what=f"fetch price of {symbol}") from exc
        for key in ("last", "close", "markPrice"):
            price = num(ticker.get(key))
            if price:
                return price
        return None

    async def fetch_stops(self, symbol: str | None = None) -> list[StopSnapshot]:
        """Open conditional orders (stops), for one symbol or all."""
        params: dict[str, object] = dict(self._profile.common_params)
        if self._profile.stops_need_trigger_flag or (
            self._profile.stop_style is StopStyle.TRIGGER_WITH_DIRECTION
        ):
            # Bybit: orderFilter=StopOrder; Binance: /fapi/v1/openAlgoOrders;
            # OKX: orders-algo-pending, with the profile's ordType.
            params["trigger"] = True
            params.update(self._profile.stop_list_params)
        try:
            raws = await self._exchange.fetch_open_orders(
                symbol, None, self._profile.stops_page_limit, params
            )
        except Exception as exc:
            raise self._map_error(exc, write=False, what="fetch stops") from exc
        stops: list[StopSnapshot] = []
        for raw in raws:
            snap = stop_snapshot(raw, symbol)
            if snap.trigger_price is None:
                continue  # not a conditional order
            stops.append(snap)
        return stops

    # ------------------------------------------------------------------
    # the optional stream (ccxt pro)
    # ------------------------------------------------------------------

    @property
    def streaming(self) -> bool:
        """Whether a stream task is still running."""
        return any(not t.done() for t in self._stream_tasks)

    def supports_stream(self) -> bool:
        """Whether the exchange object can ``watch_positions`` (ccxt pro)."""
        has = getattr(self._exchange, "has", {}) or {}
        return bool(has.get("watchPositions")) and hasattr(self._exchange, "watch_positions")

    def start_stream(self, symbols: Sequence[str] | None = None) -> PositionCache:
        """Run ``watch_positions`` (and ``watch_orders`` when available) in
        background tasks that feed :attr:`position_cache`. Must be called
        from a running event loop. Returns the cache.

        Sets ``options['watchPositions']['fetchPositionsSnapshot'] = False``:
        otherwise ccxt pro's first ``watch_positions`` result is a REST
        snapshot, which can lag the truth by seconds (the incident) and must
        never be reported with ``source=STREAM``."""
        if not self.supports_stream():
            raise ExchangeError(f"{self.name}: this exchange object has no watch_positions")
        if self.streaming:
            assert self._cache is not None
            return self._cache
        watch_opts = self._exchange.options.setdefault("watchPositions", {})
        watch_opts["fetchPositionsSnapshot"] = False
        if self._cache is None:
            self._cache = PositionCache()
        syms = list(symbols) if symbols is not None else None
        self._stream_tasks = [asyncio.create_task(watch_forever(
            lambda: self._exchange.watch_positions(syms), self.feed_positions,
            self._note_stream_error))]
        has = getattr(self._exchange, "has", {}) or {}
        if has.get("watchOrders") and hasattr(self._exchange, "watch_orders"):
            self._stream_tasks.append(asyncio.create_task(watch_forever(
                self._exchange.watch_orders, self.feed_orders, self._note_stream_error)))
        return self._cache

    async def stop_stream(self) -> None:
        """Cancel the stream tasks and wait for them to end."""
        tasks, self._stream_tasks = self._stream_tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    def _note_stream_error(self, exc: BaseException) -> None:
        log.warning("%s stream error: %r", self.name, _redact.redact_exception(exc))
        self.stream_errors.append(exc)
        del self.stream_errors[:-20]

    def feed_positions(self, raws: Sequence[Mapping[str, Any]]) -> None:
        """Turn streamed ccxt positions into STREAM snapshots in the cache.
        Public so a caller running its own ``watch_positions`` loop can feed
        the same cache."""
        if self._cache is None:
            self._cache = PositionCache()
        now = asyncio.get_running_loop().time()
        for raw in raws:
            sym = raw.get("symbol")
            if not isinstance(sym, str):
                continue
            if raw.get("hedged") is True and (num(raw.get("contracts")) or 0) > 0:
                # One leg of a hedge-mode position is not the net position
                # the port describes; say nothing rather than mislead.
                continue
            signed = signed_contracts(raw)
            if signed is None:
                continue
            stamp = raw.get("lastUpdateTimestamp")
            if stamp is None:
                stamp = raw.get("timestamp")
            as_of = seconds(stamp)
            held = self._cache.latest(sym)
            if held is not None and held.as_of is not None and as_of is not None \
                    and as_of < held.as_of:
                continue  # an out-of-order push never replaces a newer view
            self._cache.update(
                PositionSnapshot(
                    symbol=sym,
                    side=side_of(signed),
                    size=abs(signed),
                    source=Source.STREAM,
                    received_at=now,
                    as_of=as_of,
                )
            )

    def feed_orders(self, raws: Sequence[Mapping[str, Any]]) -> None:
        """Record streamed order states in the cache (by client id and id);
        a terminal one also answers :meth:`fetch_order` without REST."""
        if self._cache is None:
            self._cache = PositionCache()
        for raw in raws:
            sym = raw.get("symbol")
            if not isinstance(sym, str):
                continue
            self._cache.update_order(order_snapshot(raw, sym, self._profile.filled_info_keys))

    def _streamed_terminal(
        self, order_id: str | None, client_id: str | None
    ) -> OrderSnapshot | None:
        if self._cache is None:
            return None
        key = order_id if order_id is not None else client_id
        snap = self._cache.latest_order(key) if key is not None else None
        if snap is not None and snap.terminal and snap.filled is not None:
            return snap
        return None

    # ------------------------------------------------------------------
    # errors
    # ------------------------------------------------------------------

    def _map_error(
        self, exc: BaseException, *, write: bool, what: str, create: bool = False
    ) -> ExchangeError:
        """Classify an exception for the engine (:func:`adapters.ccxt.errors.map_error`)."""
        return map_error(exc, self._profile, venue=self.name, write=write, what=what,
                         create=create)

if TYPE_CHECKING:
    # Static proof that the adapter satisfies the port (mypy --strict).
    def _conforms(adapter: CcxtAdapter) -> ExchangePort:
        return adapter
