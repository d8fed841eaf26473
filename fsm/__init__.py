"""Open futures positions safely: an explicit state machine per attempt.

The public contract::

    from fsm import PositionOpener, OpenRequest, Policy, State
    opener = PositionOpener(adapter, policy=Policy(), alerts=callback, journal=None)
    attempt = await opener.open(OpenRequest(symbol="AVL/USDT:USDT", side="buy",
                                            amount=43, stop_loss=0.1290))
    attempt.state    # State.PROTECTED / CLOSE_VERIFIED / ORPHANED / REJECTED
    attempt.history  # every transition: time, trigger, guards, evidence
"""

from fsm.alerts import AlertSink
from fsm.attempt import Alert, Attempt, Transition, attached_stop_id
from fsm.driver import JournalFailed, PositionOpener, client_ids
from fsm.evidence import Facts
from fsm.journal import Journal, JournalLog, JournalSink, MemoryJournal
from fsm.journal_pg import PostgresJournal
from fsm.lease import LeaseBusy, LeaseLost
from fsm.policy import Policy
from fsm.reconcile import ReconcilePolicy, Reconciler, ReconcileReport
from fsm.request import BadRequest, OpenRequest, OppositePosition
from fsm.table import (
    TABLE,
    TERMINAL,
    GuardsFailed,
    InvalidTransition,
    State,
    TransitionError,
    Trigger,
)

__all__ = [
    "TABLE",
    "TERMINAL",
    "Alert",
    "AlertSink",
    "Attempt",
    "BadRequest",
    "Facts",
    "GuardsFailed",
    "InvalidTransition",
    "Journal",
    "JournalFailed",
    "JournalLog",
    "JournalSink",
    "LeaseBusy",
    "LeaseLost",
    "MemoryJournal",
    "OpenRequest",
    "OppositePosition",
    "Policy",
    "PositionOpener",
    "PostgresJournal",
    "ReconcilePolicy",
    "ReconcileReport",
    "Reconciler",
    "State",
    "Transition",
    "TransitionError",
    "Trigger",
    "attached_stop_id",
    "client_ids",
]
