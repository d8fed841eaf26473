"""Ready alert sinks, beside the plain callable: a logging sink and a
webhook sink.

Any of them is what ``PositionOpener(alerts=...)`` takes. Delivery is at
least once (see :mod:`fsm.alerts`), so a receiver de-duplicates by the
payload's ``alert_id``::

    from fsm import PositionOpener
    from fsm.sinks import LoggingSink, WebhookSink, fan_out

    pager = WebhookSink("https://hooks.example/opener", headers={"Authorization": "..."})
    opener = PositionOpener(adapter, alerts=fan_out(LoggingSink(), pager))

The webhook sink posts JSON through ``aiohttp``, the HTTP client ccxt
already brings, so it adds no dependency.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping
from typing import Any

from fsm.alerts import AlertSink
from fsm.attempt import Alert

__all__ = ["LoggingSink", "WebhookError", "WebhookSink", "alert_payload", "fan_out"]


def alert_payload(alert: Alert) -> dict[str, Any]:
    """The JSON body a webhook receives: everything but the history."""
    return {
        "alert_id": alert.alert_id,
        "attempt_id": alert.attempt_id,
        "reason": alert.reason,
        "symbol": alert.symbol,
        "state": alert.state.value,
        "message": alert.message,
        "at": alert.at,
    }


class LoggingSink:
    """Logs each alert at CRITICAL on ``logger`` (default ``fsm.alerts``),
    with the alert's fields as structured ``extra`` for a log shipper."""

    def __init__(self, logger: logging.Logger | str = "fsm.alerts") -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger

    def __call__(self, alert: Alert) -> None:
        """Deliver one alert."""
        self.logger.critical("ALERT %s: %s", alert.alert_id, alert.message,
                             extra={"alert": alert_payload(alert)})


class WebhookError(Exception):
    """The webhook did not take the alert after every retry."""


class WebhookSink:
    """POSTs each alert as JSON to ``url``; retries connection errors, 429
    and 5xx with growing back-off; a 2xx is delivery. Anything else after
    the last retry raises :class:`WebhookError`, so the engine records the
    alert undelivered and ``recover()`` delivers it again.

    The engine bounds the whole call with ``Policy.alert_timeout``; keep
    ``retries`` x ``timeout`` within it. ``session`` may be an
    ``aiohttp.ClientSession`` you own; otherwise one is made per call.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        timeout: float = 3.0,
        session: Any = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"WebhookSink.url must be an http(s) URL, got {url!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"WebhookSink.retries must be an int >= 0, got {retries!r}")
        self.url = url
        self.headers = dict(headers or {})
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._session = session

    async def __call__(self, alert: Alert) -> None:
        """Deliver one alert."""
        import aiohttp  # ccxt's HTTP client; imported late to keep the core import light

        body = alert_payload(alert)
        last: str = "not tried"
        owned = self._session is None
        session = self._session or aiohttp.ClientSession()
        try:
            for attempt in range(self.retries + 1):
                if attempt:
                    await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
                try:
                    async with session.post(
                        self.url, json=body, headers=self.headers,
                        timeout=aiohttp.ClientTimeout(total=self.timeout),
                    ) as reply:
                        if 200 <= reply.status < 300:
                            return
                        last = f"HTTP {reply.status}"
                        if reply.status != 429 and reply.status < 500:
                            break  # the receiver refuses it: retrying will not help
                except (aiohttp.ClientError, TimeoutError) as exc:
                    last = f"{type(exc).__name__}: {exc}"
        finally:
            if owned:
                await session.close()
        raise WebhookError(f"webhook did not take alert {alert.alert_id}: {last}")


def fan_out(*sinks: AlertSink) -> AlertSink:
    """One sink that hands each alert to every one of ``sinks``, in order;
    the first failure is raised after all were tried (so the alert is
    recorded undelivered and delivered again)."""

    async def deliver(alert: Alert) -> None:
        failed: BaseException | None = None
        for sink in sinks:
            try:
                result = sink(alert)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - raised below, once every sink was tried
                failed = failed or exc
        if failed is not None:
            raise failed

    return deliver
