"""Alert delivery: one way, used by the driver and by recovery.

An alert is the last line of defence, so delivery is *at least once*: the
alert is queued in the journal (an ``alert`` record) before the callback is
called, and recorded delivered (``alert_delivered``) after it returns;
``recover()`` delivers again every queued alert without the second. A
receiver de-duplicates by :attr:`~fsm.attempt.Alert.alert_id`. The callback
is bounded in time, so a hanging pager never holds an attempt open.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fsm.attempt import Alert
from fsm.table import State

__all__ = ["AlertSink", "Note", "alert_from_record", "alert_record", "deliver_alert",
           "deliver_queued"]

log = logging.getLogger("fsm")

#: What ``PositionOpener(alerts=...)`` takes: any callable, sync or async.
AlertSink = Callable[[Alert], Awaitable[None] | None]

#: Writes one journal record of the alert's attempt: (kind, data).
Note = Callable[[str, dict[str, Any]], None]


async def deliver_alert(sink: AlertSink | None, alert: Alert, limit: float) -> bool:
    """Log ``alert`` at CRITICAL and hand it to ``sink``: a sync callable is
    called (it must return promptly), an async one is awaited for at most
    ``limit`` seconds. Returns whether the sink took it; a sink that fails
    or hangs is logged, never raised: the attempt's outcome does not depend
    on the pager."""
    log.critical(alert.message, extra={"attempt_id": alert.attempt_id,
                                       "state": alert.state.value, "alert_id": alert.alert_id})
    if sink is None:
        return True
    try:
        async with asyncio.timeout(limit):
            result = sink(alert)
            if inspect.isawaitable(result):
                await result
    except TimeoutError:
        log.error("alert %s: the alert callback did not return within %gs; given up (it is "
                  "delivered again by recover())", alert.alert_id, limit,
                  extra={"attempt_id": alert.attempt_id, "alert_id": alert.alert_id})
        return False
    except Exception:
        log.exception("alert %s: the alert callback failed", alert.alert_id,
                      extra={"attempt_id": alert.attempt_id, "alert_id": alert.alert_id})
        return False
    return True


def alert_record(alert: Alert) -> dict[str, Any]:
    """An alert as the journal records it."""
    return {"alert_id": alert.alert_id, "reason": alert.reason, "symbol": alert.symbol,
            "message": alert.message, "state": alert.state.value}


def alert_from_record(attempt_id: str, data: Mapping[str, Any], *, symbol: str,
                      state: State, at: float) -> Alert:
    """The alert an ``alert`` record queued, rebuilt for delivery again."""
    return Alert(attempt_id=attempt_id, symbol=str(data.get("symbol", symbol)),
                 message=str(data["message"]), state=State(data.get("state", state.value)),
                 at=at, history=(), reason=str(data.get("reason", "orphaned")))


async def deliver_queued(sink: AlertSink | None, alert: Alert, limit: float,
                         note: Note | None, *, queue: bool = True) -> bool:
    """Queue ``alert`` in the journal (unless it is queued already), deliver
    it, and record the delivery: the one path of the driver and recovery.
    Without a journal (``note`` is None) it is delivered, unqueued."""
    if note is not None and queue:
        note("alert", alert_record(alert))
    delivered = await deliver_alert(sink, alert, limit)
    if delivered and note is not None:
        note("alert_delivered", {"alert_id": alert.alert_id})
    return delivered
