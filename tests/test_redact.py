"""Issue 11, reproduction 6: signed query strings and API keys never leave.

Binance signs every private GET into its query string, and ccxt quotes the
URL in its timeout and HTTP-status errors: ``...&signature=<hmac>``. These
tests drive the real ccxt classes (``tests/ccxt_fake.py`` replaces only the
transport) and look for the signature in everything the library writes.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from adapters.ccxt import CcxtAdapter
from adapters.port import TransientError
from adapters.virtual_time import run_virtual
from fsm.journal import Journal
from fsm.reconcile import QueryStatus, ReconcilePolicy, Reconciler, ReconcileReport
from tests import ccxt_fake as F

#: A signature's value as ccxt puts it on the wire: 64 hex digits.
_HMAC = re.compile(r"signature=([0-9a-f]{64})")
POSITIONS = "/fapi/v3/positionRisk"


def _leaks(text: str) -> list[str]:
    return _HMAC.findall(text)


async def _binance(venue: F.FakeBinanceUsdm) -> Any:
    ex = F.binanceusdm(venue)
    await F.load_markets_offline(ex, venue)
    return ex


@pytest.mark.parametrize("fault", ["timeout_before", "disconnect"])
def test_an_adapter_error_carries_no_signature(fault: str) -> None:
    """The real ccxt error quotes the signed URL; ours (and the ccxt error
    it chains to, which a traceback prints) must not."""
    venue = F.FakeBinanceUsdm()

    async def go() -> TransientError:
        ex = await _binance(venue)
        try:
            venue.fail("GET", POSITIONS, fault)  # type: ignore[arg-type]
            with pytest.raises(TransientError) as err:
                await CcxtAdapter(ex).fetch_positions(None)
            return err.value
        finally:
            await ex.close()

    err = run_virtual(go())
    sent = venue.sent("GET", POSITIONS)
    assert sent, "the request was sent, signed"
    assert POSITIONS in str(err)  # still says what failed
    assert _leaks(str(err)) == [] and _leaks(repr(err)) == []
    assert "signature=<redacted>" in str(err)
    assert err.__cause__ is not None and _leaks(str(err.__cause__)) == []


def test_reports_cli_output_and_log_lines_carry_no_signature(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The monitor's report (error fields and rendering), the ``reconcile``
    command's output, and every log line on the way."""
    from fsm.cli_journal import add_parsers, run_reconcile

    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    venue = F.FakeBinanceUsdm()
    venue.fail("GET", POSITIONS, "timeout_before", times=10)
    venue.fail("GET", "/fapi/v1/openAlgoOrders", "disconnect", times=10)

    async def make(_name: str, _mode: str | None, _env: Mapping[str, str]) -> Any:
        return await _binance(venue)

    async def check() -> ReconcileReport:
        ex = await _binance(venue)
        try:
            with Journal(path) as j:
                j.begin("a" * 24, _btc(), "e" * 27, 0.0)
                j.intent("a" * 24, "stop", "s" * 27, 0.0, {"side": "sell"})
                return await Reconciler(CcxtAdapter(ex), j,
                                        policy=ReconcilePolicy(settle_time=0)).check_once()
        finally:
            await ex.close()

    caplog.set_level(logging.DEBUG)
    report = run_virtual(check())
    assert report.positions_status is QueryStatus.FAILED
    assert report.stops_status is QueryStatus.FAILED
    assert "positionRisk" in (report.positions_error or "")
    assert _leaks(report.positions_error or "") == [] == _leaks(report.stops_error or "")
    assert _leaks(report.render()) == []

    parser = __import__("argparse").ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    out = io.StringIO()
    args = parser.parse_args(["reconcile", "--exchange", "binanceusdm", "--db", str(path),
                              "--settle", "0"])
    assert run_reconcile(args, exchange_factory=make, out=out) == 2
    assert "signature=<redacted>" in out.getvalue()
    assert _leaks(out.getvalue()) == []
    signed = [r for r in venue.requests if r.path == POSITIONS]
    assert signed  # the requests really were signed, and failed
    ours = [r for r in caplog.records if r.name.split(".")[0] in ("fsm", "adapters")]
    assert ours  # the monitor did log about the failures
    assert _leaks("\n".join(logging.Formatter().format(r) for r in ours)) == []


def test_a_log_line_with_a_real_ccxt_error_and_its_traceback_is_redacted(
        caplog: pytest.LogCaptureFixture) -> None:
    import ccxt.async_support as ccxt_async

    venue = F.FakeBinanceUsdm()

    async def go() -> BaseException:
        ex = await _binance(venue)
        venue.fail("GET", POSITIONS, "timeout_before")
        try:
            await ex.fetch_positions()
        except ccxt_async.RequestTimeout as exc:
            caught: BaseException = exc
            return caught
        finally:
            await ex.close()
        raise AssertionError("no timeout")

    exc = run_virtual(go())
    assert _leaks(str(exc)), "ccxt itself quotes the signed URL"
    log = logging.getLogger("fsm")
    with caplog.at_level(logging.WARNING, logger="fsm"):
        log.warning("query failed: %s", exc)
        try:
            raise RuntimeError("wrapped") from exc
        except RuntimeError:
            log.exception("check failed")
    text = caplog.text + "".join(
        logging.Formatter().format(r) for r in caplog.records)
    assert "signature=<redacted>" in text
    assert _leaks(text) == []


def _btc() -> Any:
    from fsm import OpenRequest

    return OpenRequest(symbol="BTC/USDT:USDT", side="buy", amount=0.01, stop_loss=90000.0)


@pytest.mark.parametrize(("raw", "clean"), [
    ("GET https://fapi.binance.com/fapi/v3/positionRisk?timestamp=1&recvWindow=5000"
     "&signature=5b62e4b6", "GET https://fapi.binance.com/fapi/v3/positionRisk?timestamp=1"
     "&recvWindow=5000&signature=<redacted>"),
    ("apiKey=k1&sign=abc&side=BUY", "apiKey=<redacted>&sign=<redacted>&side=BUY"),
    ("{'X-BAPI-API-KEY': 'k1', 'X-BAPI-SIGN': 'ab12', 'X-BAPI-TIMESTAMP': '17'}",
     "{'X-BAPI-API-KEY': '<redacted>', 'X-BAPI-SIGN': '<redacted>', 'X-BAPI-TIMESTAMP': '17'}"),
    ('{"X-MBX-APIKEY":"k1","symbol":"BTCUSDT"}',
     '{"X-MBX-APIKEY":"<redacted>","symbol":"BTCUSDT"}'),
    ("X-MBX-APIKEY: k1", "X-MBX-APIKEY: <redacted>"),
    ("OK-ACCESS-PASSPHRASE: p OK-ACCESS-SIGN: s", "OK-ACCESS-PASSPHRASE: <redacted> "
     "OK-ACCESS-SIGN: <redacted>"),
    ("Authorization: Bearer abc.def", "Authorization: <redacted>"),
    ("secret=s&password=p&listenKey=l", "secret=<redacted>&password=<redacted>"
     "&listenKey=<redacted>"),
    # not secrets: left alone
    ("design=1 timestamp=2 positionSide=LONG side=sell", None),
    ("AVL/USDT:USDT long 43: stops none", None),
])
def test_redact(raw: str, clean: str | None) -> None:
    from fsm.redact import redact

    expected = raw if clean is None else clean
    assert redact(raw) == expected
    assert redact(expected) == expected  # idempotent


def test_an_exchange_error_quoting_a_signed_url_is_redacted_in_history_journal_and_alert(
        tmp_path: Path) -> None:
    """An adapter that does not redact its own errors (a third party's): the
    engine still keeps the signature out of the attempt's history, the
    journal file and the alert."""
    from adapters.port import OrderRejected, StopSnapshot
    from adapters.simulated import SimConfig, SimulatedExchange
    from adapters.virtual_time import run_virtual
    from fsm import Alert, Journal, PositionOpener, State
    from tests.helpers import PRICE, SYMBOL, ids, request

    signed = "POST https://x/fapi/v1/order?symbol=AVLUSDT&timestamp=1&signature=deadbeefcafe"

    class Leaky(SimulatedExchange):
        async def place_stop(self, **kw: Any) -> StopSnapshot:
            raise OrderRejected(f"-2021 Order would immediately trigger: {signed}")

        async def create_order(self, **kw: Any) -> Any:
            if kw["reduce_only"]:
                raise OrderRejected(f"-2022 ReduceOnly Order is rejected: {signed}")
            return await super().create_order(**kw)

    alerts: list[Alert] = []
    path = tmp_path / "j.sqlite3"

    async def go() -> Any:
        with Journal(path) as j:
            return await PositionOpener(Leaky(SimConfig(prices={SYMBOL: PRICE})), journal=j,
                                        alerts=alerts.append, ids=ids()).open(request())

    a = run_virtual(go())
    assert a.state is State.ORPHANED
    text = "\n".join(s.describe() for s in a.history) + alerts[0].message
    assert "deadbeefcafe" not in text and "signature=<redacted>" in text
    on_disk = b"".join(f.read_bytes() for f in tmp_path.iterdir())  # the db and its WAL
    assert b"close refused" in on_disk and b"deadbeefcafe" not in on_disk
