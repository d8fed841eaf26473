"""Per-exchange facts the ccxt adapter needs, kept as data.

ccxt unifies most of what the engine asks for, but not everything the engine
*relies on*: which endpoint still shows a filled order, how a stop-market is
expressed, which error codes mean "we do not know whether it happened", how
long a client order id may be. Each :class:`ExchangeProfile` records those
facts for one exchange so that the adapter's code stays exchange-neutral.

Every value here was checked against ccxt 4.5.x's Python source (the file and
function are named next to it) or the exchange's API documentation.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping

import attrs

__all__ = [
    "BINANCE_USDM",
    "BYBIT_LINEAR",
    "GENERIC",
    "OKX_SWAP",
    "AttachedStyle",
    "ExchangeProfile",
    "LookupStyle",
    "StopStyle",
    "profile_for",
]


class StopStyle(enum.Enum):
    """How a reduce-only stop-market is expressed through ``create_order``."""

    #: ``triggerPrice`` + explicit ``triggerDirection`` + ``reduceOnly``.
    #: Bybit v5 requires the direction for conditional orders
    #: (``bybit.create_order_request`` raises ArgumentsRequired without it);
    #: we set it ourselves rather than rely on ccxt deriving it from
    #: ``stopLossPrice``, so the request states exactly what we mean.
    TRIGGER_WITH_DIRECTION = "trigger_with_direction"
    #: ccxt's unified ``stopLossPrice`` + ``reduceOnly``. On binanceusdm this
    #: becomes ``type=STOP_MARKET`` on ``POST /fapi/v1/algoOrder``
    #: (``binance.create_order``: conditional swap orders go to the algo API).
    STOP_LOSS_PRICE = "stop_loss_price"


class AttachedStyle(enum.Enum):
    """How a stop-loss travels with a market entry, and how the armed stop
    is read back."""

    #: Bybit v5 linear: ``stopLoss`` (ccxt's unified ``params["stopLoss"]``)
    #: with ``tpslMode=Partial`` + ``slOrderType=Market``, set by the adapter:
    #: ccxt's ``bybit.create_order_request`` sets ``tpslMode`` only for a
    #: *limit* stop-loss, and Bybit's default is ``Full`` (a stop on the whole
    #: position, not this order's fill). Bybit arms a ``PartialStopLoss``
    #: conditional order for the filled quantity; it carries no client id of
    #: ours, so it is read back from the open conditional orders.
    BYBIT_PARTIAL = "bybit_partial"
    #: OKX: ``attachAlgoOrds`` with ``slTriggerPx`` and ``slOrdPx=-1``
    #: (ccxt's unified ``params["stopLoss"]``) and ``attachAlgoClOrdId``,
    #: which OKX gives the algo order as ``algoClOrdId`` once the entry
    #: fills: read back with ``GET /api/v5/trade/order-algo``; a failure to
    #: place it shows on the entry as ``attachAlgoOrds[].failCode``.
    OKX_ATTACH_ALGO = "okx_attach_algo"


class LookupStyle(enum.Enum):
    """How an order is found by exchange id or by our client id."""

    #: Bybit v5: ``/v5/order/realtime`` (open orders and, usually, the last
    #: 500 closed ones) then ``/v5/order/history`` (all terminal states), both
    #: filtered by ``orderId`` or ``orderLinkId``. Not ``fetch_order`` (it
    #: raises ArgumentsRequired unless ``acknowledged``) and not
    #: ``fetch_closed_order(s)`` (they add ``orderStatus=Filled`` and so never
    #: show a cancelled or rejected order).
    BYBIT_REALTIME_THEN_HISTORY = "bybit_realtime_then_history"
    #: ``fetch_order(id, symbol)`` or ``fetch_order(None, symbol,
    #: {client_id_lookup_param: client_id})``.
    FETCH_ORDER = "fetch_order"


@attrs.frozen
class ExchangeProfile:
    """What differs between exchanges, as data. See the module docstring."""

    name: str
    #: Key under which a client id is *looked up* (the create side always uses
    #: ccxt's unified ``clientOrderId``, which ccxt maps to ``orderLinkId`` /
    #: ``newClientOrderId`` / ``clientAlgoId`` / ``clOrdId``).
    client_id_lookup_param: str
    #: The exchange's own rule for client order ids; checked before sending.
    client_id_pattern: re.Pattern[str]
    client_id_max_len: int
    stop_style: StopStyle
    lookup_style: LookupStyle
    #: Stops live in a separate order book (Binance algo orders): fetch and
    #: cancel them with ``{"trigger": True}``.
    stops_need_trigger_flag: bool = False
    #: Extra params on every request (e.g. Bybit ``category``).
    common_params: Mapping[str, object] = attrs.field(factory=dict)
    #: Exchange error codes after which a write may or may not have happened.
    ambiguous_codes: frozenset[str] = frozenset()
    #: Codes meaning "an order with this client id already exists": for a
    #: create, the order we meant to place may exist, so it is ambiguous.
    duplicate_client_id_codes: frozenset[str] = frozenset()
    #: Codes with which the exchange's gateway refuses a request *before* it
    #: reaches the matching engine (rate limits, expired timestamps): a write
    #: answered with one of these was not executed and may be retried, so it
    #: is a plain TransientError, not an AmbiguousError.
    refused_codes: frozenset[str] = frozenset()
    #: Codes meaning "no such order" that ccxt does not map to OrderNotFound.
    not_found_codes: frozenset[str] = frozenset()
    #: Codes of a definitive refusal (nothing took effect) that ccxt leaves
    #: unclassified: without this, a write answered with one would be
    #: treated as ambiguous.
    definitive_codes: frozenset[str] = frozenset()
    #: ccxt exchange options set by the adapter *only when the caller left them
    #: unset*, to keep hidden requests off the critical path.
    default_options: Mapping[str, object] = attrs.field(factory=dict)
    #: Seconds to wait after a rate-limit answer, when the exchange gives no
    #: better hint.
    rate_limit_backoff: float = 1.0
    #: Page size for listing open stops (Bybit defaults to 20, allows 50).
    stops_page_limit: int | None = None
    #: ccxt's ``fetch_positions`` loads leverage brackets (one extra GET) on
    #: first use; :meth:`CcxtAdapter.prepare` does it ahead of time.
    warm_leverage_brackets: bool = False
    #: The venue's receive window in seconds (Bybit ``recv_window``, Binance
    #: ``recvWindow``): a request whose timestamp is older than this when it
    #: arrives is refused and never executed. The adapter sends it on every
    #: write; ``None`` where the venue has no such window.
    receive_window: float | None = None
    #: How the window reaches the wire. ``"option"``: ccxt reads
    #: ``options['recvWindow']`` while signing (Bybit v5 puts it in the
    #: ``X-BAPI-RECV-WINDOW`` header, ``bybit.sign``); the adapter sets that
    #: option before every write. ``"param"``: a ``recvWindow`` request
    #: parameter, which ``binance.sign`` signs into the query (it overrides
    #: ``options['recvWindow']``); the adapter sets it on every write.
    receive_window_via: str | None = None
    #: Seconds an accepted order may stay invisible to a look-up (the
    #: venue's visibility window). Conservative figures, see the profiles.
    lookup_lag: float = 2.0
    #: Most executions one ``fetch_my_trades`` page may return; a full page
    #: means "there may be more", and the adapter refuses to call it whole.
    fills_page_limit: int = 100
    #: Where the minimum order value sits in the market's raw ``info`` when
    #: ccxt leaves ``limits.cost.min`` empty (ccxt's bybit.parse_market
    #: does not map ``lotSizeFilter.minNotionalValue``).
    min_notional_info_path: tuple[str, ...] = ()
    #: Execution types that move the position (others, e.g. Bybit
    #: ``Funding``, are cash flows, not trades).
    fill_exec_types: frozenset[str] = frozenset()
    #: Keys of the venue's raw order (ccxt's ``info``) that carry the filled
    #: quantity, where ccxt's parser puts a default when they are absent;
    #: without one of them the adapter reports ``filled=None``.
    filled_info_keys: tuple[str, ...] = ()
    #: How a stop travels with the entry, or ``None`` where the venue arms
    #: no stop attached to a market entry (Binance USDⓈ-M).
    attached_style: AttachedStyle | None = None
    #: Extra params when listing open stops: OKX's pending-algo list wants
    #: ``ordType``, and ccxt asks ``ordType=trigger`` when given none, which
    #: never lists a stop-loss (those are ``conditional`` or ``oco``).
    stop_list_params: Mapping[str, object] = attrs.field(factory=dict)
    #: The key that carries our client id on a stop's create, when it is not
    #: ccxt's unified ``clientOrderId`` (OKX algo orders: ``algoClOrdId``;
    #: ccxt would put it in ``clOrdId``, which the algo endpoint ignores).
    stop_client_id_key: str = "clientOrderId"


_BYBIT_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_BINANCE_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_OKX_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_GENERIC_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,36}$")

#: Bybit v5, USDT/USDC linear contracts.
BYBIT_LINEAR = ExchangeProfile(
    name="bybit",
    client_id_lookup_param="orderLinkId",
    # Bybit docs (order/create-order): orderLinkId "max 36 characters;
    # numbers, letters (upper and lower case), dashes and underscores".
    client_id_pattern=_BYBIT_ID,
    client_id_max_len=36,
    stop_style=StopStyle.TRIGGER_WITH_DIRECTION,
    lookup_style=LookupStyle.BYBIT_REALTIME_THEN_HISTORY,
    common_params={"category": "linear"},
    # 10016 "System error, please try again later": ccxt maps it to a plain
    # ExchangeError (bybit.describe exceptions.exact), which says nothing
    # about whether the order went through. 10000 "Server timeout" is not
    # mapped at all. 170007 / 170146 are the backend-timeout codes.
    ambiguous_codes=frozenset({"10000", "10016", "170007", "170146"}),
    # 110072 "OrderLinkedID is duplicate" (ccxt: InvalidOrder).
    duplicate_client_id_codes=frozenset({"110072"}),
    # 10006 "Too many visits" (per-UID limit), 10018 "exceeded the IP rate
    # limit", 10002 "request expired / recv_window": gateway refusals.
    refused_codes=frozenset({"10002", "10006", "10018"}),
    not_found_codes=frozenset({"110001", "170213"}),
    # bybit.is_unified_enabled() runs GET /v5/user/query-api and GET
    # /v5/account/info on the first create_order / fetch_order /
    # cancel_orders / fetch_balance / private watch_* unless BOTH options are
    # set. Every new Bybit account is a Unified Trading Account, and for
    # linear orders ccxt uses the flag only to pick spot-market semantics, so
    # assuming UTA is safe; a classic-account user sets the options.
    default_options={"enableUnifiedMargin": False, "enableUnifiedAccount": True},
    stops_page_limit=50,
    # Bybit v5 (Integration Guidance, "Authentication"): the request is
    # accepted only if server_time - recv_window <= timestamp < server_time
    # + 1000; recv_window defaults to 5000 ms. ccxt signs it from
    # options['recvWindow'] into the X-BAPI-RECV-WINDOW header
    # (bybit.sign); a recvWindow *param* would only land in the body.
    receive_window=5.0,
    receive_window_via="option",
    # /v5/order/realtime shows an order as soon as it is accepted;
    # /v5/order/history "may be delayed" (Get Order History). 2 s is our
    # conservative bound, not a documented figure.
    lookup_lag=2.0,
    # GET /v5/execution/list: limit [1, 100] (Get Trade History).
    fills_page_limit=100,
    min_notional_info_path=("lotSizeFilter", "minNotionalValue"),
    # ccxt's bybit.fetch_my_trades asks for execType=Trade only.
    fill_exec_types=frozenset({"Trade"}),
    attached_style=AttachedStyle.BYBIT_PARTIAL,
)

#: Binance USDⓈ-M futures (ccxt id ``binanceusdm``).
BINANCE_USDM = ExchangeProfile(
    name="binanceusdm",
    client_id_lookup_param="origClientOrderId",
    # Binance futures docs (New Order): newClientOrderId must match
    # ^[\.A-Z\:/a-z0-9_-]{1,36}$.
    client_id_pattern=_BINANCE_ID,
    client_id_max_len=36,
    stop_style=StopStyle.STOP_LOSS_PRICE,
    lookup_style=LookupStyle.FETCH_ORDER,
    stops_need_trigger_flag=True,
    # -1007 "Timeout waiting for response from backend server. Send status
    # unknown; execution status unknown." and -1006 "unexpected response from
    # the message bus. Execution status unknown." (Binance error-code docs).
    ambiguous_codes=frozenset({"-1006", "-1007", "-1000", "-1001"}),
    # -4116 DUPLICATED_CLIENT_ORDER_ID (ccxt: InvalidOrder).
    duplicate_client_id_codes=frozenset({"-4116"}),
    # -1003 too many requests (HTTP 429), -1015 too many new orders, -1021
    # timestamp outside recvWindow: refused at the gateway.
    refused_codes=frozenset({"-1003", "-1015", "-1021"}),
    not_found_codes=frozenset({"-2011", "-2013"}),
    # binance.fetch_positions_risk -> load_leverage_brackets ->
    # GET /fapi/v1/leverageBracket, the first time only.
    warm_leverage_brackets=True,
    # Binance USDⓈ-M General Info, "Timing security": processed only if
    # timestamp < serverTime + 1000 and serverTime - timestamp <= recvWindow
    # (default 5000 ms, at most 60000), else -1021. ccxt's default option is
    # 10000 (binance.describe options.recvWindow); the adapter sends 5000
    # as a recvWindow parameter on every write (binance.sign signs it).
    receive_window=5.0,
    receive_window_via="param",
    # Query Order answers from the matching engine's order store; 1 s is our
    # conservative bound, not a documented figure.
    lookup_lag=1.0,
    # GET /fapi/v1/userTrades: limit default 500, max 1000.
    fills_page_limit=1000,
    # binance.parse_order: filled = safe_string_2(order, 'executedQty',
    # 'filledQty', '0'): an answer without them would read "filled 0".
    # The order stream's 'z' (pro binance.parse_ws_order) has no default.
    filled_info_keys=("executedQty", "filledQty", "z"),
)

#: OKX perpetual swaps (USDT-margined ``-SWAP`` instruments), one-way
#: ("net") position mode.
OKX_SWAP = ExchangeProfile(
    name="okx",
    client_id_lookup_param="clOrdId",
    # OKX docs (Place order): clOrdId "case-sensitive alphanumerics, all
    # numbers, or all letters of up to 32 characters". Unique only among
    # pending orders (like Binance's): never relied on as a safety net.
    client_id_pattern=_OKX_ID,
    client_id_max_len=32,
    stop_style=StopStyle.STOP_LOSS_PRICE,
    lookup_style=LookupStyle.FETCH_ORDER,
    stops_need_trigger_flag=True,
    # 50001 service temporarily unavailable, 50004 "Endpoint request timeout
    # (does not indicate success or failure of order, please check order
    # status)", 50013 systems busy (OKX error-code docs; ccxt okx.describe).
    ambiguous_codes=frozenset({"50001", "50004", "50013"}),
    # 51016 "Duplicated clOrdId".
    duplicate_client_id_codes=frozenset({"51016"}),
    # 50011 rate limit reached, 50102 timestamp request expired.
    refused_codes=frozenset({"50011", "50102"}),
    # 51603 "Order does not exist"; 51400/51401 cancel of an order that does
    # not exist / is already cancelled (ccxt maps all three to OrderNotFound).
    not_found_codes=frozenset({"51603", "51400", "51401"}),
    # 51169 "Order placement failed because you don't have any positions in
    # this direction for this contract to reduce or close" (a reduce-only
    # order on a flat position; ccxt 4.5 does not map it).
    definitive_codes=frozenset({"51169"}),
    # OKX's own deadline is the ``expTime`` request header, which ccxt 4.5's
    # okx.sign does not send: no receive window, so a lost request can never
    # be proven absent (the engine stays on its conservative path).
    receive_window=None,
    # GET /trade/order answers from the order store; 1 s is our conservative
    # bound, not a documented figure.
    lookup_lag=1.0,
    # GET /api/v5/trade/fills-history: limit max 100, default 100.
    fills_page_limit=100,
    attached_style=AttachedStyle.OKX_ATTACH_ALGO,
    # GET /api/v5/trade/orders-algo-pending: "conditional and oco both can be
    # used and separated with comma" (OKX docs, Get algo order list).
    stop_list_params={"ordType": "conditional,oco"},
    stop_client_id_key="algoClOrdId",
)

#: Any other ccxt exchange that supports market orders, reduceOnly and
#: stopLossPrice through the unified API.
GENERIC = ExchangeProfile(
    name="generic",
    client_id_lookup_param="clientOrderId",
    client_id_pattern=_GENERIC_ID,
    client_id_max_len=36,
    stop_style=StopStyle.STOP_LOSS_PRICE,
    lookup_style=LookupStyle.FETCH_ORDER,
)

_BY_ID: dict[str, ExchangeProfile] = {
    "bybit": BYBIT_LINEAR,
    "binanceusdm": BINANCE_USDM,
    "okx": OKX_SWAP,
}


def profile_for(exchange_id: str) -> ExchangeProfile:
    """The profile for a ccxt exchange id, or :data:`GENERIC`."""
    return _BY_ID.get(exchange_id, GENERIC)
