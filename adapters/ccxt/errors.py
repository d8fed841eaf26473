"""ccxt's exceptions, classified once for the engine.

See the error-mapping section of :mod:`adapters.ccxt.adapter`'s docstring:
a definitive refusal, an ambiguous write, a harmless transient read, or a
miss (:class:`~fsm.model.OrderNotFound`). The venue's own codes come from its
:class:`~adapters.ccxt.profiles.ExchangeProfile`.
"""

from __future__ import annotations

import json

import ccxt.async_support as ccxt_async

from adapters.ccxt.profiles import ExchangeProfile
from fsm import redact as _redact
from fsm.model import (
    AmbiguousError,
    ExchangeError,
    OrderNotFound,
    OrderRejected,
    TransientError,
)

__all__ = ["InvalidClientId", "error_code", "map_error"]

# ccxt error classes, grouped by what they tell the engine. Order matters in
# map_error: OrderNotFound and DuplicateOrderId subclass InvalidOrder, and
# every network error subclasses OperationFailed.
_DEFINITIVE: tuple[type[BaseException], ...] = (
    ccxt_async.InvalidOrder,
    ccxt_async.InsufficientFunds,
    ccxt_async.BadRequest,
    ccxt_async.OperationRejected,
    ccxt_async.ArgumentsRequired,
    ccxt_async.NotSupported,
    ccxt_async.AuthenticationError,
    ccxt_async.ExchangeClosedByUser,  # raised in fetch() before any send
)
_RATE_LIMIT: tuple[type[BaseException], ...] = (
    ccxt_async.RateLimitExceeded,
    ccxt_async.DDoSProtection,
)


class InvalidClientId(OrderRejected, ValueError):
    """The client order id breaks the exchange's rule (length, characters).
    Refused before anything is sent, so it is a definitive rejection."""


def error_code(exc: BaseException) -> str | None:
    """The exchange's own error code from a ccxt exception.

    ccxt's ``handle_errors`` raises with ``"<id> <response body>"`` as the
    message, so the code is recovered from the JSON body (Bybit ``retCode``,
    Binance ``code``, OKX ``code`` or ``data[0].sCode``). ``None`` when the
    exception carries no body (timeouts, local refusals)."""
    text = str(exc)
    start = text.find("{")
    if start < 0:
        return None
    try:
        body, _end = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    # OKX answers a refused order with code "1" ("Operation failed") and the
    # reason in data[0].sCode: the specific code says more.
    data = body.get("data")
    if isinstance(data, list) and data and isinstance(data[0], dict):
        scode = data[0].get("sCode")
        if scode is not None and str(scode) not in ("", "0"):
            return str(scode)
    for key in ("retCode", "ret_code", "code"):
        value = body.get(key)
        if value is not None and str(value) not in ("0", "200"):
            return str(value)
    return None


def map_error(
    exc: BaseException,
    profile: ExchangeProfile,
    *,
    venue: str,
    write: bool,
    what: str,
    create: bool = False,
) -> ExchangeError:
    """Classify a ccxt (or any) exception for the engine. ``venue`` names the
    exchange in the message; ``create`` marks order placement, where a
    duplicate client id means our order may already exist."""
    if isinstance(exc, ExchangeError):
        return exc
    code = error_code(exc)
    # ccxt quotes the request in timeout and HTTP-status errors: on
    # Binance that is the signed URL (``...&signature=...``). Neither our
    # error nor the ccxt one it chains to may carry it onwards.
    _redact.redact_exception(exc)
    msg = _redact.redact(f"{venue}: {what}: {type(exc).__name__}: {exc}")
    by_code = _by_code(exc, code, profile, msg, write=write, create=create)
    if by_code is not None:
        return by_code
    return _by_class(exc, profile, msg, write=write, create=create)


def _by_code(
    exc: BaseException, code: str | None, p: ExchangeProfile, msg: str, *, write: bool,
    create: bool,
) -> ExchangeError | None:
    """The classification the venue's own code decides, if any."""
    if code is None:
        return None
    transient_cls: type[TransientError] = AmbiguousError if write else TransientError
    if code in p.duplicate_client_id_codes and create:
        return AmbiguousError(msg + " (client id already used: the order may exist)", cause=exc)
    if code in p.ambiguous_codes:
        return transient_cls(msg, cause=exc)
    if code in p.refused_codes:
        # The exchange answered "not now" before executing anything.
        return TransientError(msg, retry_after=p.rate_limit_backoff, cause=exc)
    if code in p.not_found_codes:
        return OrderNotFound(msg, cause=exc)
    if code in p.definitive_codes:
        return OrderRejected(msg, cause=exc) if write else ExchangeError(msg, cause=exc)
    return None


def _by_class(
    exc: BaseException, p: ExchangeProfile, msg: str, *, write: bool, create: bool
) -> ExchangeError:
    """The classification ccxt's exception class decides."""
    transient_cls: type[TransientError] = AmbiguousError if write else TransientError
    if isinstance(exc, ccxt_async.OrderNotFound):
        return OrderNotFound(msg, cause=exc)
    if isinstance(exc, ccxt_async.DuplicateOrderId) and create:
        return AmbiguousError(msg + " (client id already used: the order may exist)", cause=exc)
    if isinstance(exc, _RATE_LIMIT):
        return transient_cls(msg, retry_after=p.rate_limit_backoff, cause=exc)
    if isinstance(exc, ccxt_async.OperationFailed):
        # NetworkError (RequestTimeout, ExchangeNotAvailable, InvalidNonce),
        # BadResponse, NullResponse, CancelPending.
        return transient_cls(msg, cause=exc)
    if isinstance(exc, _DEFINITIVE):
        return OrderRejected(msg, cause=exc) if write else ExchangeError(msg, cause=exc)
    # An ExchangeError ccxt could not classify, or a failure while parsing
    # the answer: for a write we cannot know whether it took effect.
    return transient_cls(msg, cause=exc)
