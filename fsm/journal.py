"""The journal: every attempt's request, intents and transitions, written
before their side effects (rule 8).

:class:`JournalSink` is what the driver writes to. It is synchronous on
purpose: an intent must be durable *before* the request leaves, and a
synchronous call cannot be interleaved with the send that follows it.
:class:`MemoryJournal` keeps records in a list (tests, the demo); the durable
SQLite journal lives beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from fsm.request import OpenRequest
from fsm.table import State

__all__ = ["JournalRecord", "JournalSink", "MemoryJournal"]


@attrs.frozen
class JournalRecord:
    attempt_id: str
    kind: str  # "begin" | "intent" | "transition" | "end"
    at: float
    data: Mapping[str, Any]


@runtime_checkable
class JournalSink(Protocol):
    def begin(
        self, attempt_id: str, request: OpenRequest, client_id: str, at: float
    ) -> None:
        """The attempt exists; nothing has been sent yet."""
        ...

    def intent(self, attempt_id: str, action: str, client_id: str, at: float,
               data: Mapping[str, Any]) -> None:
        """About to send ``action`` ("entry", "stop", "close") with
        ``client_id``. Must be durable when this returns."""
        ...

    def transition(self, attempt_id: str, at: float, data: Mapping[str, Any]) -> None:
        """A transition was taken; ``data`` has trigger, source, dest, guards,
        evidence and the facts that mattered."""
        ...

    def end(self, attempt_id: str, state: State, at: float) -> None:
        """The attempt reached a terminal state."""
        ...


class MemoryJournal:
    """An in-memory :class:`JournalSink` (no durability): for tests and demos."""

    def __init__(self) -> None:
        self.records: list[JournalRecord] = []

    def begin(self, attempt_id: str, request: OpenRequest, client_id: str, at: float) -> None:
        self.records.append(
            JournalRecord(attempt_id, "begin", at, {"request": request, "client_id": client_id})
        )

    def intent(
        self, attempt_id: str, action: str, client_id: str, at: float, data: Mapping[str, Any]
    ) -> None:
        self.records.append(
            JournalRecord(attempt_id, "intent", at,
                          {"action": action, "client_id": client_id, **data})
        )

    def transition(self, attempt_id: str, at: float, data: Mapping[str, Any]) -> None:
        self.records.append(JournalRecord(attempt_id, "transition", at, dict(data)))

    def end(self, attempt_id: str, state: State, at: float) -> None:
        self.records.append(JournalRecord(attempt_id, "end", at, {"state": state}))

    def for_attempt(self, attempt_id: str) -> list[JournalRecord]:
        return [r for r in self.records if r.attempt_id == attempt_id]
