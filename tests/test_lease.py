"""Leases on (account, symbol): one attempt at a time per key across
openers, processes and machines, and a fenced-out holder's writes refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters.simulated import ClientIdScope, SimConfig, SimulatedExchange
from adapters.virtual_time import run_virtual
from fsm import Attempt, PositionOpener, State
from fsm.journal import Journal, summarize
from tests.helpers import PRICE, SYMBOL, ids, request


async def _until(cond: object, deadline: float) -> None:
    """Poll ``cond()`` in loop time until true, or fail at ``deadline``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not cond():  # type: ignore[operator]
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)


def test_a_second_openers_recover_never_drives_a_live_attempt(tmp_path: Path) -> None:
    """The defect: two processes share one SQLite journal; while the first is
    rolling an attempt back (its close sent), the second starts and calls
    recover(). It must not drive the live attempt: no record of its own for
    it, no order of its own, one end record."""
    ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}, stop_rejected=True, rtt=1.0,
                                     client_id_scope=ClientIdScope.OPEN,
                                     initial_positions={SYMBOL: 100.0}))
    path = tmp_path / "shared.sqlite3"

    async def go() -> tuple[Attempt, list[Attempt]]:
        with Journal(path) as ja, Journal(path) as jb:
            a = PositionOpener(ex, journal=ja, ids=ids())
            task = asyncio.ensure_future(a.open(request()))
            await _until(lambda: any(r.kind == "intent" and r.data["action"] == "close"
                                     for r in jb.read()), 60.0)
            b = PositionOpener(ex, journal=jb)
            recovered = await b.recover()
            attempt = await task
            return attempt, recovered

    attempt, recovered = run_virtual(go())
    assert attempt.state is State.CLOSE_VERIFIED
    assert recovered == []
    with Journal(path) as j:
        recs = j.read()
    (s,) = summarize(recs)
    ends = [r for r in recs if r.kind == "end"]
    assert len(ends) == 1 and s.recovered == 0
    closes = [o for o in ex.log if o.kind == "market" and o.reduce_only]
    assert len(closes) == 1, closes
    assert ex.net_position(SYMBOL) == 100.0


def test_the_default_account_is_the_exchange_and_a_hash_of_the_key_never_the_key() -> None:
    from adapters.ccxt import CcxtAdapter
    from fsm.lease import api_key_account
    from tests import ccxt_fake as F

    async def go() -> tuple[str, str, str]:
        v = F.FakeBybit()
        ex = F.bybit(v)
        try:
            adapter = CcxtAdapter(ex)
            other = F.bybit(v, apiKey="another-key")
            try:
                second = CcxtAdapter(other).account_id
            finally:
                await other.close()
            return adapter.account_id, PositionOpener(adapter).account, second
        finally:
            await ex.close()

    own, opener_default, another = run_virtual(go())
    key = F._KEYS["apiKey"]
    assert own == opener_default == api_key_account("bybit", key)
    assert own.startswith("bybit:") and key not in own and len(own) == len("bybit:") + 16
    assert another != own and another.startswith("bybit:")
    assert PositionOpener(SimulatedExchange(), account="desk-7").account == "desk-7"
    assert PositionOpener(SimulatedExchange()).account == "simulated"


def test_policy_lease_fields_are_validated() -> None:
    import pytest

    from fsm import Policy

    assert Policy().lease_renew <= Policy().lease_duration / 2
    with pytest.raises(ValueError, match="lease_renew"):
        Policy(lease_duration=2.0, lease_renew=1.5)
    with pytest.raises(ValueError, match=r"Policy\.lease_duration"):
        Policy(lease_duration=0.1)
