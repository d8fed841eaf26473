"""What a bot asks for: one validated, immutable request to open a position.

Bad input is refused here, at construction, before anything can be sent.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import attrs

from fsm.model import Market, PositionSnapshot, Side

__all__ = ["BadRequest", "OpenRequest", "OppositePosition", "fit_to_market"]


class BadRequest(ValueError):
    """The request cannot be sent as asked. Nothing was sent."""


class OppositePosition(BadRequest):
    """The account already holds a position on the side opposite to the
    request. Opening would net against exposure that is not the attempt's
    (rule 9), so nothing was sent. Close or flip it deliberately first."""

    def __init__(self, message: str, position: PositionSnapshot) -> None:
        super().__init__(message)
        self.position = position


def _side(value: object) -> Side:
    side = Side.parse(value)
    if side is None:
        raise BadRequest(f"side must be 'buy' or 'sell', got {value!r}")
    return side


def _symbol(_inst: object, _attr: object, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"symbol must be a non-empty string, got {value!r}")


def _positive_finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise BadRequest(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _amount(value: object) -> float:
    return _positive_finite("amount", value)


def _stop(value: object) -> float:
    return _positive_finite("stop_loss", value)


def _opt_price(value: object) -> float | None:
    return None if value is None else _positive_finite("reference_price", value)


@attrs.frozen
class OpenRequest:
    """Open ``amount`` contracts of ``symbol`` on ``side`` with a market order
    and protect them with a reduce-only stop-market at ``stop_loss``.

    ``reference_price`` is the price the bot expects to enter near. When
    given, the stop is checked against it here; when not, the opener asks the
    exchange for a reference price before sending anything. Either way a stop
    on the wrong side (at or above the entry for a buy, at or below it for a
    sell) is refused before any order is sent.
    """

    symbol: str = attrs.field(validator=_symbol)
    side: Side = attrs.field(converter=_side)
    amount: float = attrs.field(converter=_amount)
    stop_loss: float = attrs.field(converter=_stop)
    reference_price: float | None = attrs.field(default=None, converter=_opt_price)
    #: Round ``amount`` down to the market's lot step instead of refusing an
    #: amount off the grid. Never up: the attempt never takes more than asked.
    round_amount: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))

    def __attrs_post_init__(self) -> None:
        if self.reference_price is not None:
            check_stop_side(self.side, self.stop_loss, self.reference_price)


def check_stop_side(side: Side, stop_loss: float, price: float) -> None:
    """Refuse a stop-loss that would not be a loss-stop for ``side`` at ``price``."""
    if side is Side.BUY and not stop_loss < price:
        raise BadRequest(
            f"stop_loss {stop_loss} must be below the entry price {price} for a buy"
        )
    if side is Side.SELL and not stop_loss > price:
        raise BadRequest(
            f"stop_loss {stop_loss} must be above the entry price {price} for a sell"
        )


def _steps(value: float, step: float, rounding: str) -> Decimal:
    """``value`` on the grid of ``step``, computed in decimal so that a price
    such as 0.1342 stays 0.1342 and does not become 0.13419999."""
    d, q = Decimal(repr(value)), Decimal(repr(step))
    return (d / q).to_integral_value(rounding=rounding) * q


def _on_grid(value: float, step: float) -> bool:
    d, q = Decimal(repr(value)), Decimal(repr(step))
    return (d % q) == 0


def fit_to_market(request: OpenRequest, market: Market, price: float) -> OpenRequest:
    """The request as it will be sent: the canonical symbol, the stop on the
    exchange's price grid and the amount on its lot grid, checked against the
    market price and the exchange's minimums. Raises :class:`BadRequest`
    (nothing sent) when it cannot be sent as asked.

    * The stop is rounded to the tick *away from the market* (down for a
      buy's stop, up for a sell's): rounding to the nearest tick can move it
      onto the market price, where the exchange refuses it and the entry must
      be rolled back at a fee. The rounded stop is then checked against
      ``price``.
    * An amount off the lot step is refused, unless the request says
      ``round_amount=True``; then it is rounded down (never more than asked).
    * Below the minimum amount or notional: refused.
    """
    stop = request.stop_loss
    if market.price_step:
        down = request.side is Side.BUY
        stop = float(_steps(stop, market.price_step, ROUND_FLOOR if down else ROUND_CEILING))
        if stop <= 0:
            raise BadRequest(f"stop_loss {request.stop_loss} rounds to {stop} on the tick "
                             f"{market.price_step:g} of {market.symbol}. Nothing was sent.")
    check_stop_side(request.side, stop, price)
    amount = request.amount
    step = market.amount_step
    if step and not _on_grid(amount, step):
        if not request.round_amount:
            raise BadRequest(
                f"amount {amount:g} is not a multiple of {market.symbol}'s lot step {step:g}; "
                "pass a multiple, or round_amount=True to round it down. Nothing was sent.")
        amount = float(_steps(amount, step, ROUND_FLOOR))
    if amount <= 0 or (market.min_amount is not None and amount < market.min_amount):
        raise BadRequest(f"amount {amount:g} is below {market.symbol}'s minimum "
                         f"{market.min_amount or step or 0:g}. Nothing was sent.")
    if market.min_notional is not None and amount * price < market.min_notional:
        raise BadRequest(f"notional {amount * price:g} ({amount:g} x {price:g}) is below "
                         f"{market.symbol}'s minimum {market.min_notional:g}. Nothing was sent.")
    if (market.symbol, amount, stop, price) == (request.symbol, request.amount,
                                                request.stop_loss, request.reference_price):
        return request  # already as it will be sent
    return attrs.evolve(request, symbol=market.symbol, amount=amount, stop_loss=stop,
                        reference_price=price, round_amount=request.round_amount)
