"""Alerts as the journal queues them: the sink type and the ``alert``
record. Delivery (at least once, bounded in time) is
:func:`fsm.effects.deliver_queued`, the one path of the driver and recovery.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fsm.attempt import Alert, Attempt
from fsm.redact import redact
from fsm.table import State

__all__ = ["AlertSink", "Note", "alert_from_record", "alert_record", "journal_alert",
           "orphaned_alert"]

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


def orphaned_alert(a: Attempt) -> Alert:
    """The alert of an attempt that ended ORPHANED (its last step says why)."""
    r, failed, last = a.request, a.journal_error, a.history[-1]
    extra = (f" The journal also failed ({_said(failed)}): a restart cannot recover this "
             "attempt from it." if failed is not None else "")
    return Alert(
        attempt_id=a.attempt_id, symbol=r.symbol,
        message=(f"ORPHANED {r.side.value} {r.amount:g} {r.symbol}: {last.detail}. Exposure "
                 f"may be open without a stop-loss; check the account.{extra}"),
        state=a.state, at=last.at, history=a.history)


def journal_alert(a: Attempt, now: float) -> Alert:
    """The alert of an attempt whose journal failed while it was live."""
    r = a.request
    assert a.journal_error is not None
    return Alert(
        attempt_id=a.attempt_id, symbol=r.symbol,
        message=(f"the journal failed ({_said(a.journal_error)}) while attempt {a.attempt_id} "
                 f"({r.side.value} {r.amount:g} {r.symbol}) was live; it was driven to "
                 f"{a.state.value} from memory, and a restart cannot recover it from the "
                 "journal. Check the journal's disk."),
        state=a.state, at=now, history=a.history, reason="journal")


def _said(exc: BaseException) -> str:
    return redact(repr(exc))
