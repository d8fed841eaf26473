"""Alerts as the journal queues them: the sink type and the ``alert``
record. Delivery (at least once, bounded in time) is
:func:`fsm.effects.deliver_queued`, the one path of the driver and recovery.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fsm.attempt import Alert
from fsm.table import State

__all__ = ["AlertSink", "Note", "alert_from_record", "alert_record"]

#: What ``PositionOpener(alerts=...)`` takes: any callable, sync or async.
AlertSink = Callable[[Alert], Awaitable[None] | None]

#: Writes one journal record of the alert's attempt: (kind, data).
Note = Callable[[str, dict[str, Any]], None]


def alert_record(alert: Alert) -> dict[str, Any]:
    """The ``alert`` record that queues ``alert`` in the journal."""
    return {"alert_id": alert.alert_id, "reason": alert.reason, "symbol": alert.symbol,
            "message": alert.message, "state": alert.state.value}


def alert_from_record(attempt_id: str, data: Mapping[str, Any], *, symbol: str,
                      state: State, at: float) -> Alert:
    """The alert an ``alert`` record queued, rebuilt for delivery again."""
    return Alert(attempt_id=attempt_id, symbol=str(data.get("symbol", symbol)),
                 message=str(data["message"]), state=State(data.get("state", state.value)),
                 at=at, history=(), reason=str(data.get("reason", "orphaned")))
