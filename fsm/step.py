"""The step function: which transition fires next, or what evidence to get.

``next_step(state, facts, ctx)`` is pure: no I/O, no clock, no mutation. It
walks the rows of :data:`fsm.table.TABLE` that leave ``state``, in table
order, and returns the first whose guards all hold as a :class:`Fire`, with
the guards' results (each guard evaluated at most once per decision). Where
a row cannot be judged yet because evidence is missing, a *gate* placed
before it returns what to fetch instead (:class:`LookUp`) or what to send
(:class:`Send`). When no row fires, the state's default says which evidence
to wait for next. So the priority of transitions is the table's; the gates
only say when a row may be judged.

The driver (:mod:`fsm.driver`) is the I/O loop around this function: it
sends, looks up, waits for news, and feeds the evidence back.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

import attrs

import fsm.guards as G
from fsm.evidence import CloseIntent, Facts
from fsm.model import OrderSnapshot, OrderStatus, PositionSnapshot, Source, StopSnapshot
from fsm.table import TABLE, GuardsFailed, Row, State, Trigger

__all__ = ["Context", "Fire", "Look", "LookUp", "Send", "Step", "at", "evolve",
           "fall_back_reason", "next_step", "rows_from"]


@attrs.define
class Context:
    """What a decision needs beyond the facts: the attempt's client ids, the
    adapter's abilities, the policy's numbers (for words), and the driver's
    progress within the state. The driver updates it; decisions only read
    it."""

    client_id: str  # the entry's client order id
    close_id: str  # the close's client order id
    stream: bool = False  # the adapter pushes order and position news
    verify_timeout: float = 0.0
    close_timeout: float = 0.0
    #: VERIFIED: a stop may rest already, so it is only looked up, never sent
    stop_lookup: bool = False
    #: VERIFIED: the stop's reply left what the stop guards check unreported
    #: (an ids-only reply): it is read back before it protects anything
    stop_unread: bool = False
    #: NEW: the create's outcome, in words (evidence, detail); None: not sent
    said: tuple[Source | None, str] | None = None


@attrs.frozen
class Fire:
    """Take ``row`` over ``facts``; ``results`` are the guards the decision
    evaluated, in order. ``close``: the close to send once the row is
    recorded (only the ``close_sending`` self-loop has one)."""

    row: Row
    facts: Facts
    results: Mapping[str, bool]
    evidence: Source | None
    detail: str
    close: CloseIntent | None = None

    @property
    def trigger(self) -> Trigger:
        """The row's trigger."""
        return self.row.trigger


class Look(enum.Enum):
    """What a :class:`LookUp` asks the exchange for."""

    ENTRY = "entry"  # the entry order (by id or client id)
    CLOSE = "close"  # our close order
    POSITION = "position"  # the symbol's position
    FILLS = "fills"  # the symbol's executions since our fill (rule 9)
    STOP = "stop"  # our stop, among the symbol's stops
    ATTACHED = "attached"  # the stop the exchange armed with our entry


@attrs.frozen
class LookUp:
    """Get one piece of evidence (waiting for news first, after the first
    poll). ``facts`` are the decision's, kept by the attempt meanwhile;
    ``with_position``: read the position in the same round."""

    what: Look
    facts: Facts
    with_position: bool = False


@attrs.frozen
class Send:
    """Send the entry (``"entry"``) or the stop (``"stop"``)."""

    what: str
    facts: Facts


Step = Fire | LookUp | Send

#: A gate placed before a row: the facts to judge the row over, None to
#: skip the row, or the evidence to get first.
_Gate = Callable[[Facts, Context], "Facts | LookUp | Send | None"]


def rows_from(state: State, table: tuple[Row, ...] = TABLE) -> tuple[Row, ...]:
    """The rows leaving ``state``, in table order."""
    return tuple(r for r in table if state in r.sources)


_ROWS: dict[State, tuple[Row, ...]] = {s: rows_from(s) for s in State}


def _row(state: State, trigger: Trigger, first_guard: str) -> Row:
    return next(r for r in _ROWS[state] if r.trigger is trigger and r.guards[0] == first_guard)


def next_step(state: State, facts: Facts, ctx: Context) -> Step:
    """The next step of an attempt in ``state`` over ``facts`` (see the
    module docstring). ``state`` must not be terminal."""
    memo: dict[str, bool] = {}
    guards = G.GUARDS  # read per decision: a test may count or mutate the guards
    plan, default = _PLAN[state]
    for row, gate, words, close in plan:
        if gate is not None:
            got = gate(facts, ctx)
            if got is None:
                continue
            if not isinstance(got, Facts):
                return got
            if got is not facts:  # derived facts: their guards are judged afresh
                memo = {}
                facts = got
        for name in row.guards:  # the row holds if all its guards do, each run once
            ok = memo.get(name)
            if ok is None:
                ok = memo[name] = guards[name](facts)
            if not ok:
                break
        else:
            evidence, detail = words(facts, ctx)
            return Fire(row, facts, memo, evidence, detail,
                        _close_intent(facts, ctx) if close else None)
    return default(facts, ctx)


# -- gates and defaults, per state ------------------------------------------------------


def _new_gate(f: Facts, ctx: Context) -> Facts | LookUp | Send | None:
    return Send("entry", f) if ctx.said is None else f


def _new_default(f: Facts, ctx: Context) -> Step:
    # An acknowledgement that names no order: the machine refuses it, loudly.
    raise GuardsFailed(State.NEW, Trigger.SUBMIT, {"entry_may_exist": False})


def _entry_default(f: Facts, ctx: Context) -> Step:
    return LookUp(Look.ENTRY, f)


def _position_default(f: Facts, ctx: Context) -> Step:
    return LookUp(Look.POSITION, f)


def _fills_first(f: Facts, ctx: Context) -> Facts | LookUp | Send | None:
    """A recovered attempt reads the symbol's executions before it places a
    stop: the operator may have traded while the process was down (rule 9).
    While the stop attached to the entry is relied on, nothing is placed, so
    nothing is read first (after a fall_back, the separate stop is)."""
    if f.relying_on_attached:
        return f
    if f.recovered and not f.fills_checked and (
            f.protect_deadline is None or f.now < f.protect_deadline):
        return LookUp(Look.FILLS, f)
    return f


def _stop_refused_gate(f: Facts, ctx: Context) -> Facts | LookUp | Send | None:
    """A stop accepted that does not match what was asked, or none by the
    deadline, is refused in words before the ``stop_refused`` row is judged.
    While the stop attached to the entry is relied on, its failure takes the
    ``fall_back`` row first: this one is not judged."""
    if f.relying_on_attached:
        return None
    if G.stop_accepted(f) or G.stop_refused(f):
        reason = f.stop_error or (
            "stop does not match what was asked" if f.stop else "no stop by the deadline")
        return evolve(f, stop_error=reason)
    return f


def _stop_read_back(f: Facts, ctx: Context) -> Facts | LookUp | Send | None:
    """Silence is not agreement: a stop whose reply reports no reduce-only
    flag, side or size (a venue may have dropped the flag) is read back
    before it protects anything, until the protect deadline; after it, the
    reply is all there is."""
    s = f.stop
    if ctx.stop_unread and s is not None and G.stop_accepted(f) \
            and None in (s.reduce_only, s.side, s.amount) \
            and (f.protect_deadline is None or f.now < f.protect_deadline):
        return LookUp(Look.STOP, f)
    return f


def _stop_default(f: Facts, ctx: Context) -> Step:
    if f.relying_on_attached:
        return LookUp(Look.ATTACHED, f)  # nothing is sent: the stop went with the entry
    return LookUp(Look.STOP, f) if ctx.stop_lookup else Send("stop", f)


def _rollback_default(f: Facts, ctx: Context) -> LookUp:
    """The evidence a rollback waits for: the entry's fate while our fill is
    unknown (nothing may be closed), the close's while it may still execute,
    else the position."""
    if f.close_intent is None and not G.order_filled(f) and not G.order_terminal(f):
        return LookUp(Look.ENTRY, f, with_position=True)
    if f.close_in_flight:
        return LookUp(Look.CLOSE, f, with_position=True)
    return LookUp(Look.POSITION, f)


def _unattributable_gate(f: Facts, ctx: Context) -> Facts | LookUp | Send | None:
    # Rule 9: before anything is sent, and before a view of the position is
    # trusted, only the attempt's own orders may have traded the symbol
    # since its fill.
    if f.close_intent is None and not f.fills_checked and G.order_filled(f) \
            and not G.close_deadline_passed(f):
        return LookUp(Look.FILLS, f)
    if G.exposure_unattributable(f) and ctx.stream and not G.close_deadline_passed(f):
        # Nothing will be sent. With a stream, a timestamped view may still
        # prove the attempt's exposure gone before the deadline: wait for it.
        return _rollback_default(f, ctx)
    return f


def _basis_gate(f: Facts, ctx: Context) -> Facts | LookUp | Send | None:
    """The close side derives from a fresh position view of the exchange,
    and only when no close of ours may still execute."""
    p = f.position
    if G.no_close_in_flight(f) and G.order_filled(f) and p is not None \
            and not G.exposure_unattributable(f) \
            and p.size > 0 and p.source in (Source.STREAM, Source.REST):
        return evolve(f, close_basis=p)
    return _rollback_default(f, ctx)


def _fills_before_close(f: Facts, ctx: Context) -> Facts | LookUp | Send | None:
    return f if f.fills_checked else LookUp(Look.FILLS, f)  # again, right before a close


def _protected_words(f: Facts, ctx: Context) -> tuple[Source | None, str]:
    if f.relying_on_attached:
        return Source.STOP, ("the exchange shows the stop attached to the entry: "
                             f"{stop_words(f.stop)}")
    return Source.STOP, f"stop accepted: {stop_words(f.stop)}"


def fall_back_reason(f: Facts) -> str:
    """Why the stop attached to the entry is not trusted, in words."""
    s = f.stop
    if s is None:
        return "no attached stop shown by the deadline"
    if s.status is not OrderStatus.OPEN:
        return f"attached stop {s.status.value if s.status else '?'}: {stop_words(s)}"
    return f"attached stop is not the one asked for: {stop_words(s)}"


def _fall_back_words(f: Facts, ctx: Context) -> tuple[Source | None, str]:
    return (Source.STOP if f.stop else Source.CLOCK,
            f"{fall_back_reason(f)}; placing a separate stop")


def _close_intent(f: Facts, ctx: Context) -> CloseIntent:
    # The close is for the attempt's own fill, never for a view of the whole
    # position: the account may hold more (another's exposure) or, in a stale
    # view, less.
    basis = f.close_basis
    assert basis is not None and basis.side is not None
    return CloseIntent(side=basis.side.closing_side, amount=f.exposure, client_id=ctx.close_id)


S, T = State, Trigger

_GATES: dict[State, dict[Row, _Gate]] = {
    S.NEW: {_row(S.NEW, T.SUBMIT, "entry_may_exist"): _new_gate},
    S.VERIFIED: {
        _row(S.VERIFIED, T.PROTECTED, "stop_accepted"): _stop_read_back,
        _row(S.VERIFIED, T.PROTECT_FAILED, "exposure_unattributable"): _fills_first,
        _row(S.VERIFIED, T.PROTECT_FAILED, "stop_refused"): _stop_refused_gate,
    },
    S.ROLLING_BACK: {
        _row(S.ROLLING_BACK, T.CLOSE_UNVERIFIED, "exposure_unattributable"):
            _unattributable_gate,
        _row(S.ROLLING_BACK, T.CLOSE_UNVERIFIED, "close_side_contradicted"): _basis_gate,
        _row(S.ROLLING_BACK, T.CLOSE_SENDING, "close_side_derivable"): _fills_before_close,
    },
}

_DEFAULT: dict[State, Callable[[Facts, Context], Step]] = {
    S.NEW: _new_default,
    S.PLACED: _entry_default,
    S.FETCHED: _position_default,
    S.VERIFIED: _stop_default,
    S.ROLLING_BACK: _rollback_default,
}


# -- the words of each row: (evidence, detail) --------------------------------------------

_Words = Callable[[Facts, Context], tuple[Source | None, str]]


def _said(f: Facts, ctx: Context) -> tuple[Source | None, str]:
    assert ctx.said is not None
    return ctx.said


def _side_words(f: Facts, ctx: Context) -> tuple[Source | None, str]:
    return f.entry_source, (f"exchange reports side {side_of(f)} for a "
                            f"{f.request.side.value} request: anomaly, not traded on")


def _never_arrived(f: Facts, ctx: Context) -> tuple[Source | None, str]:
    return Source.ORDER, (f"the create {ctx.client_id} never reached the exchange: its "
                          "receive window has passed and the look-up by client id says no "
                          "such order, so it can never execute")


def _confirmed(f: Facts, ctx: Context) -> tuple[Source | None, str]:
    agreed = f.position is not None and f.position.side is f.request.side.opens
    src = f.position.source if agreed and f.position else Source.ORDER
    what = pos_words(f.position) if agreed and f.position else (
        f"entry filled {f.entry.filled if f.entry else None:g}")
    return src, f"position confirmed: {what}"


def _contradicted(f: Facts, ctx: Context) -> tuple[Source | None, str]:
    assert f.position is not None
    return f.position.source, (f"{f.position.source.value} shows {pos_words(f.position)} "
                               f"for a {f.request.side.value}: anomaly")


def _close_side(f: Facts, ctx: Context) -> tuple[Source | None, str]:
    assert f.close_basis is not None
    return f.close_basis.source, (f"exchange shows {pos_words(f.close_basis)} but we asked "
                                  f"to {f.request.side.value}: close side not derivable, "
                                  "nothing sent")


def _sending(f: Facts, ctx: Context) -> tuple[Source | None, str]:
    basis = f.close_basis
    assert basis is not None and basis.side is not None
    detail = (f"exchange shows {pos_words(basis)}: sending reduce-only "
              f"{basis.side.closing_side.value} {f.exposure:g} (this attempt's fill)")
    if f.close_intent is not None:
        detail = (f"close {ctx.close_id} proven never to have arrived (receive window "
                  f"passed, not found): sending it again; {detail}")
    return basis.source, detail


_WORDS: dict[Row, _Words] = {
    _row(S.NEW, T.SUBMIT, "entry_may_exist"): _said,
    _row(S.NEW, T.REJECT, "entry_refused"): _said,
    _row(S.PLACED, T.FETCH_FAILED, "side_contradicted"): _side_words,
    _row(S.PLACED, T.FETCHED, "order_terminal"): lambda f, c: (
        f.entry_source, f"entry {order_words(f.entry)}"),
    _row(S.PLACED, T.NOT_FILLED, "order_terminal"): lambda f, c: (
        f.entry_source, f"entry ended with nothing filled: {order_words(f.entry)}"),
    _row(S.PLACED, T.NOT_FILLED, "entry_never_arrived"): _never_arrived,
    _row(S.PLACED, T.FETCH_FAILED, "fetch_deadline_passed"): lambda f, c: (
        Source.CLOCK, f"no terminal entry order within {c.verify_timeout:g}s"
                      f" (last seen: {order_words(f.entry)})"),
    _row(S.FETCHED, T.VERIFIED, "position_confirmed"): _confirmed,
    _row(S.FETCHED, T.VERIFY_FAILED, "position_contradicted"): _contradicted,
    _row(S.FETCHED, T.VERIFY_FAILED, "verify_deadline_passed"): lambda f, c: (
        Source.CLOCK, "position not confirmed by the deadline"),
    _row(S.VERIFIED, T.PROTECT_FAILED, "exposure_unattributable"): lambda f, c: (
        Source.ORDER, f"{f.foreign_fill}: the exposure may not be this attempt's any more; "
                      "placing nothing"),
    _row(S.VERIFIED, T.PROTECTED, "stop_accepted"): _protected_words,
    _row(S.VERIFIED, T.FALL_BACK, "attached_stop_failed"): _fall_back_words,
    _row(S.VERIFIED, T.PROTECT_FAILED, "stop_refused"): lambda f, c: (
        Source.STOP if f.stop_error != "no stop by the deadline" or f.stop else Source.CLOCK,
        f.stop_error or ""),
    _row(S.ROLLING_BACK, T.CLOSE_VERIFIED, "position_flat"): lambda f, c: (
        flat_source(f), f"flat: {flat_words(f)}"),
    _row(S.ROLLING_BACK, T.CLOSE_UNVERIFIED, "exposure_unattributable"): lambda f, c: (
        Source.ORDER, f"{f.foreign_fill}: this attempt's exposure cannot be told from "
                      "anyone else's; nothing sent"),
    _row(S.ROLLING_BACK, T.CLOSE_UNVERIFIED, "close_deadline_passed"): lambda f, c: (
        Source.CLOCK, f"could not prove flat within {c.close_timeout:g}s ({flat_words(f)})"),
    _row(S.ROLLING_BACK, T.CLOSE_UNVERIFIED, "close_side_contradicted"): _close_side,
    _row(S.ROLLING_BACK, T.CLOSE_SENDING, "close_side_derivable"): _sending,
}

del S, T

assert all(r in _WORDS for r in TABLE), "every row of the table has its words"

#: Per state, once: its rows in table order, each with its gate, its words
#: and whether it sends a close, and the default; a decision then makes one
#: look-up by state.
_PLAN: dict[State, tuple[tuple[tuple[Row, _Gate | None, _Words, bool], ...],
                         Callable[[Facts, Context], Step]]] = {
    s: (tuple((r, _GATES.get(s, {}).get(r), _WORDS[r], r.trigger is Trigger.CLOSE_SENDING)
              for r in _ROWS[s]), _DEFAULT[s])
    for s in _DEFAULT
}


# -- words ---------------------------------------------------------------------------------


def side_of(f: Facts) -> str:
    """The side the exchange reports for our entry, in words."""
    for o in (f.entry, f.ack):
        if o is not None and o.side is not None:
            return o.side.value
    return "none"


def order_words(o: OrderSnapshot | None) -> str:
    """An order snapshot in words, for a history detail (``?``: not
    reported)."""
    if o is None:
        return "nothing"
    # (each field spelled inline: the words of the entry are built on every
    # attempt, and a helper call per field was half their cost)
    side = "?" if o.side is None else o.side.value
    status = "?" if o.status is None else o.status.value
    return (f"id={o.order_id or '?'} side={side} status={status} "
            f"filled={_number(o.filled)}/{_number(o.amount)}")


def _number(x: float | None) -> str:
    """An amount in words: ``?`` when not reported."""
    return "?" if x is None else f"{x:g}"


def pos_words(p: PositionSnapshot | None) -> str:
    """A position view in words."""
    if p is None:
        return "no position view"
    if p.size == 0:
        return f"flat ({p.source.value})"
    assert p.side is not None
    return f"{p.side.value} {p.size:g} ({p.source.value})"


def stop_words(s: StopSnapshot | None) -> str:
    """A stop snapshot in words."""
    if s is None:
        return "none"
    side = s.side.value if s.side else "?"
    amt = f"{s.amount:g}" if s.amount is not None else "?"
    flag = "?" if s.reduce_only is None else s.reduce_only  # not reported: unknown, not False
    return f"id={s.order_id or '?'} {side} {amt} @ {s.trigger_price} reduce_only={flag}"


def flat_source(f: Facts) -> Source:
    """Where the proof of flat came from: the close's own fill, or a view."""
    c, ci = f.close_order, f.close_intent
    if c is not None and ci is not None and c.terminal and c.filled is not None:
        return Source.CLOSE
    return f.position.source if f.position is not None else Source.CLOCK


def flat_words(f: Facts) -> str:
    """The rollback's evidence about flatness, in words."""
    parts = []
    if f.close_order is not None:
        parts.append(f"close {order_words(f.close_order)}")
    if f.close_error:
        parts.append(f.close_error)
    if flat_source(f) is Source.CLOSE and f.position is not None and f.position.size > 0:
        # The close's own fill is the proof; say that the view has not caught up.
        parts.append(f"latest position view {pos_words(f.position)} predates the close")
    else:
        parts.append(f"position {pos_words(f.position)}")
    return "; ".join(parts)


# -- copying facts -------------------------------------------------------------------------

#: A new fact is a new Facts object, so an attempt copies its evidence about
#: ten times; ``attrs.evolve`` introspects every field on each copy, and even
#: ``__init__`` sets every field one by one. These copy the instance dict
#: (Facts is not slotted for this reason): nothing to validate or convert,
#: the fields have neither.
_FACT_FIELDS: frozenset[str] = frozenset(f.name for f in attrs.fields(Facts))
assert not any(f.validator or f.converter for f in attrs.fields(Facts))
assert not hasattr(Facts, "__attrs_post_init__")
_new_facts = object.__new__
_set_attr = object.__setattr__  # Facts itself refuses every assignment


def evolve(f: Facts, **changes: Any) -> Facts:
    """``attrs.evolve(f, **changes)`` for :class:`Facts`, without its cost."""
    if not _FACT_FIELDS.issuperset(changes):
        raise TypeError(f"Facts has no field {sorted(set(changes) - _FACT_FIELDS)}")
    values = f.__dict__.copy()
    values.update(changes)
    new = _new_facts(Facts)
    _set_attr(new, "__dict__", values)
    return new


def at(f: Facts, now: float) -> Facts:
    """``f.at(now)``, without ``attrs.evolve``."""
    values = f.__dict__.copy()
    values["now"] = now
    new = _new_facts(Facts)
    _set_attr(new, "__dict__", values)
    return new
