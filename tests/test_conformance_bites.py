"""The conformance kit bites: a copy of the ccxt adapter with one promise
broken fails the kit, and the failure names that promise and the venue.

The kit runs in a pytest subprocess, as a user would run it, so what is
checked is pytest's own report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TypeVar
from xml.etree import ElementTree

import attrs
import ccxt.async_support as ccxt_async

from adapters.ccxt import CcxtAdapter
from adapters.port import ExchangeError, OrderNotFound, OrderSnapshot, Side, StopSnapshot

Snap = TypeVar("Snap", OrderSnapshot, StopSnapshot)

ROOT = Path(__file__).resolve().parent.parent


class SideDefaultsToBuy(CcxtAdapter):
    """Broken: an order or stop whose side the venue omitted reads as a buy."""

    async def create_order(self, *, symbol: str, side: Side, amount: float, client_id: str,
                           reduce_only: bool) -> OrderSnapshot:
        return _buy_if_unknown(await super().create_order(
            symbol=symbol, side=side, amount=amount, client_id=client_id,
            reduce_only=reduce_only))

    async def fetch_order(self, *, symbol: str, order_id: str | None,
                          client_id: str | None) -> OrderSnapshot:
        return _buy_if_unknown(await super().fetch_order(symbol=symbol, order_id=order_id,
                                                         client_id=client_id))

    async def place_stop(self, *, symbol: str, side: Side, amount: float, trigger_price: float,
                         client_id: str) -> StopSnapshot:
        return _buy_if_unknown(await super().place_stop(
            symbol=symbol, side=side, amount=amount, trigger_price=trigger_price,
            client_id=client_id))


def _buy_if_unknown(snap: Snap) -> Snap:
    return snap if snap.side is not None else attrs.evolve(snap, side=Side.BUY)


class UnavailableIsNotFound(CcxtAdapter):
    """Broken: a 503 from the venue's gateway reads as "no such order"."""

    def _map_error(self, exc: BaseException, *, write: bool, what: str,
                   create: bool = False) -> ExchangeError:
        if isinstance(exc, ccxt_async.ExchangeNotAvailable):
            return OrderNotFound(f"{self.name}: {what}: {exc}")
        return super()._map_error(exc, write=write, what=what, create=create)


_KIT_ON_BROKEN_COPIES = '''
from adapters.conformance import AdapterConformance
from tests.conformance_venues import bybit_venue
from tests.test_conformance_bites import SideDefaultsToBuy, UnavailableIsNotFound


class TestSideDefaultsToBuy(AdapterConformance):
    async def make_venue(self):
        return await bybit_venue(SideDefaultsToBuy, name="bybit-side-defaults-to-buy")


class TestUnavailableIsNotFound(AdapterConformance):
    async def make_venue(self):
        return await bybit_venue(UnavailableIsNotFound, name="bybit-503-is-not-found")
'''

_BROKEN = re.compile(r"PromiseBroken: promise '([\w-]+)' broken on venue '([\w-]+)'")


def _failures(report: Path) -> set[tuple[str, str, str, str]]:
    """(class, case, promise, venue) of every failed case in a JUnit report."""
    out = set()
    for case in ElementTree.parse(report).iter("testcase"):
        failure = case.find("failure")
        if failure is None:
            continue
        named = _BROKEN.search(failure.get("message", ""))
        promise, venue = named.groups() if named else ("?", "?")
        out.add((case.get("classname", "").rsplit(".", 1)[-1], case.get("name", ""),
                 promise, venue))
    return out


def test_broken_copies_fail_the_kit_naming_the_promise(tmp_path: Path) -> None:
    kit = tmp_path / "test_broken_copies.py"
    kit.write_text(_KIT_ON_BROKEN_COPIES)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ADAPTER_CONFORMANCE_VENUE", None)
    report = tmp_path / "report.xml"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(kit), "-q", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), f"--junitxml={report}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    failed = _failures(report)
    assert failed == {
        # The venue's create reply and its stop reply carry ids only.
        ("TestSideDefaultsToBuy", "test_unknown_fields_are_none", "unknown-is-none",
         "bybit-side-defaults-to-buy"),
        ("TestSideDefaultsToBuy", "test_stop_reads_back_as_placed[long]",
         "stop-reads-back-as-placed", "bybit-side-defaults-to-buy"),
        # A 503 on a write and on a read.
        ("TestUnavailableIsNotFound", "test_write_of_unknown_fate_is_ambiguous[unavailable]",
         "ambiguous-write", "bybit-503-is-not-found"),
        ("TestUnavailableIsNotFound", "test_failed_read_is_not_a_miss[unavailable]",
         "failed-read-is-not-a-miss", "bybit-503-is-not-found"),
    }, run.stdout
    # Everything else still passes: the kit fails on the broken promise only.
    assert re.search(r"\b4 failed, \d+ passed", run.stdout), run.stdout


def test_documented_invocation_runs_the_kit_on_a_named_factory(tmp_path: Path) -> None:
    """``ADAPTER_CONFORMANCE_VENUE=module:factory python -m pytest --pyargs
    adapters.conformance`` (adapters/README.md) runs every case, here on the
    guide's worked example, from outside the repository."""
    env = {**os.environ, "ADAPTER_CONFORMANCE_VENUE": "adapters.conformance.example:make_venue"}
    report = tmp_path / "report.xml"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "adapters.conformance", "-q",
         "-p", "no:cacheprovider", f"--junitxml={report}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    cases = list(ElementTree.parse(report).iter("testcase"))
    ran = [c for c in cases if c.find("skipped") is None]
    assert len(ran) >= 25 and all(c.find("failure") is None for c in cases), run.stdout
    assert {c.get("classname", "").rsplit(".", 1)[-1] for c in cases} == {"TestVenueFromEnv"}
