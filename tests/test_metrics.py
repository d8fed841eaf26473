"""Observability: ``on_transition``, the metrics helper and the Prometheus
exporter (scraped over HTTP from a real exporter on the loopback)."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from adapters.simulated import SimConfig, SimulatedExchange
from adapters.virtual_time import run_virtual
from fsm import Attempt, Policy, PositionOpener, State, Transition
from fsm.metrics import Histogram, Metrics
from fsm.prometheus import PrometheusMetrics
from tests.helpers import PRICE, SYMBOL, ids, request

WORLDS: list[dict[str, Any]] = [{}, {}, {"stop_rejected": True},
                                {"stop_rejected": True, "close_rejected": True},
                                {"reject_entry": True}]


def _run_all(observer: Any) -> list[Attempt]:
    attempt_ids = ids()  # one sequence: attempt ids are unique across the run

    async def go() -> list[Attempt]:
        out = []
        for i, knobs in enumerate(WORLDS):
            ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}, seed=i, **knobs))
            opener = PositionOpener(ex, on_transition=observer, ids=attempt_ids)
            out.append(await opener.open(request()))
        return out

    return run_virtual(go())


def test_on_transition_sees_every_step_in_order() -> None:
    seen: list[tuple[str, str]] = []

    def observe(a: Attempt, step: Transition) -> None:
        seen.append((a.attempt_id, step.dest.value))

    (a,) = _run_all_one(observe)
    assert seen == [(a.attempt_id, s.dest.value) for s in a.history]


def _run_all_one(observer: Any, **knobs: Any) -> list[Attempt]:
    async def go() -> list[Attempt]:
        ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}, **knobs))
        return [await PositionOpener(ex, on_transition=observer, ids=ids(),
                                     policy=Policy(alert_timeout=1.0)).open(request())]

    return run_virtual(go())


def test_a_failing_or_hanging_observer_never_touches_the_attempt() -> None:
    def broken(a: Attempt, step: Transition) -> None:
        raise RuntimeError("dashboard down")

    async def hangs(a: Attempt, step: Transition) -> None:
        await asyncio.Event().wait()

    for observer in (broken, hangs):
        (a,) = _run_all_one(observer)
        assert a.state is State.PROTECTED


def test_metrics_count_attempts_alerts_protection_time_and_requests() -> None:
    m = Metrics()
    attempts = _run_all(m.on_transition)
    snap = m.snapshot()
    assert snap["attempts"] == {"CLOSE_VERIFIED": 1, "ORPHANED": 1, "PROTECTED": 2,
                                "REJECTED": 1}
    assert snap["alerts"] == {"orphaned": 1}
    ttp = snap["time_to_protection"]
    assert ttp["count"] == 2
    protected = [a for a in attempts if a.state is State.PROTECTED]
    assert ttp["sum"] == pytest.approx(sum(a.history[-1].at - a.created_at for a in protected))
    # Happy path: market rules and position before the entry, create, stop.
    assert [a.requests for a in protected] == [4, 4]
    assert snap["requests_per_attempt"]["count"] == 5
    # Observing again (by hand, after on_transition did) counts nothing twice.
    for a in attempts:
        m.observe(a)
    assert m.snapshot() == snap


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram((1.0, 2.0))
    for v in (0.5, 1.0, 1.5, 3.0):
        h.observe(v)
    assert h.counts == [2, 3] and h.count == 4 and h.sum == 6.0


def test_the_prometheus_exporter_serves_the_numbers_over_http() -> None:
    registry = CollectorRegistry()
    pm = PrometheusMetrics(registry=registry)
    _run_all(pm.on_transition)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert 'position_opener_attempts_total{state="PROTECTED"} 2.0' in text
    assert 'position_opener_attempts_total{state="REJECTED"} 1.0' in text
    assert 'position_opener_alerts_total{reason="orphaned"} 1.0' in text
    assert 'position_opener_alerts_total{reason="journal"} 0.0' in text
    assert "position_opener_time_to_protection_seconds_count 2.0" in text
    # the refused entry made 3 requests, the two protected ones 4 each
    assert 'position_opener_requests_per_attempt_bucket{le="3.0"} 1.0' in text
    assert 'position_opener_requests_per_attempt_bucket{le="4.0"} 3.0' in text
