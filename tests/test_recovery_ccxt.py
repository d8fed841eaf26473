"""Recovery through the real ccxt Bybit classes, on recorded payloads.

The process dies at the worst moment: the exchange has applied the request,
the reply is still on its way. Everything but the journal file is dropped; a
new process (a new ccxt exchange, adapter, opener and journal connection on
the same file) recovers. What reached the exchange is read from the fake
venue's request log, never from our own objects.

Also the CLI: ``journal show`` and ``reconcile`` against the same fake.
"""

from __future__ import annotations

import argparse
import asyncio
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from adapters.ccxt import CcxtAdapter
from adapters.virtual_time import run_virtual
from fsm import Attempt, OpenRequest, PositionOpener, State, client_ids
from fsm.cli_journal import add_parsers, run_journal_show, run_reconcile
from fsm.journal import Journal, summarize
from fsm.policy import Policy
from tests import ccxt_fake as F

AVL = "AVL/USDT:USDT"
AID = "00000000000000000000abcd"
ENTRY, STOP, CLOSE = client_ids(AID)
AVL_LONG = OpenRequest(symbol=AVL, side="buy", amount=43, stop_loss=0.1290)
CREATE = "/v5/order/create"

#: The separate stop: these scenarios predate stops attached to the entry,
#: which tests/test_ccxt_attached.py covers.
SEPARATE = Policy(protection="separate")


def _die_after_applying(venue: F.FakeVenue, cid: str) -> list[bool]:
    """Make the venue apply the request carrying ``cid`` and then kill the
    process that sent it before the reply reaches it."""
    died: list[bool] = []
    handle = venue.handle

    async def dying(
        method: str, url: str, data: bytes | None, headers: dict[str, str] | None = None
    ) -> Any:
        resp = await handle(method, url, data, headers)
        if not died and data is not None and cid.encode() in data:
            died.append(True)
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)  # the process is gone; the reply is lost
        return resp

    venue.handle = dying  # type: ignore[method-assign]
    return died


async def _exchange(venue: F.FakeBybit) -> Any:
    """A new ccxt Bybit on the venue (a new process), markets from the
    recorded payloads; the venue's request log is kept whole."""
    kept = list(venue.requests)
    exchange = F.bybit(venue)
    await F.load_markets_offline(exchange, venue)  # clears the log
    venue.requests[:0] = kept
    return exchange


def _creates(venue: F.FakeVenue, cid: str | None = None) -> list[F.Request]:
    return [r for r in venue.sent("POST", CREATE)
            if cid is None or r.params.get("orderLinkId") == cid]


def crash_then_recover(venue: F.FakeBybit, cid: str, path: Path,
                       policy: Policy = SEPARATE) -> Attempt:
    died = _die_after_applying(venue, cid)

    async def go() -> Attempt:
        # The first process: dies with the request applied and unanswered.
        exchange = await _exchange(venue)
        journal = Journal(path)
        opener = PositionOpener(CcxtAdapter(exchange), policy=policy,
                journal=journal, ids=lambda: AID)
        with pytest.raises(asyncio.CancelledError):
            await opener.open(AVL_LONG)
        assert died, "the crash did not happen"
        journal.close()
        await exchange.close()
        del opener, exchange, journal
        await asyncio.sleep(2.0)  # restart time

        # The second process: the journal file is all it has.
        exchange = await _exchange(venue)
        with Journal(path) as journal:
            (attempt,) = await PositionOpener(CcxtAdapter(exchange), policy=policy,
                                              journal=journal).recover()
        await exchange.close()
        return attempt

    return run_virtual(go())


def test_entry_sent_with_its_stop_attached_then_a_crash_recovers_to_the_armed_stop(
    tmp_path: Path,
) -> None:
    """The entry went with its stop attached (Bybit, tpslMode=Partial), and
    the process died before the reply. Recovery knows from the journalled
    entry intent that a stop travelled with it: it finds the entry by client
    id, reads back the stop Bybit armed and ends PROTECTED on it, placing
    nothing: one order in the log, one stop resting."""
    venue = F.FakeBybit(position_lag=4.0, realtime_shows_closed=False)
    attempt = crash_then_recover(venue, ENTRY, tmp_path / "j.sqlite3", Policy())

    assert attempt.state is State.PROTECTED, attempt.history
    assert [t.trigger.value for t in attempt.history] == ["submit", "fetched", "verified",
                                                         "protected"]
    [entry] = _creates(venue)
    assert entry.params["orderLinkId"] == ENTRY and entry.params["tpslMode"] == "Partial"
    [resting] = [o for o in venue.book.orders.values() if o.conditional and o.open]
    assert (resting.side, resting.qty, resting.reduce_only) == ("sell", 43.0, True)
    assert attempt.facts.stop is not None and attempt.facts.stop.order_id == resting.order_id


def test_entry_sent_but_not_acknowledged_is_found_by_client_id_and_protected(
    tmp_path: Path,
) -> None:
    """The incident's world (minimal reply, REST positions 4 s behind, the
    fill only in order history), and the process dies after Bybit accepted the
    entry and before its reply: recovery finds the entry by its client id,
    never resends it, verifies and protects it. One entry order in the log."""
    venue = F.FakeBybit(position_lag=4.0, realtime_shows_closed=False)
    attempt = crash_then_recover(venue, ENTRY, tmp_path / "j.sqlite3")

    assert attempt.state is State.PROTECTED, attempt.history
    assert [t.trigger.value for t in attempt.history] == ["submit", "fetched", "verified",
                                                         "protected"]
    assert attempt.history[0].evidence is not None
    assert attempt.history[0].evidence.value == "journal"
    # What the exchange received: one entry (the only order without
    # reduceOnly), sent once, before the crash; then one reduce-only stop.
    [entry] = [r for r in _creates(venue) if not r.flag("reduceOnly")]
    assert entry.params["orderLinkId"] == ENTRY and entry.params["side"] == "Buy"
    assert _creates(venue, ENTRY) == [entry]
    [stop] = _creates(venue, STOP)
    assert stop.params["side"] == "Sell" and stop.params["qty"] == "43"
    assert stop.params["reduceOnly"] is True
    assert _creates(venue, CLOSE) == []
    # It was looked up by client id (the id was never acknowledged).
    lookups = [r for r in venue.requests if r.method == "GET" and "order" in r.path
               and r.params.get("orderLinkId") == ENTRY]
    assert lookups and lookups[0].at > entry.at
    assert venue.book.position == {"AVLUSDT": 43.0}
    resting = [o for o in venue.book.orders.values() if o.conditional and o.open]
    assert [(o.side, o.qty, o.reduce_only) for o in resting] == [("sell", 43.0, True)]
    # The journal tells the story: recovered from PLACED, ended PROTECTED.
    with Journal(tmp_path / "j.sqlite3", create=False) as j:
        (s,) = summarize(j.read())
    assert s.ended is State.PROTECTED and s.recovered == 1


def test_stop_sent_but_not_acknowledged_is_found_not_placed_twice(tmp_path: Path) -> None:
    venue = F.FakeBybit(position_lag=1.0)
    attempt = crash_then_recover(venue, STOP, tmp_path / "j.sqlite3")

    assert attempt.state is State.PROTECTED, attempt.history
    assert len(_creates(venue, ENTRY)) == 1
    assert len(_creates(venue, STOP)) == 1  # found by client id, not resent
    resting = [o for o in venue.book.orders.values() if o.conditional and o.open]
    assert len(resting) == 1 and resting[0].client_id == STOP


# -- the CLI against the same fake ---------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _factory(venue: F.FakeBybit) -> Any:
    def make(name: str, mode: str | None, env: Mapping[str, str]) -> Any:
        assert name == "bybit" and mode == "demo"
        return _exchange(venue)

    return make


def _cut_stop(venue: F.FakeBybit) -> None:
    for o in venue.book.orders.values():
        if o.conditional and o.open:
            o.status = "Deactivated"


def test_cli_journal_show_and_reconcile(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    venue = F.FakeBybit(position_lag=4.0, realtime_shows_closed=False)
    crash_then_recover(venue, ENTRY, path)

    out = io.StringIO()
    assert run_journal_show(_args("journal", "show", "--db", str(path)), out=out) == 0
    text = out.getvalue()
    assert f"attempt {AID}" in text and "PROTECTED" in text
    assert "about to send entry" in text and "recover" in text
    assert "NEW --submit--> PLACED [entry_may_exist] via journal" in text
    out = io.StringIO()
    assert run_journal_show(_args("journal", "show", "--db", str(path), "--attempt",
                                  AID[:6]), out=out) == 0
    assert run_journal_show(_args("journal", "show", "--db", str(path), "--attempt",
                                  "nope")) == 1
    assert run_journal_show(_args("journal", "show", "--db", str(tmp_path / "no"))) == 2

    argv = ("reconcile", "--exchange", "bybit", "--demo", "--db", str(path), "--settle", "0")
    before = len(venue.requests)
    out = io.StringIO()
    code = run_reconcile(_args(*argv), exchange_factory=_factory(venue), out=out)
    assert code == 0, out.getvalue()
    assert "AVL/USDT:USDT long 43: stops covered" in out.getvalue()
    writes = [r for r in venue.requests[before:] if r.method != "GET"]
    assert writes == []  # read-only

    _cut_stop(venue)  # the stop is gone: an orphan, no longer the attempt's
    out = io.StringIO()
    code = run_reconcile(_args(*argv), exchange_factory=_factory(venue), out=out)
    assert code == 1, out.getvalue()
    assert "ORPHAN" in out.getvalue() and "UNKNOWN" in out.getvalue()
    assert [r for r in venue.requests[before:] if r.method != "GET"] == []


def test_cli_reconcile_reports_a_failed_query_as_unknown(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    venue = F.FakeBybit()
    venue.fail("GET", "/v5/position/list", "timeout_before", times=5)
    out = io.StringIO()
    argv = ("reconcile", "--exchange", "bybit", "--demo", "--db", str(path))
    code = run_reconcile(_args(*argv), exchange_factory=_factory(venue), out=out)
    assert code == 2, out.getvalue()
    assert "positions: failed" in out.getvalue()


def test_cli_reconcile_on_binance_sees_the_algo_stop(tmp_path: Path) -> None:
    """Binance: positions from /fapi/v3/positionRisk, stops from the algo
    order endpoint; an attempt protected through the engine reconciles clean."""
    path = tmp_path / "j.sqlite3"
    venue = F.FakeBinanceUsdm(fill_delay=0.3, position_lag=2.0)
    btc = OpenRequest(symbol="BTC/USDT:USDT", side="buy", amount=0.01, stop_loss=90000)

    async def make(name: str, mode: str | None, env: Mapping[str, str]) -> Any:
        exchange = F.binanceusdm(venue)
        kept = list(venue.requests)
        await F.load_markets_offline(exchange, venue)
        venue.requests[:0] = kept
        return exchange

    async def open_one() -> State:
        exchange = await make("binanceusdm", None, {})
        with Journal(path) as j:
            a = await PositionOpener(CcxtAdapter(exchange), policy=SEPARATE,
                    journal=j, ids=lambda: AID).open(btc)
        await exchange.close()
        return a.state

    assert run_virtual(open_one()) is State.PROTECTED
    out = io.StringIO()
    argv = ("reconcile", "--exchange", "binanceusdm", "--db", str(path), "--settle", "0")
    code = run_reconcile(_args(*argv), exchange_factory=make, out=out)
    assert code == 0, out.getvalue()
    assert "BTC/USDT:USDT long 0.01: stops covered" in out.getvalue()
