"""End to end through real ccxt: OKX swap, and stops attached to the entry.

``PositionOpener`` → ``CcxtAdapter`` → ``ccxt.async_support.okx`` / ``bybit``
→ the fake venues of ``tests/ccxt_fake.py``, in virtual time. OKX runs the
scenarios Bybit and Binance run in ``tests/test_ccxt_engine.py`` (the
incident, the stop refused and rolled back, a create whose answer was lost),
with the separate stop and with the stop attached to the entry; Bybit runs
the attached ones. Assertions are about what reached the venue and where the
attempt ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from adapters.port import Side
from fsm import OpenRequest, Policy, State
from tests import ccxt_fake as F
from tests.ccxt_runs import Run, only_entry_adds_exposure, run_on

BTC = "BTC/USDT:USDT"
AVL = "AVL/USDT:USDT"
#: 1 contract of BTC-USDT-SWAP (0.01 BTC each on OKX), stop at 90 000.
OKX_LONG = OpenRequest(symbol=BTC, side="buy", amount=1, stop_loss=90000)
AVL_LONG = OpenRequest(symbol=AVL, side="buy", amount=43, stop_loss=0.1290)
AUTO = Policy()
SEPARATE = Policy(protection="separate")

def open_on(venue: F.FakeVenue, request: OpenRequest, policy: Policy,
            setup: Callable[[F.FakeVenue], Any] | None = None) -> Run:
    # Two seconds after the attempt: anything armed late lands before the
    # venue's truth is read.
    return run_on(venue, request, policy=policy, linger=2.0, setup=setup)


def _crash_after_fill(symbol: str, price: float) -> Callable[[F.FakeVenue], None]:
    def setup(v: F.FakeVenue) -> None:
        v.on_fill = lambda order: v.book.marks.update({symbol: price})
    return setup


# ---------------------------------------------------------------------------
# OKX, separate stop: the incident and the stop-refused rollback
# ---------------------------------------------------------------------------


def test_okx_incident_with_a_separate_stop_ends_protected() -> None:
    """The create reply carries ids and sCode only, REST positions lag 4 s:
    the fill comes from GET /trade/order, the stop is a conditional algo
    order. Its reply carries no reduceOnly, which ccxt parses as False:
    read as "unknown", the stop is accepted (the old adapter refused it and
    rolled a protected position back)."""
    venue = F.FakeOkx(position_lag=4.0)
    run = open_on(venue, OKX_LONG, SEPARATE)

    assert run.attempt.state is State.PROTECTED, run.attempt.history
    assert run.path == ["submit", "fetched", "verified", "protected"]
    assert run.alerts == [] and run.duration < 1.0
    entry_cid, stop_cid, close_cid = run.ids
    only_entry_adds_exposure(run)
    [entry] = run.with_client_id(entry_cid)
    assert entry.path == "/api/v5/trade/batch-orders"
    assert entry.params["side"] == "buy" and entry.params["sz"] == "1"
    assert set(entry.response["data"][0]) == {"clOrdId", "ordId", "tag", "ts", "sCode", "sMsg"}
    assert run.attempt.facts.ack is not None and run.attempt.facts.ack.side is None  # not ours

    [stop] = run.with_client_id(stop_cid)
    assert stop.path == "/api/v5/trade/order-algo"
    assert stop.params["ordType"] == "conditional" and stop.params["slTriggerPx"] == "90000"
    assert stop.params["slOrdPx"] == "-1" and stop.params["side"] == "sell"
    assert stop.params["reduceOnly"] is True and stop.params["sz"] == "1"
    assert "reduceOnly" not in stop.response["data"][0]
    assert run.with_client_id(close_cid) == []
    [resting] = run.resting_stops()
    assert (resting.side, resting.qty, resting.reduce_only) == ("sell", 1.0, True)
    assert venue.book.position == {"BTC-USDT-SWAP": 1.0}


def test_okx_stop_refused_rolls_back_with_a_reduce_only_sell() -> None:
    venue = F.FakeOkx(position_lag=4.0)
    run = open_on(venue, OKX_LONG, SEPARATE, _crash_after_fill("BTC-USDT-SWAP", 89000.0))

    assert run.attempt.state is State.CLOSE_VERIFIED, run.attempt.history
    assert run.path == ["submit", "fetched", "verified", "protect_failed", "close_sending",
                        "close_verified"]
    assert run.alerts == []
    entry_cid, stop_cid, close_cid = run.ids
    only_entry_adds_exposure(run)
    [stop] = run.with_client_id(stop_cid)
    assert stop.outcome == "refused" and stop.response["data"][0]["sCode"] == "51280"
    [close] = run.with_client_id(close_cid)
    assert close.params["side"] == "sell" and close.params["reduceOnly"] is True
    assert close.params["sz"] == "1"
    buys = [r for r in run.creates() if r.params.get("side") == "buy"]
    assert buys == run.with_client_id(entry_cid)
    assert venue.book.position == {"BTC-USDT-SWAP": 0.0}


def test_okx_stops_are_listed_as_conditional_orders_not_trigger_ones() -> None:
    """ccxt asks ordType=trigger when told only "trigger": OKX would then
    never list a stop-loss. A stop whose reply was lost is found by the
    conditional listing, and never placed twice."""
    venue = F.FakeOkx()
    venue.fail("POST", "/api/v5/trade/order-algo", "timeout_after")
    run = open_on(venue, OKX_LONG, SEPARATE)
    assert run.attempt.state is State.PROTECTED, run.attempt.history
    listings = venue.sent("GET", "/api/v5/trade/orders-algo-pending")
    assert listings and all(r.params["ordType"] == "conditional,oco" for r in listings)
    assert len(run.with_client_id(run.ids[1])) == 1
    assert len(run.resting_stops()) == 1


def test_okx_create_whose_answer_was_lost_is_found_by_clordid_never_resent() -> None:
    venue = F.FakeOkx()
    venue.fail("POST", "/api/v5/trade/batch-orders", "timeout_after")
    run = open_on(venue, OKX_LONG, SEPARATE)
    assert run.attempt.state is State.PROTECTED, run.attempt.history
    assert len(run.with_client_id(run.ids[0])) == 1
    looked = [r for r in venue.sent("GET", "/api/v5/trade/order")
              if r.params.get("clOrdId") == run.ids[0]]
    assert looked
    assert venue.book.position == {"BTC-USDT-SWAP": 1.0}


def test_okx_create_lost_on_the_way_cannot_be_proven_absent_so_it_alerts() -> None:
    """OKX's deadline header (expTime) is not sent by ccxt: no receive
    window, so "not found" never proves a lost create will not execute
    (clOrdId is unique among pending orders only). The attempt alerts."""
    venue = F.FakeOkx()
    venue.fail("POST", "/api/v5/trade/batch-orders", "timeout_before")
    run = open_on(venue, OKX_LONG, SEPARATE)
    assert run.attempt.state is State.ORPHANED, run.attempt.history
    assert len(run.alerts) == 1
    [lost] = run.creates()  # the one lost on the way, never re-sent
    assert lost.outcome == "timeout_before"
    assert venue.book.position == {}


def test_okx_definitive_refusals_end_rejected() -> None:
    venue = F.FakeOkx()
    venue.fail("POST", "/api/v5/trade/batch-orders", "error", "insufficient_margin")
    run = open_on(venue, OKX_LONG, SEPARATE)
    assert run.attempt.state is State.REJECTED, run.attempt.history
    assert run.path == ["reject"]


def test_okx_ambiguous_code_is_looked_up_not_resent() -> None:
    venue = F.FakeOkx()
    venue.fail("POST", "/api/v5/trade/batch-orders", "error_after", "timeout")
    run = open_on(venue, OKX_LONG, SEPARATE)
    assert run.attempt.state is State.PROTECTED, run.attempt.history
    assert len(run.with_client_id(run.ids[0])) == 1


# ---------------------------------------------------------------------------
# Attached stops (Policy(protection="auto"), the default), OKX and Bybit
# ---------------------------------------------------------------------------


def _venue(name: str, **kw: Any) -> tuple[F.FakeVenue, OpenRequest]:
    if name == "okx":
        return F.FakeOkx(**kw), OKX_LONG
    return F.FakeBybit(**kw), AVL_LONG


@pytest.mark.parametrize("name", ["okx", "bybit"])
def test_incident_with_the_stop_attached_is_protected_by_the_stop_the_venue_shows(
        name: str) -> None:
    """One create carries the stop; the venue arms it at the fill for the
    filled size; PROTECTED only once the venue shows it. Nothing else is
    placed."""
    venue, req = _venue(name, position_lag=4.0)
    run = open_on(venue, req, AUTO)
    assert run.attempt.state is State.PROTECTED, run.attempt.history
    assert run.path == ["submit", "fetched", "verified", "protected"]
    assert run.alerts == [] and run.duration < 1.0
    [entry] = run.creates()  # the only order sent
    if name == "okx":
        [att] = entry.params["attachAlgoOrds"]
        assert att == {"attachAlgoClOrdId": run.attached_id, "slTriggerPx": "90000",
                       "slOrdPx": "-1", "slTriggerPxType": "last"}
    else:
        assert entry.params["stopLoss"] == "0.129" and entry.params["tpslMode"] == "Partial"
        assert entry.params["slOrderType"] == "Market"
    [resting] = run.resting_stops()
    assert (resting.side, resting.qty, resting.reduce_only) == ("sell", req.amount, True)
    assert resting.trigger_price == req.stop_loss
    stop = run.attempt.facts.stop
    assert stop is not None and stop.reduce_only is True and stop.side is Side.SELL


@pytest.mark.parametrize("name", ["okx", "bybit"])
def test_partial_fill_the_attached_stop_covers_exactly_the_fill(name: str) -> None:
    venue, req = _venue(name)
    venue.book.fill_ratios = [0.5]
    run = open_on(venue, req, AUTO)
    assert run.attempt.state is State.PROTECTED, run.attempt.history
    [resting] = run.resting_stops()
    filled = run.attempt.facts.entry.filled if run.attempt.facts.entry else None
    assert filled is not None and 0 < filled < req.amount
    assert resting.qty == filled and len(run.creates()) == 1


@pytest.mark.parametrize("name", ["okx", "bybit"])
def test_attached_stop_refused_at_the_fill_falls_back_to_a_separate_stop(name: str) -> None:
    venue, req = _venue(name, attached_refuse=True)
    run = open_on(venue, req, AUTO)
    assert run.attempt.state is State.PROTECTED, run.attempt.history
    assert "fall_back" in run.path
    [stop] = run.with_client_id(run.ids[1])
    assert stop.outcome == "ok"
    [resting] = run.resting_stops()
    assert resting.qty == req.amount and resting.side == "sell"
    if name == "okx":
        # The venue said why (failCode on the entry): no waiting for a deadline.
        assert run.duration < AUTO.attached_stop_timeout


@pytest.mark.parametrize("name", ["okx", "bybit"])
def test_attached_stop_refused_then_separate_stop_refused_rolls_back(name: str) -> None:
    """The price crashes through the stop right at the fill: the venue
    refuses the attached stop, the separate one too; the rollback closes with
    a reduce-only sell, never a buy."""
    venue, req = _venue(name)
    symbol = "BTC-USDT-SWAP" if name == "okx" else "AVLUSDT"
    crash = 89000.0 if name == "okx" else 0.1280
    if name == "bybit":
        venue.attached_refuse = True  # type: ignore[attr-defined]
    run = open_on(venue, req, AUTO, _crash_after_fill(symbol, crash))
    assert run.attempt.state is State.CLOSE_VERIFIED, run.attempt.history
    assert run.path == ["submit", "fetched", "verified", "fall_back", "protect_failed",
                        "close_sending", "close_verified"]
    only_entry_adds_exposure(run)
    [close] = run.with_client_id(run.ids[2])
    assert close.params["side"].lower() == "sell" and close.params["reduceOnly"] is True
    assert run.resting_stops() == []
    assert venue.book.signed(symbol) == 0.0


def test_okx_attached_stop_whose_reduce_only_is_not_shown_is_not_trusted() -> None:
    """Absent is unknown: an attached algo order without a reduceOnly field
    is not evidence of a reduce-only stop, so the engine cancels it and
    places one of its own, whose request it knows."""
    venue = F.FakeOkx(algo_reduce_only=False)
    run = open_on(venue, OKX_LONG, AUTO)
    assert run.attempt.state is State.PROTECTED, run.attempt.history
    assert "fall_back" in run.path
    cancels = venue.sent("POST", "/api/v5/trade/cancel-algos")
    assert [c.params.get("algoClOrdId") or c.params.get("algoId") for c in cancels]
    [resting] = run.resting_stops()
    assert resting.client_id == run.ids[1]


@pytest.mark.parametrize("name", ["okx", "bybit"])
def test_attached_stop_armed_late_within_the_deadline_is_waited_for(name: str) -> None:
    venue, req = _venue(name, attached_delay=0.3)
    run = open_on(venue, req, AUTO)
    assert run.attempt.state is State.PROTECTED, run.attempt.history
    assert "fall_back" not in run.path and len(run.creates()) == 1
    assert len(run.resting_stops()) == 1
