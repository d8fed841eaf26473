"""The conformance kit on every adapter we ship, each with its venue.

A failure names the promise and the venue (``adapters.conformance``)."""

from __future__ import annotations

from adapters.conformance import AdapterConformance, Venue, example
from adapters.conformance.simulated import simulated_venue
from adapters.simulated import SimConfig, StreamMode
from tests.conformance_venues import binance_venue, bybit_venue, okx_venue


class TestSimulated(AdapterConformance):
    async def make_venue(self) -> Venue:
        return await simulated_venue()


class TestSimulatedAttachedStops(AdapterConformance):
    """The simulator arming stops sent with the entry."""

    async def make_venue(self) -> Venue:
        return await simulated_venue(SimConfig(
            prices={"AVL/USDT:USDT": 0.1358}, strict_symbols=True, stream=StreamMode.PRESENT,
            attached_stops=True))


class TestBybit(AdapterConformance):
    async def make_venue(self) -> Venue:
        return await bybit_venue()


class TestBinanceUsdm(AdapterConformance):
    async def make_venue(self) -> Venue:
        return await binance_venue()


class TestExampleTern(AdapterConformance):
    """The guide's worked example passes the kit."""

    async def make_venue(self) -> Venue:
        return await example.make_venue()


class TestOkx(AdapterConformance):
    async def make_venue(self) -> Venue:
        return await okx_venue()
