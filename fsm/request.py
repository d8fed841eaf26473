"""What a bot asks for: one validated, immutable request to open a position.

Bad input is refused here, at construction, before anything can be sent.
"""

from __future__ import annotations

import math

import attrs

from adapters.port import Side

__all__ = ["BadRequest", "OpenRequest"]


class BadRequest(ValueError):
    """The request cannot be sent as asked. Nothing was sent."""


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
