"""The conformance kit on every adapter we ship, each with its venue.

A failure names the promise and the venue (``adapters.conformance``)."""

from __future__ import annotations

import pytest

from adapters.conformance import AdapterConformance, Venue, example
from adapters.conformance.simulated import simulated_venue
from tests.conformance_venues import OKX_FAKE, binance_venue, bybit_venue, okx_venue


class TestSimulated(AdapterConformance):
    async def make_venue(self) -> Venue:
        return await simulated_venue()


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


@pytest.mark.skipif(not OKX_FAKE, reason="the OKX fake is not on this branch yet")
class TestOkx(AdapterConformance):
    async def make_venue(self) -> Venue:
        return await okx_venue()
