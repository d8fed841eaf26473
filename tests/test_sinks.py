"""The ready alert sinks: logging, and a webhook posting to a real HTTP
server on the loopback (aiohttp's own server, started by each test)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from adapters.simulated import SimConfig, SimulatedExchange
from fsm import Alert, MemoryJournal, Policy, PositionOpener, State
from fsm.journal import summarize
from fsm.sinks import LoggingSink, WebhookError, WebhookSink, alert_payload, fan_out
from tests.helpers import PRICE, SYMBOL, ids, request


def _alert(reason: str = "orphaned") -> Alert:
    return Alert(attempt_id="a1", symbol=SYMBOL, message="ORPHANED buy 43: check", at=1.0,
                 state=State.ORPHANED, history=(), reason=reason)


class Receiver:
    """A webhook receiver that answers each POST with the next status."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        self.headers.append(dict(request.headers))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status)


@pytest_asyncio.fixture
async def receiver(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver(list(getattr(request, "param", [])))
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield rec, f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_the_webhook_posts_the_alert_as_json(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    await WebhookSink(url, headers={"X-Token": "t"})(_alert())
    assert rec.bodies == [alert_payload(_alert())]
    assert rec.bodies[0]["alert_id"] == "a1:orphaned"
    assert rec.headers[0]["X-Token"] == "t"


@pytest.mark.asyncio
@pytest.mark.parametrize("receiver", [[503, 500]], indirect=True)
async def test_the_webhook_retries_server_errors(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    await WebhookSink(url, retries=3, backoff=0.01)(_alert())
    assert len(rec.bodies) == 3  # two refusals, then taken


@pytest.mark.asyncio
@pytest.mark.parametrize("receiver", [[400]], indirect=True)
async def test_the_webhook_does_not_retry_a_refusal(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    with pytest.raises(WebhookError, match="HTTP 400"):
        await WebhookSink(url, retries=3, backoff=0.01)(_alert())
    assert len(rec.bodies) == 1


@pytest.mark.asyncio
async def test_an_unreachable_webhook_raises_after_its_retries() -> None:
    with pytest.raises(WebhookError, match="ClientConnectorError"):
        await WebhookSink("http://127.0.0.1:9/hook", retries=1, backoff=0.01)(_alert())


@pytest.mark.asyncio
@pytest.mark.parametrize("receiver", [[503, 503, 503, 503]], indirect=True)
async def test_an_engine_with_a_failing_webhook_records_the_alert_undelivered(
        receiver: tuple[Receiver, str]) -> None:
    """End to end on a real loop: the attempt is ORPHANED, the webhook keeps
    answering 503, the alert stays queued in the journal, and the next
    recover() delivers it (the receiver is up again by then)."""
    rec, url = receiver
    ex = SimulatedExchange(SimConfig(prices={SYMBOL: PRICE}, stop_rejected=True,
                                     close_rejected=True, rtt=0.001))
    journal = MemoryJournal()
    sink = WebhookSink(url, retries=3, backoff=0.01)
    policy = Policy(close_timeout=0.2, alert_timeout=5.0)
    attempt = await PositionOpener(ex, journal=journal, alerts=sink, policy=policy,
                                   ids=ids()).open(request())
    assert attempt.state is State.ORPHANED
    (s,) = summarize(journal.read())
    assert len(s.alerts_pending) == 1 and len(rec.bodies) == 4
    await PositionOpener(ex, journal=journal, alerts=sink, policy=policy).recover()
    (s,) = summarize(journal.read())
    assert s.alerts_pending == () and len(rec.bodies) == 5
    assert {b["alert_id"] for b in rec.bodies} == {f"{attempt.attempt_id}:orphaned"}


def test_the_logging_sink_logs_at_critical_with_the_payload(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.CRITICAL, logger="fsm.alerts"):
        LoggingSink()(_alert())
    (rec,) = caplog.records
    assert rec.levelno == logging.CRITICAL and "a1:orphaned" in rec.getMessage()
    assert rec.alert["symbol"] == SYMBOL  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_fan_out_tries_every_sink_and_raises_the_first_failure() -> None:
    got: list[str] = []

    def broken(alert: Alert) -> None:
        raise ConnectionError("down")

    async def fine(alert: Alert) -> None:
        got.append(alert.alert_id)

    with pytest.raises(ConnectionError):
        delivery = fan_out(broken, fine)(_alert())
        assert delivery is not None
        await delivery
    assert got == ["a1:orphaned"]


def test_a_webhook_needs_an_http_url() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookSink("ftp://x")
