"""One attempt end to end through real ccxt against a fake venue of
``tests/ccxt_fake.py``, in virtual time, and what the venue saw of it.
Shared by ``test_ccxt_engine.py`` (Bybit, Binance) and
``test_ccxt_attached.py`` (OKX, stops attached to the entry)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import attrs

from adapters.ccxt import CcxtAdapter
from adapters.virtual_time import run_virtual
from fsm import Alert, Attempt, OpenRequest, Policy, PositionOpener, attached_stop_id
from fsm.driver import client_ids
from tests import ccxt_fake as F
from tests.helpers import ids

#: The order-placing endpoints of the three venues (Bybit, Binance USDⓈ-M
#: orders and algo orders, OKX orders, batches and algo orders).
_CREATES = {"/v5/order/create", "/fapi/v1/order", "/fapi/v1/algoOrder",
            "/api/v5/trade/order", "/api/v5/trade/batch-orders", "/api/v5/trade/order-algo"}
#: Where each venue carries the client id of an order it is asked to place.
_CLIENT_ID_KEYS = ("orderLinkId", "newClientOrderId", "clientAlgoId", "clOrdId", "algoClOrdId")


@attrs.define
class Run:
    """The attempt, the venue that served it, the alerts, and how long it took."""

    attempt: Attempt
    venue: F.FakeVenue
    alerts: list[Alert]
    duration: float

    @property
    def ids(self) -> tuple[str, str, str]:
        """The attempt's (entry, stop, close) client ids."""
        return client_ids(self.attempt.attempt_id)

    @property
    def attached_id(self) -> str:
        """The client id of the stop attached to the entry."""
        return attached_stop_id(self.attempt.attempt_id)

    @property
    def path(self) -> list[str]:
        """The triggers the attempt took, in order."""
        return [t.trigger.value for t in self.attempt.history]

    def creates(self) -> list[F.Request]:
        """Every order-placing request the venue received."""
        return [r for r in self.venue.requests if r.method == "POST" and r.path in _CREATES]

    def exposure_increasing(self) -> list[F.Request]:
        """Orders that could add to the position: all but reduce-only ones."""
        return [r for r in self.creates() if not r.flag("reduceOnly")]

    def with_client_id(self, cid: str) -> list[F.Request]:
        """The order-placing requests that carried ``cid``."""
        return [r for r in self.creates()
                if any(r.params.get(k) == cid for k in _CLIENT_ID_KEYS)]

    def resting_stops(self) -> list[F.FakeOrder]:
        """The conditional orders still open on the venue."""
        return [o for o in self.venue.book.orders.values() if o.conditional and o.open]


def run_on(venue: F.FakeVenue, request: OpenRequest, *, policy: Policy, pro: bool = False,
           linger: float = 0.0, setup: Callable[[F.FakeVenue], Any] | None = None) -> Run:
    """Open ``request`` on ``venue`` through its real ccxt class. ``pro``:
    with the adapter's position stream running (Bybit, Binance); ``linger``:
    virtual seconds to let pass after the attempt, so that anything armed
    late has landed before the venue's truth is read; ``setup``: called on
    the venue once its markets are loaded, before the attempt."""

    async def go() -> Run:
        if isinstance(venue, F.FakeOkx):
            assert not pro, "the OKX fake serves no stream"
            exchange = F.okx(venue)
        elif isinstance(venue, F.FakeBybit):
            exchange = F.bybit(venue, pro=pro)
        else:
            assert isinstance(venue, F.FakeBinanceUsdm)
            exchange = F.binanceusdm(venue, pro=pro)
        await F.load_markets_offline(exchange, venue)
        adapter = CcxtAdapter(exchange)
        if pro:
            adapter.start_stream()
            await asyncio.sleep(0.2)  # connected, authenticated, subscribed
            venue.requests.clear()
        if setup is not None:
            setup(venue)
        alerts: list[Alert] = []
        opener = PositionOpener(adapter, policy=policy, alerts=alerts.append, ids=ids())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        attempt = await opener.open(request)
        duration = loop.time() - t0
        if linger:
            await asyncio.sleep(linger)
        if pro:
            await adapter.stop_stream()
        await exchange.close()
        return Run(attempt, venue, alerts, duration)

    return run_virtual(go())


def only_entry_adds_exposure(run: Run) -> None:
    """Law L2 as the venue saw it: one order without reduceOnly, and it is
    the entry, sent exactly once."""
    entry_cid = run.ids[0]
    [entry] = run.exposure_increasing()
    assert entry_cid in entry.params.values()
    assert len(run.with_client_id(entry_cid)) == 1
