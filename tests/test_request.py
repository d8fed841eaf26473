"""Bad input is refused before any order is sent."""

from __future__ import annotations

import math
from typing import Any

import pytest

from adapters.simulated import SimConfig, SimulatedExchange
from adapters.virtual_time import run_virtual
from fsm import BadRequest, OpenRequest, Policy, PositionOpener
from fsm.request import check_stop_side
from tests.helpers import PRICE, SYMBOL, request


@pytest.mark.parametrize(("field", "value", "message"), [
    ("side", "hold", "side must be 'buy' or 'sell'"),
    ("side", "unknown", "side must be 'buy' or 'sell'"),
    ("side", None, "side must be 'buy' or 'sell'"),
    ("side", "", "side must be 'buy' or 'sell'"),
    ("amount", 0, "amount must be a finite number > 0"),
    ("amount", -1, "amount must be a finite number > 0"),
    ("amount", math.nan, "amount must be a finite number > 0"),
    ("amount", math.inf, "amount must be a finite number > 0"),
    ("amount", "43", "amount must be a number"),
    ("amount", True, "amount must be a number"),
    ("stop_loss", 0, "stop_loss must be a finite number > 0"),
    ("stop_loss", -0.1, "stop_loss must be a finite number > 0"),
    ("stop_loss", math.nan, "stop_loss must be a finite number > 0"),
    ("symbol", "", "symbol must be a non-empty string"),
    ("symbol", "   ", "symbol must be a non-empty string"),
    ("reference_price", 0, "reference_price must be a finite number > 0"),
])
def test_bad_field_is_refused(field: str, value: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        request(**{field: value})


@pytest.mark.parametrize(("side", "stop", "price"), [
    ("buy", 0.14, 0.1358),  # stop above entry for a long
    ("buy", 0.1358, 0.1358),  # at entry
    ("sell", 0.13, 0.1358),  # stop below entry for a short
])
def test_stop_on_the_wrong_side_of_the_entry_is_refused(side: str, stop: float,
                                                         price: float) -> None:
    with pytest.raises(BadRequest, match=r"stop_loss .* must be"):
        OpenRequest(symbol=SYMBOL, side=side, amount=1, stop_loss=stop, reference_price=price)


def test_side_is_case_insensitive_and_stored_as_enum() -> None:
    r = request(side="SELL", stop_loss=0.15)
    assert r.side.value == "sell" and r.amount == 43.0


def test_without_reference_price_the_market_price_is_checked_before_sending() -> None:
    ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}))

    async def go() -> None:
        opener = PositionOpener(ex)
        with pytest.raises(BadRequest, match=r"must be below the entry price 0\.1358"):
            await opener.open(OpenRequest(symbol=SYMBOL, side="buy", amount=43, stop_loss=0.15))

    run_virtual(go())
    assert ex.log == []  # nothing was sent
    # Reads only: the market's rules, its price and the account's position.
    assert ex.calls == {"market": 1, "fetch_price": 1, "fetch_positions": 1}


def test_opener_refuses_something_that_is_not_a_request() -> None:
    ex = SimulatedExchange()

    async def go() -> None:
        with pytest.raises(BadRequest, match="expected an OpenRequest"):
            await PositionOpener(ex).open({"symbol": SYMBOL})  # type: ignore[arg-type]

    run_virtual(go())
    assert ex.log == []


def test_check_stop_side_accepts_a_real_stop() -> None:
    from adapters.port import Side

    check_stop_side(Side.BUY, 0.12, 0.1358)
    check_stop_side(Side.SELL, 0.15, 0.1358)


@pytest.mark.parametrize("kw", [
    {"verify_timeout": 0}, {"close_timeout": -1}, {"request_timeout": math.inf},
    {"backoff_factor": 0.5}, {"backoff_initial": 2.0, "backoff_max": 1.0},
])
def test_policy_refuses_nonsense(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Policy"):
        Policy(**kw)


def test_policy_defaults_follow_the_seed_plan() -> None:
    p = Policy()
    assert (p.verify_timeout, p.close_timeout) == (10.0, 10.0)
    assert [round(p.backoff(i), 4) for i in range(3)] == [0.05, 0.075, 0.1125]
    assert p.backoff(50) == p.backoff_max
