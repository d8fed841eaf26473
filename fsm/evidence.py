"""The evidence an attempt has collected: one immutable record, replaced as
facts arrive. Guards read it; only the driver builds new ones."""

from __future__ import annotations

import attrs

from fsm.model import OrderSnapshot, PositionSnapshot, Side, Source, StopSnapshot
from fsm.request import OpenRequest

__all__ = ["CloseIntent", "Facts", "StopIntent"]


@attrs.frozen
class StopIntent:
    """The stop-loss exactly as we asked the exchange to place it."""

    side: Side
    amount: float
    trigger_price: float
    client_id: str
    reduce_only: bool = True


@attrs.frozen
class CloseIntent:
    """The reduce-only close exactly as we asked the exchange to place it."""

    side: Side
    amount: float
    client_id: str
    reduce_only: bool = True


#: Not slotted: an attempt copies its facts about ten times (a new fact is a
#: new record), and a frozen slotted class sets each of its thirty-odd fields
#: through ``object.__setattr__``, about 25 times slower than the one dict
#: copy :func:`fsm.step.evolve` makes of an instance dict.
@attrs.frozen(slots=False)
class Facts:
    """Everything known about one attempt at time ``now`` (loop seconds).

    Fields are ``None`` until something reports them. Deadlines are absolute
    loop times, so deadline guards are pure functions of this record.
    """

    request: OpenRequest
    now: float
    # entry
    ack: OrderSnapshot | None = None
    create_error: str | None = None  # definitive refusal of the create
    create_ambiguous: bool = False  # the create's outcome is unknown
    entry: OrderSnapshot | None = None  # latest observation of the entry order
    entry_source: Source | None = None
    fetch_deadline: float | None = None
    #: loop time after which a not-found answer proves the entry never
    #: executed: sent + receive window + clock skew + visibility lag (rule
    #: 10); ``None`` when the venue has no receive window
    entry_absent_after: float | None = None
    entry_missing: bool = False  # a look-up sent after that answered not-found
    # the account
    baseline: PositionSnapshot | None = None  # the symbol's position before the entry
    recovered: bool = False  # rebuilt from the journal after a crash
    fills_checked: bool = False  # the symbol's executions since our fill were read
    foreign_fill: str | None = None  # an execution since our fill that is not ours
    # position
    position: PositionSnapshot | None = None  # latest observation, any source
    verify_deadline: float | None = None
    # protection
    stop_intent: StopIntent | None = None
    stop: StopSnapshot | None = None
    stop_error: str | None = None
    protect_deadline: float | None = None
    #: the entry was sent with its stop attached (the exchange arms it at
    #: the fill); ``stop_intent`` is then that stop until a fallback
    stop_attached: bool = False
    #: by when the exchange must show the attached stop it armed
    attached_deadline: float | None = None
    #: why the attached stop is not trusted (missing, wrong, refused): from
    #: then on the attempt protects with a separate stop, as if none had
    #: been attached
    attached_failed: str | None = None
    # rollback
    close_basis: PositionSnapshot | None = None  # the position the close derives from
    close_intent: CloseIntent | None = None
    close_order: OrderSnapshot | None = None
    close_error: str | None = None
    close_deadline: float | None = None
    close_absent_after: float | None = None  # as entry_absent_after, for the close
    close_missing: bool = False  # the close is proven never to have executed

    @property
    def relying_on_attached(self) -> bool:
        """The attempt's protection is still the stop attached to its entry
        (no fallback to a separate stop yet)."""
        return self.stop_attached and self.attached_failed is None

    @classmethod
    def initial(cls, request: OpenRequest, now: float, *,
                baseline: PositionSnapshot | None = None, stop_attached: bool = False) -> Facts:
        """The facts an attempt starts with: ``Facts(request=request, now=now,
        baseline=baseline, stop_attached=stop_attached)``, every other field
        at its default. Built from a copy of the defaults, not by attrs'
        ``__init__``: that one grows the instance dict key by key, resizing
        it as it goes past thirty-odd fields (about five times the cost of
        one copy). The fields have no validators or converters to skip."""
        values = _DEFAULTS.copy()
        values["request"] = request
        values["now"] = now
        values["baseline"] = baseline
        values["stop_attached"] = stop_attached
        facts = object.__new__(cls)
        object.__setattr__(facts, "__dict__", values)  # Facts refuses every assignment
        return facts

    def at(self, now: float) -> Facts:
        """These facts, as of loop time ``now``."""
        return attrs.evolve(self, now=now)

    def with_position(self, snap: PositionSnapshot) -> Facts:
        """Record the latest position observation, from any source."""
        return attrs.evolve(self, position=snap)

    @property
    def close_in_flight(self) -> bool:
        """A close of ours was sent and may still execute: it is neither seen
        terminal, nor refused, nor proven never to have arrived."""
        ci, c = self.close_intent, self.close_order
        if ci is None:
            return False
        if c is None:
            return not self.close_missing and self.close_error is None
        return not c.terminal

    @property
    def exposure(self) -> float:
        """The most this attempt can have added: the entry's reported fill
        when known, else the requested amount (law L1's bound)."""
        if self.entry is not None and self.entry.filled is not None and self.entry.filled > 0:
            return min(self.entry.filled, self.request.amount)
        return self.request.amount


#: Every field of :class:`Facts` at its default, in field order (``request``
#: and ``now``, which have none, as ``None`` until :meth:`Facts.initial`
#: sets them). Plain values only, so copies may share them.
_DEFAULTS: dict[str, object] = {
    f.name: None if f.default is attrs.NOTHING else f.default for f in attrs.fields(Facts)}
assert not any(f.validator or f.converter for f in attrs.fields(Facts))
assert all(f.default is attrs.NOTHING or isinstance(f.default, (type(None), bool, int, float, str))
           for f in attrs.fields(Facts))
assert not hasattr(Facts, "__attrs_post_init__")
