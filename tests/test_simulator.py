"""The simulated exchange behaves like the real ones where it matters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.port import (
    AmbiguousError,
    ExchangePort,
    OrderNotFound,
    OrderRejected,
    OrderStatus,
    PositionSide,
    Side,
    TransientError,
)
from adapters.simulated import AckStyle, Fault, SimConfig, SimulatedExchange, StreamMode
from adapters.virtual_time import VirtualTimeDeadlock, run_virtual
from tests.helpers import PRICE, SYMBOL


def sim(**kw: Any) -> SimulatedExchange:
    kw.setdefault("prices", {SYMBOL: PRICE})
    return SimulatedExchange(SimConfig(**kw))


def test_it_implements_the_port() -> None:
    assert isinstance(sim(), ExchangePort)


def test_reduce_only_never_increases_or_flips() -> None:
    ex = sim()

    async def go() -> None:
        with pytest.raises(OrderRejected, match="increase"):
            await ex.create_order(symbol=SYMBOL, side=Side.SELL, amount=5, client_id="r0",
                                  reduce_only=True)
        await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=10, client_id="e1",
                              reduce_only=False)
        with pytest.raises(OrderRejected, match="increase"):
            await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=5, client_id="r1",
                                  reduce_only=True)
        close = await ex.create_order(symbol=SYMBOL, side=Side.SELL, amount=25, client_id="r2",
                                      reduce_only=True)
        assert close.filled == 10 and close.status is OrderStatus.CANCELED

    run_virtual(go())
    assert ex.net_position(SYMBOL) == 0  # capped at the position: never flipped short


def test_duplicate_client_id_is_refused() -> None:
    ex = sim()

    async def go() -> None:
        await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=1, client_id="same",
                              reduce_only=False)
        with pytest.raises(OrderRejected, match="duplicate"):
            await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=1, client_id="same",
                                  reduce_only=False)

    run_virtual(go())
    assert ex.net_position(SYMBOL) == 1


@pytest.mark.parametrize(("style", "fields"), [
    (AckStyle.MINIMAL, (None, None, None, None)),
    (AckStyle.NEW, (Side.BUY, 3.0, 0.0, OrderStatus.OPEN)),
    (AckStyle.FULL, (Side.BUY, 3.0, 3.0, OrderStatus.CLOSED)),
])
def test_ack_styles(style: AckStyle, fields: tuple[Any, ...]) -> None:
    ex = sim(ack=style)

    async def go() -> Any:
        return await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=3, client_id="c",
                                     reduce_only=False)

    ack = run_virtual(go())
    assert (ack.side, ack.amount, ack.filled, ack.status) == fields
    assert ack.order_id is not None and ack.client_id == "c"


def test_rest_positions_are_untimestamped_by_default_as_ccxt_reports_them() -> None:
    ex = sim()

    async def go() -> list[Any]:
        await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=43, client_id="c",
                              reduce_only=False)
        return await ex.fetch_positions([SYMBOL])

    (view,) = run_virtual(go())
    assert view.size == 43 and view.as_of is None


def test_rest_positions_lag_and_report_their_age() -> None:
    ex = sim(rest_position_lag=4.0, rest_timestamps=True)

    async def go() -> list[Any]:
        await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=43, client_id="c",
                              reduce_only=False)
        early = await ex.fetch_positions([SYMBOL])
        await asyncio.sleep(4.0)
        late = await ex.fetch_positions([SYMBOL])
        return [early, late]

    early, late = run_virtual(go())
    assert early == []  # filled, but REST does not show it yet
    assert late[0].side is PositionSide.LONG and late[0].size == 43
    assert late[0].as_of is not None and late[0].received_at - late[0].as_of == pytest.approx(4.0,
                                                                                              abs=0.02)


def test_order_visibility_lag_says_not_found() -> None:
    ex = sim(order_visibility_lag=1.0)

    async def go() -> None:
        ack = await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=1, client_id="c",
                                    reduce_only=False)
        with pytest.raises(OrderNotFound):
            await ex.fetch_order(symbol=SYMBOL, order_id=ack.order_id, client_id=None)
        await asyncio.sleep(1.0)
        got = await ex.fetch_order(symbol=SYMBOL, order_id=None, client_id="c")
        assert got.filled == 1

    run_virtual(go())


@pytest.mark.parametrize(("mode", "expect_update"), [
    (StreamMode.PRESENT, True), (StreamMode.SILENT, False), (StreamMode.ABSENT, None)])
def test_stream_modes(mode: StreamMode, expect_update: bool | None) -> None:
    ex = sim(stream=mode, stream_lag=0.25)

    async def go() -> Any:
        await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=2, client_id="c",
                              reduce_only=False)
        await asyncio.sleep(0.3)
        cache = ex.position_cache
        return None if cache is None else (cache.latest(SYMBOL), cache.latest_order("c"))

    got = run_virtual(go())
    if expect_update is None:
        assert got is None
    elif expect_update:
        pos, order = got
        assert pos.size == 2 and pos.side is PositionSide.LONG and order.filled == 2
    else:
        assert got == (None, None)


@pytest.mark.parametrize(("fault", "error", "took_effect"), [
    (Fault.TIMEOUT_BEFORE, AmbiguousError, False),
    (Fault.TIMEOUT_AFTER, AmbiguousError, True),
    (Fault.RATE_LIMIT, TransientError, False),
    (Fault.UNAVAILABLE, TransientError, False),
])
def test_fault_schedule_on_writes(fault: Fault, error: type[Exception], took_effect: bool) -> None:
    ex = sim(faults={"create": (fault,)})

    async def go() -> None:
        with pytest.raises(error):
            await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=1, client_id="c",
                                  reduce_only=False)
        await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=1, client_id="d",
                              reduce_only=False)  # the schedule is used up: OK

    run_virtual(go())
    assert ex.net_position(SYMBOL) == (2 if took_effect else 1)


def test_stop_on_the_wrong_side_of_the_market_is_rejected() -> None:
    ex = sim()

    async def go() -> None:
        await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=1, client_id="c",
                              reduce_only=False)
        with pytest.raises(OrderRejected, match="wrong side"):
            await ex.place_stop(symbol=SYMBOL, side=Side.SELL, amount=1, trigger_price=0.2,
                                client_id="s")
        stop = await ex.place_stop(symbol=SYMBOL, side=Side.SELL, amount=1, trigger_price=0.12,
                                   client_id="s2")
        assert stop.reduce_only and stop.side is Side.SELL
        await ex.cancel_order(symbol=SYMBOL, order_id=None, client_id="s2")
        with pytest.raises(OrderNotFound):
            await ex.cancel_order(symbol=SYMBOL, order_id=None, client_id="s2")

    run_virtual(go())
    assert ex.resting_stops() == []


def test_jitter_is_deterministic_per_seed() -> None:
    def timings(seed: int) -> list[float]:
        ex = sim(seed=seed, jitter=0.1)

        async def go() -> list[float]:
            out = []
            for i in range(5):
                await ex.create_order(symbol=SYMBOL, side=Side.BUY, amount=1,
                                      client_id=f"c{i}", reduce_only=False)
                out.append(asyncio.get_running_loop().time())
            return out

        return run_virtual(go())

    assert timings(1) == timings(1)
    assert timings(1) != timings(2)


def test_virtual_time_is_fast_and_reports_a_deadlock() -> None:
    async def forever() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(VirtualTimeDeadlock):
        run_virtual(forever())

    async def long_sleep() -> float:
        await asyncio.sleep(3600)
        return asyncio.get_running_loop().time()

    assert run_virtual(long_sleep()) == 3600
