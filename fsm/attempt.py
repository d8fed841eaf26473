"""The attempt record and the recorder that moves it through the table.

The ``transitions`` library's synchronous :class:`transitions.Machine` is the
recorder: one machine per opener, built from :data:`fsm.table.TABLE`, checks
and performs every transition of every attempt. The machine never does I/O;
``AsyncMachine`` is deliberately not used (in 0.9.3 a second trigger cancels
a running transition and swallows ``CancelledError``, which could abandon a
stop-loss request half-way).

Why one shared model and not one per attempt: registering a model with a
``transitions`` machine binds a method per trigger and per state onto it
(~90 µs and several KB per attempt, and an O(n) membership scan per live
attempt), which was most of the engine's CPU per attempt. A trigger is
fired synchronously, with no ``await`` in between, so one model can stand
in for whichever attempt is being moved: set to that attempt's state, fired,
read back. The machine still decides every transition.

Why its own event and transition classes (through ``event_cls`` and
``transition_cls``, the hooks ``transitions``' own extensions use: the
graph, hierarchical and async machines): the table registers no callbacks,
yet the stock classes walk seven empty callback lists and make ten
logging calls per trigger, half the machine's cost. The quiet classes check
the source state, try the trigger's transitions in order and evaluate their
conditions exactly as the stock ones do, and skip only the callbacks;
:func:`build_machine` refuses to build one that holds a callback, and a test
fires every state, trigger and guard outcome through both and compares.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
from transitions import Machine, MachineError
from transitions import Transition as _MachineTransition
from transitions.core import Event as _MachineEvent

from fsm.evidence import Facts
from fsm.guards import evaluate
from fsm.model import OrderSnapshot, PositionSnapshot, Source, StopSnapshot
from fsm.request import OpenRequest
from fsm.table import (
    TABLE,
    TERMINAL,
    GuardsFailed,
    InvalidTransition,
    Row,
    State,
    Trigger,
    rows_for,
)

if TYPE_CHECKING:
    from fsm.step import Fire

__all__ = ["Alert", "Attempt", "Recorder", "Transition", "attached_stop_id", "client_ids"]

log = logging.getLogger("fsm")

#: Client order ids: "sp" + 24 hex chars + one role letter = 27 characters.
#: Alphanumeric only, so every exchange accepts it (OKX allows no dashes,
#: Bybit and Binance cap at 36), and derived from the attempt id so a
#: recovered attempt looks up exactly the ids it sent before.
_ID_PREFIX = "sp"


def client_ids(attempt_id: str) -> tuple[str, str, str]:
    """The (entry, stop, close) client order ids of an attempt."""
    base = _ID_PREFIX + attempt_id
    return base + "e", base + "s", base + "c"


def attached_stop_id(attempt_id: str) -> str:
    """The client id of the stop attached to an attempt's entry (where the
    venue lets the caller name it); a fallback stop uses the stop id of
    :func:`client_ids`, so the two are never confused."""
    return _ID_PREFIX + attempt_id + "a"


#: Not slotted, as :class:`~fsm.evidence.Facts`: an attempt records about
#: four steps, and a frozen slotted class sets each field through
#: ``object.__setattr__`` (a call each, two fifths of building the step),
#: where an instance dict takes a plain store.
@attrs.frozen(slots=False)
class Transition:
    """One step of an attempt's history."""

    at: float  # loop time, seconds
    trigger: Trigger
    source: State
    dest: State
    guards: tuple[tuple[str, bool], ...]  # the row's guards, all True when fired
    evidence: Source | None  # where the deciding evidence came from
    detail: str  # the evidence, in words

    def describe(self) -> str:
        """The step in one line: states, trigger, guards, evidence, detail."""
        guards = ", ".join(name for name, _ in self.guards)
        src = self.evidence.value if self.evidence else "-"
        return (
            f"{self.source.value} --{self.trigger.value}--> {self.dest.value} "
            f"[{guards}] via {src}: {self.detail}"
        )


@attrs.frozen
class Alert:
    """Sent to the opener's ``alerts`` callable: once per ORPHANED attempt
    (``reason="orphaned"``), and once when the journal failed while the
    attempt was live (``reason="journal"``).

    Delivery is at least once: a crash during delivery makes ``recover()``
    deliver it again. ``alert_id`` (the attempt id and the reason) is stable
    across those deliveries, so a receiver de-duplicates by it.
    """

    attempt_id: str
    symbol: str
    message: str
    state: State
    at: float
    history: tuple[Transition, ...]
    reason: str = "orphaned"

    @property
    def alert_id(self) -> str:
        """Stable across deliveries of the same alert: de-duplicate by it."""
        return f"{self.attempt_id}:{self.reason}"


class _Model:
    """What the ``transitions`` machine mutates (one per recorder, standing in
    for the attempt being moved); kept private so that the public
    :class:`Attempt` does not sprout trigger methods. No __slots__:
    ``transitions`` binds trigger and ``is_<state>`` helpers onto it."""

    def __init__(self) -> None:
        self.state: str = State.NEW.name


class Attempt:
    """One attempt to open a position: its state, its orders and its history.

    Read-only for callers; the opener's driver is the only writer. Its facts
    start with the account's position before the entry (``baseline``) and
    whether the stop travels with the entry (``stop_attached``).
    """

    __slots__ = (
        "_history",
        "_state",
        "alert",
        "attempt_id",
        "client_id",
        "created_at",
        "facts",
        "journal_error",
        "request",
        "requests",
    )

    def __init__(self, attempt_id: str, request: OpenRequest, client_id: str, now: float, *,
                 baseline: PositionSnapshot | None = None, stop_attached: bool = False) -> None:
        self.attempt_id = attempt_id
        self.request = request
        self.client_id = client_id  # the entry's client order id
        self.created_at = now  # loop time, after the pre-entry reads
        self.facts = Facts.initial(request, now, baseline=baseline, stop_attached=stop_attached)
        self.alert: Alert | None = None
        #: the first journal write that failed after the entry may have left
        self.journal_error: BaseException | None = None
        #: exchange requests made for this attempt, its pre-entry reads included
        self.requests = 0
        self._history: list[Transition] = []
        self._state = State.NEW

    @property
    def state(self) -> State:
        """Where the attempt is."""
        return self._state

    @property
    def history(self) -> tuple[Transition, ...]:
        """Every transition so far, in order."""
        return tuple(self._history)

    @property
    def terminal(self) -> bool:
        """Whether the attempt has reached a terminal state."""
        return self._state in TERMINAL  # (not through two properties: read every step)

    @property
    def entry(self) -> OrderSnapshot | None:
        """Latest observation of the entry order (or its acknowledgement)."""
        return self.facts.entry or self.facts.ack

    @property
    def stop(self) -> StopSnapshot | None:
        """Latest observation of the stop-loss."""
        return self.facts.stop

    @property
    def close(self) -> OrderSnapshot | None:
        """Latest observation of the rollback's close order."""
        return self.facts.close_order

    @property
    def started_at(self) -> float | None:
        """Loop time of the first transition, if any."""
        return self._history[0].at if self._history else None

    @property
    def ended_at(self) -> float | None:
        """Loop time of the terminal transition, once reached."""
        return self._history[-1].at if self._history and self.terminal else None

    def __repr__(self) -> str:
        r = self.request
        return (
            f"Attempt({self.attempt_id} {r.side.value} {r.amount:g} {r.symbol} "
            f"state={self.state.value} steps={len(self._history)})"
        )


def _condition(row: Row) -> Any:
    # The machine checks the decided trigger against the table without
    # running guard code again: the row's condition reads the results the
    # decision already computed, and holds when every guard of the row held
    # (a guard it did not evaluate did not hold). One condition per row, not
    # per guard: each condition costs the machine a call and a look-up.
    guards = row.guards

    def check(event: Any) -> bool:
        results = event.args[0]  # what Recorder._record passed the trigger
        for name in guards:  # noqa: SIM110 - all() over a generator costs twice this loop
            if not results.get(name, False):
                return False
        return True

    check.__name__ = " & ".join(guards)  # as the diagrams name a row's guards
    return check


class _QuietTransition(_MachineTransition):
    """A transition of a machine without callbacks: its conditions, then the
    state change, without walking (and logging) the empty callback lists on
    each side. The stock ``Transition`` walks seven per trigger."""

    def execute(self, event_data: Any) -> bool:
        if not self._eval_conditions(event_data):
            return False
        # What Machine.set_state does for the one model, with no state's
        # enter or exit callbacks to run around it (nor any callback to read
        # the event's state afterwards).
        dest = event_data.machine.states[self.dest]
        setattr(event_data.model, event_data.machine.model_attribute, dest.value)
        return True


class _QuietEvent(_MachineEvent):
    """An event of a machine without callbacks: the source state is checked
    (``MachineError`` when the trigger is not valid from it), then each
    transition from it is tried in order, as the stock ``Event`` does."""

    def _trigger(self, event_data: Any) -> bool:
        event_data.state = self.machine.get_model_state(event_data.model)
        if self._is_valid_source(event_data.state):  # raises MachineError if not
            for trans in self.transitions[event_data.state.name]:
                event_data.transition = trans
                if trans.execute(event_data):
                    event_data.result = True
                    break
        return bool(event_data.result)


class _Machine(Machine):
    """The recorder's machine: the table's rows with their conditions, and no
    callbacks (nothing the machine runs besides checking a trigger; the
    driver does the I/O). :func:`build_machine` checks that none was added."""

    transition_cls = _QuietTransition
    event_cls = _QuietEvent


def _callbacks(machine: Machine) -> list[str]:
    """Every callback the machine holds, by where it is: the quiet classes
    would skip them, so there must be none."""
    found = [name for name in ("prepare_event", "finalize_event", "on_exception",
                               "before_state_change", "after_state_change", "on_final")
             if getattr(machine, name)]
    found += [f"{s.name}.{hook}" for s in machine.states.values()
              for hook in ("on_enter", "on_exit") if getattr(s, hook)]
    found += [f"{e.name}.{hook}" for e in machine.events.values()
              for ts in e.transitions.values() for t in ts
              for hook in ("prepare", "before", "after") if getattr(t, hook)]
    return found


_Built = tuple[Machine, _Model, dict[Trigger, Any]]

#: The step's guards as recorded in a :class:`Transition`, per row's guards
#: (all True when it fired): built once, not per step. Keyed by the guards'
#: names, a tuple hashed in C, not by the row, whose attrs hash is Python.
_FIRED_GUARDS: dict[tuple[str, ...], tuple[tuple[str, bool], ...]] = {}

#: Machines already built, per thread, by table identity. Building one costs
#: ~150 µs (as much as running an attempt), and simulations and specs create
#: an opener per world. Sharing is safe for the same reason the cursor is:
#: a trigger fires synchronously, and a thread runs one fire at a time.
_built = threading.local()


def _machine_for(table: tuple[Row, ...]) -> _Built:
    cache: dict[int, tuple[tuple[Row, ...], _Built]] = _built.__dict__.setdefault("cache", {})
    hit = cache.get(id(table))
    if hit is not None and hit[0] is table:
        return hit[1]
    built = build_machine(table)
    if len(cache) >= 64:  # tables built on the fly (tests): keep the cache bounded
        cache.clear()
    cache[id(table)] = (table, built)
    return built


def build_machine(table: tuple[Row, ...], machine_cls: type[Machine] = _Machine) -> _Built:
    """The ``transitions`` machine of ``table`` (one transition per row, its
    guards one condition), with the model it moves and its events by
    trigger. ``machine_cls`` is the recorder's quiet machine; the stock
    ``transitions.Machine`` builds the same machine with every callback list
    walked (tests compare the two). Raises ``RuntimeError`` if the quiet
    machine would hold a callback it skips."""
    # States by name, not as enum members: the machine keys everything by
    # name, and an enum member is turned into its name a dozen times per
    # trigger. The names are the same either way.
    machine = machine_cls(
        model=None,
        states=[s.name for s in State],
        initial=State.NEW.name,
        transitions=[
            {
                "trigger": row.trigger.value,
                "source": [s.name for s in State if s in row.sources],
                "dest": row.dest.name,
                "conditions": [_condition(row)],
            }
            for row in table
        ],
        auto_transitions=False,
        send_event=True,
        ignore_invalid_triggers=False,
        model_attribute="state",
    )
    held = _callbacks(machine)
    if held and issubclass(machine_cls, _Machine):  # its events and transitions skip them
        raise RuntimeError(f"the recorder's machine must hold no callbacks: {held}")
    cursor = _Model()
    machine.add_model(cursor, initial=State.NEW.name)
    events = {t: machine.events[t.value] for t in Trigger if t.value in machine.events}
    return machine, cursor, events


class Recorder:
    """Builds one ``transitions`` machine from the table and fires triggers
    on attempts, recording each step. Shared by every attempt of an opener."""

    def __init__(self, table: tuple[Row, ...] = TABLE) -> None:
        self.table = table
        self._machine, self._cursor, self._events = _machine_for(table)

    def track(self, attempt: Attempt, state: State = State.NEW) -> None:
        """Start recording ``attempt`` from ``state`` (recovery resumes an
        attempt in the state its journal reached)."""
        attempt._state = state

    def untrack(self, attempt: Attempt) -> None:
        """Stop recording ``attempt``. Nothing to release: the machine holds
        no per-attempt registration."""

    def fire(
        self,
        attempt: Attempt,
        trigger: Trigger,
        facts: Facts,
        *,
        evidence: Source | None,
        detail: str,
    ) -> Transition:
        """Move ``attempt`` by ``trigger`` over ``facts``, or raise.

        Raises :class:`InvalidTransition` when the table has no such trigger
        from the current state, :class:`GuardsFailed` when it has but no
        row's guards all hold. On success the facts become the attempt's.
        The guards run once, here.
        """
        source = attempt._state
        chosen, results = self._choose(source, trigger, facts)
        if chosen is None:
            raise GuardsFailed(source, trigger, results)
        return self._record(attempt, source, chosen, results, facts, evidence, detail)

    def take(self, attempt: Attempt, decision: Fire) -> Transition:
        """Record a transition :func:`fsm.step.next_step` decided, with the
        guard results it computed: the machine checks the trigger and the
        row, and no guard runs again. A decision made for another state is
        judged afresh, as :meth:`fire` would."""
        source = attempt._state
        row = decision.row
        if source not in row.sources:
            return self.fire(attempt, row.trigger, decision.facts,
                             evidence=decision.evidence, detail=decision.detail)
        return self._record(attempt, source, row, decision.results, decision.facts,
                            decision.evidence, decision.detail)

    def _record(self, attempt: Attempt, source: State, chosen: Row,
                results: Mapping[str, bool], facts: Facts, evidence: Source | None,
                detail: str) -> Transition:
        """Have the machine move from ``source`` by ``chosen``'s trigger over
        ``results``, and record the step on ``attempt``."""
        trigger = chosen.trigger
        cursor = self._cursor
        # What Machine.set_state(source, model=cursor) does, without its
        # look-ups; the machine still checks the state when the trigger runs.
        cursor.state = source._name_  # (the attribute, not the slower property)
        try:
            moved = self._events[trigger].trigger(cursor, results)
        except MachineError as exc:  # the table and the machine disagree: a bug
            raise InvalidTransition(source, trigger) from exc
        dest = chosen.dest
        if not moved or cursor.state != dest._name_:
            raise GuardsFailed(source, trigger, results, detail="machine refused")
        attempt._state = dest
        guards = _FIRED_GUARDS.get(chosen.guards)
        if guards is None:
            guards = _FIRED_GUARDS[chosen.guards] = tuple([(g, True) for g in chosen.guards])
        # In field order, not by keyword: keyword arguments to a class cost
        # CPython a dict per call (a quarter of building the step).
        step = Transition(facts.now, trigger, source, dest, guards, evidence, detail)
        attempt.facts = facts
        attempt._history.append(step)
        if not log.isEnabledFor(logging.INFO):  # skip building the record's fields
            return step
        log.info(
            "attempt %s %s -> %s on %s via %s: %s",
            attempt.attempt_id,
            source.value,
            dest.value,
            trigger.value,
            evidence.value if evidence else "-",
            detail,
            extra={
                "attempt_id": attempt.attempt_id,
                "state": dest.value,
                "trigger": trigger.value,
                "source": evidence.value if evidence else None,
            },
        )
        return step

    def _choose(self, source: State, trigger: Trigger,
                facts: Facts) -> tuple[Row | None, dict[str, bool]]:
        """The first row of ``trigger`` from ``source`` whose guards hold."""
        rows = rows_for(source, trigger) if self.table is TABLE else tuple(
            r for r in self.table if r.trigger is trigger and source in r.sources
        )
        if not rows:
            raise InvalidTransition(source, trigger)
        results: dict[str, bool] = {}
        for row in rows:
            row_results = evaluate(row.guards, facts)
            results.update(row_results)
            if all(row_results.values()):
                return row, results
        return None, results

    def possible(self, state: State, trigger: Trigger, facts: Facts) -> bool:
        """Whether ``trigger`` would succeed from ``state`` over ``facts``."""
        return any(all(evaluate(r.guards, facts).values()) for r in rows_for(state, trigger))
