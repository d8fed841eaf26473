"""The attempt's book: every journal write an attempt makes, and its end.

Rule 8 (journal before side effect) lives here, apart from the I/O loop:
the ``begin`` record and the entry's intent must be durable before anything
is sent (else :class:`JournalFailed`, nothing sent); once the entry may have
left, a failing journal must not stop the engine from protecting or rolling
back, so later writes are guarded, the failure remembered, and alerted and
raised only when the attempt is safe (:meth:`Book.conclude`). A write whose
lease was lost (:class:`~fsm.lease.LeaseLost`) is never swallowed: the
attempt is abandoned there, as a crash would abandon it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from fsm.alerts import AlertSink, journal_alert, orphaned_alert
from fsm.attempt import Alert, Attempt, Transition
from fsm.effects import deliver_queued
from fsm.journal import JournalError, JournalLog, JournalSink, encode_step
from fsm.lease import LeaseLost, lease_data
from fsm.observe import said
from fsm.policy import Policy
from fsm.request import OpenRequest
from fsm.table import State

__all__ = ["Book", "JournalFailed"]

log = logging.getLogger("fsm")


class JournalFailed(JournalError):
    """The journal failed while an attempt was live. Before the entry left,
    nothing was sent (``attempt.state`` is ``NEW``). After, the engine drove
    the attempt to a terminal state from memory and alerted; ``attempt`` is
    that attempt. A restart cannot recover it from the journal."""

    def __init__(self, message: str, attempt: Attempt) -> None:
        super().__init__(message)
        self.attempt = attempt


class Book:
    """The journal writes of an opener's attempts (none without a journal)."""

    def __init__(self, journal: JournalSink | None, alerts: AlertSink | None,
                 policy: Policy) -> None:
        self.journal = journal
        self.alerts = alerts
        self.policy = policy

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def begin(self, a: Attempt, request: OpenRequest) -> None:
        """The lease that took the attempt up, and its ``begin`` record: both
        before anything is sent, or :class:`JournalFailed` with nothing sent."""
        journal = self.journal
        if journal is None:
            return
        try:
            data = lease_data()
            if data and isinstance(journal, JournalLog):
                journal.note(a.attempt_id, "lease", self._now(), data)
            journal.begin(a.attempt_id, request, a.client_id, self._now())
        except Exception as exc:
            raise JournalFailed(f"attempt {a.attempt_id}: the journal failed before anything "
                                f"was sent ({said(exc, True)}). Nothing was sent.", a) from exc

    def transition(self, a: Attempt, step: Transition) -> None:
        """The step just taken, with the facts it was taken on."""
        journal = self.journal
        if journal is not None:
            self._write(a, lambda: journal.transition(a.attempt_id, step.at,
                                                      encode_step(step, a.facts)))

    def intent(self, a: Attempt, action: str, client_id: str, **data: Any) -> None:
        """What is about to be sent, before it is. The entry's intent must be
        durable (rule 8: no entry leaves unless its intent is); later ones
        are guarded writes."""
        if log.isEnabledFor(logging.INFO):
            log.info("attempt %s: about to send %s %s", a.attempt_id, action, client_id,
                     extra={"attempt_id": a.attempt_id, "state": a.state.value,
                            "action": action})
        journal = self.journal
        if journal is None:
            return
        at_ = self._now()
        if action != "entry":
            self._write(a, lambda: journal.intent(a.attempt_id, action, client_id, at_, data))
            return
        try:
            journal.intent(a.attempt_id, action, client_id, at_, data)
        except Exception as exc:
            raise JournalFailed(f"attempt {a.attempt_id}: the journal failed before the entry "
                                f"was sent ({said(exc, True)}). Nothing was sent.", a) from exc

    async def conclude(self, a: Attempt) -> None:
        """After the terminal transition: alert (queued in the journal before
        delivery, so a crash during delivery is delivered again by
        ``recover()``), then write the end record. A journal that failed while
        the attempt was live is alerted and raised only now, with the
        exposure protected, closed or alerted."""
        failed = a.journal_error
        if a.state is State.ORPHANED:
            a.alert = orphaned_alert(a)
            await self._deliver(a, a.alert)
        elif failed is not None:
            await self._deliver(a, journal_alert(a, self._now()))
        journal = self.journal
        if journal is not None:
            self._write(a, lambda: journal.end(a.attempt_id, a.state, self._now()))
        if failed is not None:
            raise JournalFailed(f"attempt {a.attempt_id} ended {a.state.value}, but its "
                                f"journal failed ({said(failed, True)}); see the attempt and "
                                "the alert", a) from failed

    async def _deliver(self, a: Attempt, alert: Alert) -> None:
        journal = self.journal
        note: Callable[[str, dict[str, Any]], None] | None = None
        if isinstance(journal, JournalLog):
            log_ = journal

            def note(kind: str, data: dict[str, Any]) -> None:
                self._write(a, lambda: log_.note(a.attempt_id, kind, self._now(), data))

        await deliver_queued(self.alerts, alert, self.policy.alert_timeout, note)

    def _write(self, a: Attempt, write: Callable[[], None]) -> None:
        """One guarded journal write of a live attempt (see the module)."""
        try:
            write()
        except LeaseLost:
            raise  # fenced out: abandon the attempt here, as a crash would
        except Exception as exc:  # noqa: BLE001 - a failing journal must not stop the rollback
            if a.journal_error is None:
                a.journal_error = exc
                log.critical("attempt %s: the journal failed (%r); driving the attempt to a "
                             "safe state from memory", a.attempt_id, exc,
                             extra={"attempt_id": a.attempt_id, "state": a.state.value})
