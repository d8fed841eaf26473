"""The reconciliation monitor: the exchange's positions and stops, compared
with the journal (the incident plan's Phase 3).

``ORPHANED`` hands an attempt to this monitor (rule 6), and a crash can leave
state behind that no attempt is watching. :class:`Reconciler` looks at what
the exchange holds and says what is wrong:

* a position with no covering stop (an **orphan**): alert; only if the
  policy allows, protect it with a reduce-only stop at its attempt's
  stop-loss, or close it reduce-only;
* a position, or part of one, that no attempt accounts for (**unknown**:
  external, or lost): alert, never touched;
* an ``ORPHANED`` attempt whose symbol is now flat: **resolved**, and the
  resolution recorded in the journal;
* a stop of ours left for a flat position (**leftover**): reported;
  cancelled only if the policy allows;
* a failed query is **unknown**, never "flat": nothing is concluded from it.

Read-only by default: :class:`ReconcilePolicy` must be told to write to the
exchange. Every write it makes is journalled before it is sent, like the
engine's.

Leases: with a journal that keeps leases (:class:`fsm.lease.LeaseStore`,
SQLite or PostgreSQL shared by a fleet), every write the monitor makes for a
symbol, to the exchange or to the journal, is made while it holds that
``(account, symbol)`` lease, exactly as an attempt is driven (rule 11), and
its journal records carry the fencing token; and once it holds the lease it
reads the journal again, acting only if nothing was written on the symbol
since the check read it. A lease held by a live process (an attempt being
driven elsewhere) is not waited for: the symbol is skipped this round,
logged and listed in :attr:`ReconcileReport.skipped`.

Timing: REST views lag, and an attempt being driven right now has a stop in
flight. The monitor draws no conclusion about an attempt until
``settle_time`` seconds (wall clock) after its last journal record, so it
neither cancels the stop of a position REST has not shown yet nor protects a
position its opener is protecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import inspect
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from fsm.attempt import attached_stop_id, client_ids
from fsm.effects import bounded, hand_over
from fsm.journal import AttemptSummary, JournalLog, summarize
from fsm.lease import (
    LeaseBusy,
    LeaseLost,
    LeaseStore,
    account_of,
    hold,
    new_owner,
)
from fsm.model import (
    OrderNotFound,
    OrderStatus,
    PositionSide,
    PositionSnapshot,
    StopSnapshot,
    qty_eq,
)
from fsm.policy import MAX_WAIT, MIN_REQUEST_TIMEOUT, MIN_WINDOW, Policy, seconds_in
from fsm.port import ExchangePort
from fsm.redact import install as _install_redaction
from fsm.redact import redact
from fsm.table import State

__all__ = [
    "ActionKind",
    "ActionTaken",
    "AlertKind",
    "Assessment",
    "Coverage",
    "LeftoverStop",
    "Observed",
    "OrphanAction",
    "PositionFinding",
    "PositionLegs",
    "QueryStatus",
    "ReconcileAlert",
    "ReconcilePolicy",
    "ReconcileReport",
    "Reconciler",
    "assess",
]

log = logging.getLogger("fsm")
# Exchange errors quote signed requests; every "fsm" log line is redacted.
_install_redaction(log)


@runtime_checkable
class PositionLegs(Protocol):
    """An adapter that can list hedge-mode position legs one by one
    (:meth:`adapters.ccxt.CcxtAdapter.fetch_position_legs`). The monitor
    prefers it to ``fetch_positions``, which nets a symbol's legs: an
    account long 10 and short 10 nets to flat, yet holds two exposures, each
    needing its own stop."""

    async def fetch_position_legs(
        self, symbols: Sequence[str] | None = None
    ) -> list[PositionSnapshot]:
        """Every open position leg (of ``symbols``, or all), one per side."""
        ...


class OrphanAction(enum.Enum):
    """What to do about an uncovered position an attempt of ours owns."""

    ALERT = "alert"  # report and alert only (read-only)
    PROTECT = "protect"  # place a reduce-only stop at the attempt's stop-loss
    CLOSE = "close"  # close the uncovered size with a reduce-only market order


def _instance(name: str, cls: type) -> Callable[[object, object, object], None]:
    def check(_inst: object, _attr: object, value: object) -> None:
        if not isinstance(value, cls):
            raise ValueError(
                f"ReconcilePolicy.{name} must be of type {cls.__name__}, got {value!r}")

    return check


@attrs.frozen
class ReconcilePolicy:
    """What the monitor may do. The defaults write nothing to the exchange.

    Numbers are real numbers of seconds (a bool, NaN or an infinity is
    refused) within the range their comment states; flags are bools. A
    value outside raises ``ValueError`` naming the field.
    """

    #: Uncovered positions of our attempts: alert only, protect, or close.
    orphans: OrphanAction = attrs.field(default=OrphanAction.ALERT,
                                        validator=_instance("orphans", OrphanAction))
    #: Cancel stops of ours that rest for a flat position (they would act on
    #: a future position). Stops we did not place are never cancelled.
    cancel_leftover_stops: bool = attrs.field(default=False,
                                              validator=_instance("cancel_leftover_stops", bool))
    #: Record "resolved" in the journal for ORPHANED attempts found flat
    #: (a journal write, not an exchange write).
    record_resolutions: bool = attrs.field(default=True,
                                           validator=_instance("record_resolutions", bool))
    #: Seconds after an attempt's last journal record before the monitor
    #: draws conclusions about it: longer than one attempt can take
    #: (``Policy.max_duration``, 81 s by default) and than REST lags.
    #: Range: 0 to 86400 s (0: conclude at once, for tests and one-off checks).
    settle_time: float = attrs.field(default=90.0,
                                     validator=seconds_in("ReconcilePolicy", 0.0, 86400.0))
    #: Bound on each exchange call. Range: 0.05 to 3600 s (as
    #: ``Policy.request_timeout``: below that every call times out unsent).
    request_timeout: float = attrs.field(
        default=10.0, validator=seconds_in("ReconcilePolicy", MIN_REQUEST_TIMEOUT, MAX_WAIT))
    #: Bound on handing one alert to an async callback: a pager that hangs
    #: must not stop the next check. Range: 0.05 to 3600 s.
    alert_timeout: float = attrs.field(
        default=10.0, validator=seconds_in("ReconcilePolicy", MIN_REQUEST_TIMEOUT, MAX_WAIT))

    @property
    def read_only(self) -> bool:
        """Whether the policy writes nothing to the exchange."""
        return self.orphans is OrphanAction.ALERT and not self.cancel_leftover_stops


class QueryStatus(enum.Enum):
    """Whether a query answered; a failed one is unknown, never empty."""
    OK = "ok"
    FAILED = "failed"  # unknown: nothing is concluded from it


class Coverage(enum.Enum):
    """How far resting reduce-only stops cover a position."""
    COVERED = "covered"  # reduce-only stops on the closing side cover the size
    PARTIAL = "partial"  # some, not all
    NONE = "none"  # no stop at all
    UNKNOWN = "unknown"  # the stop query failed


class AlertKind(enum.Enum):
    """What a monitor alert is about."""
    ORPHAN_POSITION = "orphan_position"  # a position without a covering stop
    UNKNOWN_POSITION = "unknown_position"  # exposure no attempt accounts for
    STALE_ATTEMPT = "stale_attempt"  # unfinished long after its last record: recover it


class ActionKind(enum.Enum):
    """What a monitor write did."""
    PROTECT = "protect"
    CLOSE = "close"
    CANCEL_STOP = "cancel_stop"


@attrs.frozen
class ReconcileAlert:
    """Passed to the ``alerts`` callable; shaped like the engine's
    :class:`~fsm.attempt.Alert` (``attempt_id``, ``symbol``, ``message``)."""

    kind: AlertKind
    symbol: str
    message: str
    attempt_id: str | None = None


@attrs.frozen
class PositionFinding:
    """One open position and what the monitor made of it."""

    symbol: str
    side: PositionSide
    size: float
    coverage: Coverage
    covered: float  # size the matching stops cover (inf: a close-position stop)
    stops: tuple[StopSnapshot, ...]  # reduce-only stops on the closing side
    attempts: tuple[str, ...]  # attempts that account for it
    known: float  # exposure those attempts account for
    unsettled: tuple[str, ...]  # attempts on the symbol still inside settle_time

    @property
    def orphan(self) -> bool:
        """No covering stop, or only part of one."""
        return self.coverage in (Coverage.NONE, Coverage.PARTIAL)

    @property
    def unexplained(self) -> float:
        """Size that no attempt accounts for (0 when explained)."""
        extra = self.size - self.known
        return 0.0 if extra <= 0 or qty_eq(self.size, self.known) else extra

    @property
    def uncovered(self) -> float:
        """The size no stop covers (0 when covered, or when stops are unknown)."""
        if self.coverage in (Coverage.COVERED, Coverage.UNKNOWN):
            return 0.0
        return max(0.0, self.size - self.covered)


@attrs.frozen
class LeftoverStop:
    """A resting stop with no position for it to reduce."""

    stop: StopSnapshot
    attempt_id: str | None  # ours, or None: placed by someone else
    cancelled: bool = False


@attrs.frozen
class ActionTaken:
    """A write the monitor made (only when its policy allows one)."""

    kind: ActionKind
    symbol: str
    client_id: str | None
    attempt_id: str | None
    ok: bool
    detail: str


@attrs.frozen
class ReconcileReport:
    """The result of one :meth:`Reconciler.check_once`."""

    checked_at: float  # wall clock, unix seconds
    read_only: bool
    positions_status: QueryStatus
    positions_error: str | None
    stops_status: QueryStatus
    stops_error: str | None
    positions: tuple[PositionFinding, ...]
    resolved: tuple[str, ...]  # ORPHANED attempts found flat (and recorded)
    still_orphaned: tuple[str, ...]  # ORPHANED attempts not (yet) resolvable
    stale: tuple[str, ...]  # unfinished attempts past settle_time: run recovery
    leftover_stops: tuple[LeftoverStop, ...]
    actions: tuple[ActionTaken, ...]
    alerts: tuple[ReconcileAlert, ...]  # raised by this check (new ones)
    #: Symbols whose stops were listed one by one, because the exchange
    #: refused an all-symbols query (Binance); ``None``: all in one call.
    stops_scope: tuple[str, ...] | None = None
    #: Writes not made this round, one line per symbol saying why: its
    #: ``(account, symbol)`` lease was held by another process (an attempt
    #: is being driven there), or the journal changed on it since the read.
    skipped: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Both queries answered: the report's conclusions cover everything."""
        return self.positions_status is QueryStatus.OK and self.stops_status is QueryStatus.OK

    @property
    def orphans(self) -> tuple[PositionFinding, ...]:
        """The positions without a covering stop."""
        return tuple(p for p in self.positions if p.orphan)

    @property
    def unknown(self) -> tuple[PositionFinding, ...]:
        """The positions with size no attempt accounts for."""
        return tuple(p for p in self.positions if p.unexplained > 0)

    @property
    def clean(self) -> bool:
        """Complete, and nothing needs a human."""
        return (self.complete and not self.orphans and not self.unknown
                and not self.still_orphaned and not self.stale and not self.leftover_stops)

    def render(self) -> str:
        """The report for a terminal."""
        mode = "read-only" if self.read_only else "may write"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.checked_at))
        lines = [f"reconciliation at {stamp} UTC ({mode})", *self._queries()]
        lines += [_position_line(p) for p in self.positions]
        if not self.positions and self.positions_status is QueryStatus.OK:
            lines.append("  no open positions")
        for s in self.leftover_stops:
            st = s.stop
            owner = s.attempt_id or "not ours"
            lines.append(f"  leftover stop {st.client_id or st.order_id} on {st.symbol} "
                         f"({owner}){' cancelled' if s.cancelled else ''}")
        for label, ids in (("resolved (ORPHANED, now flat)", self.resolved),
                           ("still ORPHANED", self.still_orphaned),
                           ("unfinished, needs recovery", self.stale)):
            if ids:
                lines.append(f"  {label}: {', '.join(ids)}")
        for act in self.actions:
            lines.append(f"  action {act.kind.value} {act.symbol} "
                         f"{'ok' if act.ok else 'FAILED'}: {act.detail}")
        for why in self.skipped:
            lines.append(f"  skipped this round: {why}")
        for al in self.alerts:
            lines.append(f"  ALERT {al.kind.value}: {al.message}")
        lines.append("  clean" if self.clean else "  needs attention")
        return redact("\n".join(lines))

    def _queries(self) -> list[str]:
        lines = []
        for what, status, err in (("positions", self.positions_status, self.positions_error),
                                  ("stops", self.stops_status, self.stops_error)):
            lines.append(f"  {what}: {status.value}" + (f" ({err})" if err else ""))
        if self.stops_scope is not None and self.stops_status is QueryStatus.OK:
            lines.append("  stops listed per symbol (the exchange refuses all at once): "
                         + (", ".join(self.stops_scope) or "no symbol of interest"))
        if self.positions_status is QueryStatus.FAILED:
            lines.append("  positions UNKNOWN: nothing concluded (a failed query is not flat)")
        return lines


def _position_line(p: PositionFinding) -> str:
    flags = []
    if p.orphan:
        flags.append("ORPHAN: no covering stop")
    if p.unexplained > 0:
        flags.append(f"UNKNOWN: {p.unexplained:g} not accounted for by any attempt")
    if p.unsettled:
        flags.append(f"in flight: {', '.join(p.unsettled)}")
    cov = "∞" if math.isinf(p.covered) else f"{p.covered:g}"
    return (f"  {p.symbol} {p.side.value} {p.size:g}: stops {p.coverage.value} "
            f"({cov}); attempts {', '.join(p.attempts) or 'none'}"
            + (f" [{'; '.join(flags)}]" if flags else ""))


@attrs.frozen
class Observed:
    """What one check read: the exchange's positions and stops (None: the
    query failed), the journal's attempts, and the wall clock."""

    now: float
    positions: list[PositionSnapshot] | None
    stops: list[StopSnapshot] | None
    attempts: list[AttemptSummary]
    unresolvable: frozenset[str] = frozenset()  # journalled symbols the exchange cannot name


@attrs.frozen
class Assessment:
    """What :func:`assess` concluded, and what the monitor is to do about it."""

    findings: tuple[PositionFinding, ...]
    act_on: tuple[PositionFinding, ...]  # orphans to protect or close, if the policy says
    resolved: tuple[str, ...]
    still_orphaned: tuple[str, ...]
    stale: tuple[str, ...]
    #: (stop, owning attempt, whether to cancel it)
    leftovers: tuple[tuple[StopSnapshot, str | None, bool], ...]
    alerts: tuple[ReconcileAlert, ...]  # new: not raised before
    alerted: frozenset[tuple[Any, ...]]  # the findings alerted, after this check


AlertSink = Callable[[ReconcileAlert], Awaitable[None] | None]

#: Attempt states whose exposure may still be open, and so may own a position.
_HOLDING = frozenset({State.PROTECTED, State.ORPHANED})


class Reconciler:
    """Compares the exchange with the journal; see the module docstring.

    ``alerts`` (sync or async callable) is called once per finding: an
    orphan or unknown position alerts again only after it was gone from a
    check in between. ``clock`` is the wall clock (tests inject one).

    ``account`` is the account label of leases (default: as the opener's,
    :func:`fsm.lease.account_of` the adapter); ``lease_duration`` how long
    a lease it takes lasts unless renewed (it is renewed while it acts).
    """

    def __init__(
        self,
        adapter: ExchangePort,
        journal: JournalLog,
        *,
        policy: ReconcilePolicy | None = None,
        alerts: AlertSink | None = None,
        clock: Callable[[], float] = time.time,
        account: str | None = None,
        lease_duration: float = 30.0,
    ) -> None:
        self.adapter = adapter
        self.journal = journal
        #: the account label of the leases the monitor takes before it writes
        self.account = account if account is not None else account_of(adapter)
        store = getattr(journal, "store", None)
        #: the journal's lease store, if it keeps one: writes then hold leases
        self.leases: LeaseStore | None = store if isinstance(store, LeaseStore) else None
        self.owner = new_owner()
        # Busy leases are not waited for (the shortest wait a Policy allows).
        self._lease_policy = Policy(lease_duration=lease_duration,
                                    lease_renew=lease_duration / 3, lease_wait=MIN_WINDOW)
        self.policy = policy if policy is not None else ReconcilePolicy()
        self.alerts = alerts
        self._clock = clock
        self._alerted: set[tuple[Any, ...]] = set()
        self._symbols: dict[str, str] = {}  # journalled spelling -> canonical
        self._unresolvable: set[str] = set()

    # -- one check -----------------------------------------------------------------

    async def _canonical(self, attempts: list[AttemptSummary]) -> list[AttemptSummary]:
        """The attempts with their symbols in the exchange's canonical
        spelling, so that a journal written with ``"AVLUSDT"`` is compared
        with positions reported as ``"AVL/USDT:USDT"``. A symbol the exchange
        cannot resolve now keeps its spelling; it then matches no position,
        so its attempts are never called resolved (see ``_unresolvable``)."""
        out = []
        for s in attempts:
            sym = s.request.symbol
            if sym not in self._symbols:
                try:
                    self._symbols[sym] = (await self._call(self.adapter.market(sym))).symbol
                    self._unresolvable.discard(sym)
                except Exception as exc:  # noqa: BLE001 - kept unresolved
                    log.warning("reconcile: cannot resolve the symbol %r of attempt %s: %s",
                                sym, s.attempt_id, _words(exc))
                    self._unresolvable.add(sym)
                    out.append(s)
                    continue
            canon = self._symbols[sym]
            out.append(s if canon == sym else
                       attrs.evolve(s, request=attrs.evolve(s.request, symbol=canon)))
        return out

    async def check_once(self) -> ReconcileReport:
        """Query the exchange once, :func:`assess`, act only as the policy allows."""
        now = self._clock()
        positions: list[PositionSnapshot] | None = None
        stops: list[StopSnapshot] | None = None
        pos_err = stop_err = None
        try:
            positions = await self._fetch_positions()
        except Exception as exc:  # noqa: BLE001 - a failed query is unknown, reported
            pos_err = _words(exc)
        # Read the journal after the positions: an attempt that finished in
        # between is then known, and settle_time covers its lagging views.
        attempts = await self._canonical(summarize(self.journal.read()))
        scope: list[str] | None = None
        try:
            stops, scope = await self._fetch_stops(positions, attempts)
        except Exception as exc:  # noqa: BLE001 - a failed query is unknown, reported
            stop_err = _words(exc)
        seen = Observed(now, positions, stops, attempts, frozenset(self._unresolvable))
        verdict = assess(seen, self.policy, frozenset(self._alerted))
        for alert in verdict.alerts:
            log.critical(alert.message, extra={"attempt_id": alert.attempt_id})
        actions, cancelled, skipped = await self._act(verdict, attempts)
        leftovers = [LeftoverStop(st, owner, cancelled.get(i, False))
                     for i, (st, owner, _) in enumerate(verdict.leftovers)]
        self._alerted = set(verdict.alerted)
        await self._deliver(verdict.alerts)
        pol = self.policy
        return ReconcileReport(
            checked_at=now, read_only=pol.read_only,
            positions_status=QueryStatus.OK if positions is not None else QueryStatus.FAILED,
            positions_error=pos_err,
            stops_status=QueryStatus.OK if stops is not None else QueryStatus.FAILED,
            stops_error=stop_err, positions=verdict.findings, resolved=verdict.resolved,
            still_orphaned=verdict.still_orphaned, stale=verdict.stale,
            leftover_stops=tuple(leftovers), actions=tuple(actions), alerts=verdict.alerts,
            stops_scope=None if scope is None else tuple(scope), skipped=tuple(skipped),
        )

    async def _act(self, verdict: Assessment, attempts: Sequence[AttemptSummary]
                   ) -> tuple[list[ActionTaken], dict[int, bool], list[str]]:
        """The writes the assessment calls for, as the policy allows, symbol
        by symbol, each symbol's under its lease: protect or close orphans,
        record resolutions, cancel leftover stops. Returns the actions, which
        leftovers (by index) were cancelled, and the symbols skipped (why)."""
        actions: list[ActionTaken] = []
        cancelled: dict[int, bool] = {}
        skipped: list[str] = []
        for symbol, writes in self._plan(verdict, attempts).items():
            try:
                async with self._holding(symbol, attempts):
                    for write in writes:
                        act, leftover = await write()
                        if act is not None:
                            actions.append(act)
                        if act is not None and leftover is not None:
                            cancelled[leftover] = act.ok
            except (LeaseBusy, LeaseLost, _Changed) as exc:
                why = f"{symbol}: {exc}; nothing written for it this round"
                log.warning("reconcile: skipped %s", why)
                skipped.append(why)
        return actions, cancelled, skipped

    def _plan(self, verdict: Assessment, attempts: Sequence[AttemptSummary]
              ) -> dict[str, list[Callable[[], Awaitable[tuple[ActionTaken | None, int | None]]]]]:
        """The writes to make, by symbol (each answers its action, if any,
        and the index of the leftover stop it cancels, if one)."""
        work: dict[str, list[Callable[[], Awaitable[tuple[ActionTaken | None, int | None]]]]] = {}
        if self.policy.orphans is not OrphanAction.ALERT:
            for f in verdict.act_on:
                work.setdefault(f.symbol, []).append(functools.partial(self._orphan, f, attempts))
        for aid in verdict.resolved:
            s = next(x for x in attempts if x.attempt_id == aid)
            log.warning("attempt %s: ORPHANED, now flat: resolved", aid,
                        extra={"attempt_id": aid, "state": State.ORPHANED.value})
            if self.policy.record_resolutions:
                work.setdefault(s.request.symbol, []).append(functools.partial(self._resolve, s))
        for i, (st, owner, do) in enumerate(verdict.leftovers):
            if do and owner is not None:
                work.setdefault(st.symbol, []).append(
                    functools.partial(self._cancel_leftover, i, st, owner))
        return work

    async def _orphan(self, f: PositionFinding, attempts: Sequence[AttemptSummary]
                      ) -> tuple[ActionTaken | None, int | None]:
        return await self._act_on_orphan(f, attempts), None

    async def _resolve(self, s: AttemptSummary) -> tuple[ActionTaken | None, int | None]:
        self.journal.note(s.attempt_id, "resolve", _loop_time(), {
            "previous": State.ORPHANED.value,
            "reason": f"{s.request.symbol} flat on the exchange at the check",
        })
        return None, None

    async def _cancel_leftover(self, i: int, st: StopSnapshot,
                               owner: str) -> tuple[ActionTaken | None, int | None]:
        return await self._cancel(st, owner), i

    @contextlib.asynccontextmanager
    async def _holding(self, symbol: str,
                       attempts: Sequence[AttemptSummary]) -> AsyncIterator[None]:
        """Hold ``symbol``'s lease (when the journal keeps leases) for the
        monitor's writes on it, and make sure the journal shows nothing new
        on it since this check read it: an attempt that ran in between
        changed what the check concluded. Raises :class:`LeaseBusy` at once
        if another process holds it, :class:`_Changed` if the journal moved."""
        if self.leases is None:
            yield
            return
        async with hold(self.leases, self.account, symbol, self.owner, self._lease_policy):
            seen = _on_symbol(attempts, symbol, self._symbols)
            now = _on_symbol(summarize(self.journal.read()), symbol, self._symbols)
            if now != seen:
                raise _Changed("the journal changed on it since the check read it "
                               "(an attempt ran meanwhile)")
            yield

    async def _fetch_positions(self) -> list[PositionSnapshot]:
        """Every open position, hedge-mode legs one by one when the adapter
        can list them (see :class:`PositionLegs`)."""
        if isinstance(self.adapter, PositionLegs):
            return list(await self._call(self.adapter.fetch_position_legs(None)))
        return list(await self._call(self.adapter.fetch_positions(None)))

    async def _fetch_stops(
        self, positions: list[PositionSnapshot] | None, attempts: Sequence[AttemptSummary]
    ) -> tuple[list[StopSnapshot], list[str] | None]:
        """Every open stop that matters, and the symbols listed one by one
        (``None``: all in one call). Where the exchange refuses an
        all-symbols query (Binance USD-M always does through ccxt), per
        symbol: every symbol with an open position, and every symbol on which
        the journal says a stop of ours may rest: an attempt that sent (or
        may have sent) one, finished or not, since a stop outlives the
        attempt that placed it and a leftover one would act on a future
        position."""
        try:
            return list(await self._call(self.adapter.fetch_stops(None))), None
        except Exception as exc:  # noqa: BLE001 - refused all at once: asked per symbol
            first = _words(exc)
        symbols = {p.symbol for p in positions or [] if p.size > 0}
        symbols |= {s.request.symbol for s in attempts if _may_have_a_stop(s)}
        log.info("fetching stops per symbol (%d), all at once failed: %s", len(symbols), first)
        out: list[StopSnapshot] = []
        for sym in sorted(symbols):
            out.extend(await self._call(self.adapter.fetch_stops(sym)))
        return out, sorted(symbols)

    # -- the loop --------------------------------------------------------------------

    async def run(
        self,
        interval: float = 30.0,
        *,
        max_backoff: float = 600.0,
        on_report: Callable[[ReconcileReport], Awaitable[object] | object] | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Check every ``interval`` seconds until ``stop`` is set (or the task
        is cancelled). After a check that failed (an exception, or a query
        that did not answer) the wait doubles, up to ``max_backoff``, so a
        rate-limited or unreachable exchange is not hammered; one complete
        check resets it. Nothing stops the loop but ``stop`` and
        cancellation: an exception from a check (the exchange, the journal)
        or from ``on_report`` (sync or async) is logged and the loop goes
        on."""
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"interval must be a finite number > 0, got {interval!r}")
        failures = 0
        while stop is None or not stop.is_set():
            try:
                report = await self.check_once()
            except Exception:
                log.exception("reconciliation check failed")
                failures += 1
            else:
                failures = 0 if report.complete else failures + 1
                if on_report is not None:
                    await _survive(on_report, report)
            delay = min(interval * 2 ** failures, max(max_backoff, interval))
            if stop is None:
                await asyncio.sleep(delay)
            else:
                try:
                    async with asyncio.timeout(delay):
                        await stop.wait()
                except TimeoutError:
                    pass

    # -- writes (policy-gated) ----------------------------------------------------------

    async def _act_on_orphan(self, f: PositionFinding,
                             attempts: Sequence[AttemptSummary]) -> ActionTaken | None:
        pol = self.policy
        if pol.orphans is OrphanAction.ALERT:
            return None
        kind = ActionKind.PROTECT if pol.orphans is OrphanAction.PROTECT else ActionKind.CLOSE
        owners = [s for s in attempts if s.attempt_id in f.attempts]
        if len(owners) != 1 or f.unexplained > 0:
            return ActionTaken(kind, f.symbol, None, None, False,
                               "not sent: the position is not exactly one attempt's "
                               f"(attempts: {', '.join(f.attempts) or 'none'})")
        owner = owners[0]
        r = owner.request
        if f.side is not r.side.opens:
            # Rule 5: the exchange's side and ours disagree; send nothing.
            return ActionTaken(kind, f.symbol, None, owner.attempt_id, False,
                               f"not sent: position is {f.side.value} but the attempt asked to "
                               f"{r.side.value}")
        side = f.side.closing_side
        amount = f.uncovered
        cid = _client_id("s" if kind is ActionKind.PROTECT else "c")
        self.journal.note(owner.attempt_id, "reconcile", _loop_time(), {
            "action": "stop" if kind is ActionKind.PROTECT else "close", "client_id": cid,
            "side": side.value, "amount": amount, "reduce_only": True,
            "trigger_price": r.stop_loss if kind is ActionKind.PROTECT else None,
        })
        try:
            if kind is ActionKind.PROTECT:
                await self._call(self.adapter.place_stop(
                    symbol=f.symbol, side=side, amount=amount, trigger_price=r.stop_loss,
                    client_id=cid))
                detail = f"reduce-only {side.value} stop {amount:g} @ {r.stop_loss:g}"
            else:
                await self._call(self.adapter.create_order(
                    symbol=f.symbol, side=side, amount=amount, client_id=cid, reduce_only=True))
                detail = f"reduce-only {side.value} close {amount:g}"
        except Exception as exc:  # noqa: BLE001 - the write's failure is the report's
            log.error("reconcile %s of %s failed: %s", kind.value, f.symbol, _words(exc))
            return ActionTaken(kind, f.symbol, cid, owner.attempt_id, False,
                               f"failed: {_words(exc)}")
        log.warning("reconcile: %s for %s (attempt %s)", detail, f.symbol, owner.attempt_id,
                    extra={"attempt_id": owner.attempt_id})
        return ActionTaken(kind, f.symbol, cid, owner.attempt_id, True, detail)

    async def _cancel(self, st: StopSnapshot, owner: str) -> ActionTaken:
        cid = st.client_id
        self.journal.note(owner, "reconcile", _loop_time(), {
            "action": "cancel", "client_id": cid, "order_id": st.order_id})
        try:
            await self._call(self.adapter.cancel_order(symbol=st.symbol, order_id=st.order_id,
                                                       client_id=cid))
        except OrderNotFound:
            return ActionTaken(ActionKind.CANCEL_STOP, st.symbol, cid, owner, True,
                               "already gone")
        except Exception as exc:  # noqa: BLE001 - the cancel's failure is the report's
            return ActionTaken(ActionKind.CANCEL_STOP, st.symbol, cid, owner, False,
                               f"failed: {_words(exc)}")
        return ActionTaken(ActionKind.CANCEL_STOP, st.symbol, cid, owner, True,
                           f"cancelled leftover stop {cid or st.order_id}")

    # -- plumbing ---------------------------------------------------------------------------

    async def _deliver(self, alerts: Sequence[ReconcileAlert]) -> None:
        if self.alerts is None:
            return
        for alert in alerts:
            await hand_over(self.alerts, alert, self.policy.alert_timeout,
                            f"reconciliation alert on {alert.symbol}")

    async def _call(self, aw: Awaitable[Any]) -> Any:
        """One exchange call, bounded like the engine's (and, under a lease
        that expired by our clock, not sent at all)."""
        return await bounded(aw, self.policy.request_timeout, ambiguous=False)


# -- the judgement: pure -----------------------------------------------------------------------


def assess(seen: Observed, policy: ReconcilePolicy,
           alerted: frozenset[tuple[Any, ...]] = frozenset()) -> Assessment:
    """Compare what the exchange holds with what the journal says, without
    I/O: which positions are orphans or unknown, which ORPHANED attempts
    are resolved, which attempts are stale, which stops are leftovers (and
    which of those the policy lets the monitor cancel). ``alerted`` are the
    findings already alerted: they alert again only after a check that
    could have seen them did not."""
    settled = {s.attempt_id: _settled(s, seen.now, policy.settle_time) for s in seen.attempts}
    owners = _stop_owners(seen.attempts)
    open_pos = [p for p in seen.positions or [] if p.size > 0 and p.side is not None]
    findings = tuple(_finding(p, seen.stops, seen.attempts, settled, owners) for p in open_pos)
    raised: dict[tuple[Any, ...], ReconcileAlert] = {}
    for f in findings:
        if not f.unsettled:  # else an opener is working on this symbol right now
            raised.update(_position_alerts(f))
    stale = tuple(s for s in seen.attempts if not s.finished and settled[s.attempt_id])
    for u in stale:
        raised[("stale", u.attempt_id)] = ReconcileAlert(
            AlertKind.STALE_ATTEMPT, u.request.symbol,
            f"attempt {u.attempt_id} ({u.request.side.value} {u.request.amount:g} "
            f"{u.request.symbol}) is unfinished at {u.state.value} with no journal record "
            f"for {policy.settle_time:g}s+: run recovery (PositionOpener.recover)", u.attempt_id)
    resolved, still = _orphaned_attempts(seen, settled, {p.symbol for p in open_pos})
    # A finding that went away alerts again if it returns; one this check
    # could not judge (a query failed, an opener is busy on the symbol) has
    # not gone away, so a flapping exchange does not re-alert it.
    busy = {f.symbol for f in findings if f.unsettled}
    kept = {k for k in alerted
            if k in raised or not _judged(k, seen.positions, seen.stops, busy)}
    return Assessment(
        findings=findings,
        act_on=tuple(f for f in findings if f.orphan and not f.unsettled),
        resolved=resolved, still_orphaned=still, stale=tuple(s.attempt_id for s in stale),
        leftovers=_leftovers(seen, policy, settled, owners, open_pos),
        alerts=tuple(al for k, al in raised.items() if k not in alerted),
        alerted=frozenset(kept | raised.keys()),
    )


def _position_alerts(f: PositionFinding) -> dict[tuple[Any, ...], ReconcileAlert]:
    out: dict[tuple[Any, ...], ReconcileAlert] = {}
    if f.orphan:
        whose = f", attempt(s) {', '.join(f.attempts)}" if f.attempts else ""
        out[("orphan", f.symbol, f.side, round(f.uncovered, 12))] = ReconcileAlert(
            AlertKind.ORPHAN_POSITION, f.symbol,
            f"{f.symbol} {f.side.value} {f.size:g} has no covering stop "
            f"({f.coverage.value}, {f.uncovered:g} uncovered){whose}",
            f.attempts[0] if len(f.attempts) == 1 else None)
    if f.unexplained > 0:
        out[("unknown", f.symbol, f.side, round(f.unexplained, 12))] = ReconcileAlert(
            AlertKind.UNKNOWN_POSITION, f.symbol,
            f"{f.symbol} {f.side.value} {f.size:g}: {f.unexplained:g} is not accounted "
            "for by any attempt in the journal (external or lost); not touched")
    return out


def _orphaned_attempts(seen: Observed, settled: dict[str, bool],
                       open_symbols: set[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """ORPHANED attempts: (resolved, still orphaned). Resolved when their
    symbol is flat, settled, and known to the exchange."""
    resolved: list[str] = []
    still: list[str] = []
    for s in seen.attempts:
        if s.ended is not State.ORPHANED or s.resolved:
            continue
        sym = s.request.symbol
        flat = seen.positions is not None and sym not in open_symbols \
            and sym not in seen.unresolvable
        (resolved if flat and settled[s.attempt_id] else still).append(s.attempt_id)
    return tuple(resolved), tuple(still)


def _leftovers(seen: Observed, policy: ReconcilePolicy, settled: dict[str, bool],
               owners: dict[str, str], open_pos: Sequence[PositionSnapshot]
               ) -> tuple[tuple[StopSnapshot, str | None, bool], ...]:
    """Resting stops with nothing to reduce, their owner, and whether the
    policy lets the monitor cancel them now (ours, and no opener busy)."""
    if seen.positions is None or seen.stops is None:
        return ()
    out = []
    for st in seen.stops:
        if _reduces_some(st, open_pos):
            continue
        owner = owners.get(st.client_id or "")
        busy = any(not settled[s.attempt_id] for s in seen.attempts
                   if s.request.symbol == st.symbol)
        out.append((st, owner, policy.cancel_leftover_stops and owner is not None and not busy))
    return tuple(out)


# -- pure helpers -----------------------------------------------------------------------------


class _Changed(Exception):
    """The journal moved on a symbol between the check's read and its writes."""


def _on_symbol(attempts: Sequence[AttemptSummary], symbol: str,
               canonical: dict[str, str]) -> list[tuple[str, int]]:
    """Each attempt on ``symbol`` (in any spelling) and its record count."""
    return sorted((s.attempt_id, len(s.records)) for s in attempts
                  if canonical.get(s.request.symbol, s.request.symbol) == symbol)


def _finding(p: PositionSnapshot, stops: list[StopSnapshot] | None,
             attempts: Sequence[AttemptSummary], settled: dict[str, bool],
             stop_owner: dict[str, str]) -> PositionFinding:
    assert p.side is not None
    closing = p.side.closing_side
    mine = [st for st in stops or [] if st.symbol == p.symbol and st.side in (closing, None)
            and st.reduce_only is not False and st.status in (None, OrderStatus.OPEN)]
    covered = sum(math.inf if st.amount is None else st.amount for st in mine)
    if stops is None:
        coverage = Coverage.UNKNOWN
    elif covered >= p.size or qty_eq(covered, p.size):
        coverage = Coverage.COVERED
    elif covered > 0:
        coverage = Coverage.PARTIAL
    else:
        coverage = Coverage.NONE
    resting = {st.client_id for st in stops or [] if st.client_id}
    resting_ids = {st.order_id for st in stops or [] if st.order_id}
    owners: list[AttemptSummary] = []
    for s in attempts:
        if s.request.symbol != p.symbol or s.request.side.opens is not p.side:
            continue
        if not s.finished or (s.ended is State.ORPHANED and not s.resolved):
            owners.append(s)
        elif s.ended is State.PROTECTED and (
                stops is None or client_ids(s.attempt_id)[1] in resting
                or attached_stop_id(s.attempt_id) in resting
                or (s.stop_order_id is not None and s.stop_order_id in resting_ids)):
            # A PROTECTED attempt holds its position while its stop rests; once
            # the stop is gone (triggered, cancelled) the position is not its.
            owners.append(s)
    unsettled = tuple(s.attempt_id for s in attempts
                      if s.request.symbol == p.symbol and not settled[s.attempt_id])
    return PositionFinding(
        symbol=p.symbol, side=p.side, size=p.size, coverage=coverage, covered=covered,
        stops=tuple(mine), attempts=tuple(s.attempt_id for s in owners),
        known=sum(s.exposure for s in owners), unsettled=unsettled,
    )


def _reduces_some(st: StopSnapshot, open_pos: Sequence[PositionSnapshot]) -> bool:
    """Whether the stop has a position to reduce (same symbol, closing side)."""
    for p in open_pos:
        if p.symbol == st.symbol and p.side is not None and st.side in (p.side.closing_side, None):
            return True
    return False


def _stop_owners(attempts: Sequence[AttemptSummary]) -> dict[str, str]:
    """Client id of every stop we may have placed → its attempt."""
    out: dict[str, str] = {}
    for s in attempts:
        out[client_ids(s.attempt_id)[1]] = s.attempt_id
        out[attached_stop_id(s.attempt_id)] = s.attempt_id
        for rec in s.records:
            if rec.kind == "reconcile" and rec.data.get("action") == "stop":
                out[str(rec.data["client_id"])] = s.attempt_id
    return out


def _settled(s: AttemptSummary, now: float, settle_time: float) -> bool:
    last = s.last_wall
    return last is None or now - last >= settle_time


def _client_id(role: str) -> str:
    # "sr" + 24 hex + role: alphanumeric, 27 characters, like the engine's.
    return "sr" + uuid.uuid4().hex[:24] + role


def _words(exc: BaseException) -> str:
    """An exception in one line, secrets redacted: for reports and logs."""
    return redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _may_have_a_stop(s: AttemptSummary) -> bool:
    """Whether a stop of this attempt may rest on the exchange: it journalled
    a stop intent (the engine's or the monitor's), or it is unfinished and
    may send one."""
    if not s.finished or "stop" in s.intents:
        return True
    if "attached_stop_client_id" in (s.intents.get("entry") or {}):
        return True  # the entry carried its stop
    return any(r.kind == "reconcile" and r.data.get("action") == "stop" for r in s.records)


def _judged(key: tuple[Any, ...], positions: object, stops: object, busy: set[str]) -> bool:
    """Whether a check could have seen the finding ``key`` (so that its
    absence means it went away)."""
    if key[0] in ("orphan", "unknown"):
        if positions is None or key[1] in busy:
            return False
        if key[0] == "orphan" and stops is None:
            return False
    return True


async def _survive(on_report: Callable[[ReconcileReport], object],
                   report: ReconcileReport) -> None:
    try:
        result = on_report(report)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("the reconciliation on_report callback failed; the monitor goes on")


def _loop_time() -> float:
    return asyncio.get_running_loop().time()

