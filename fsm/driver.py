"""The driver: the I/O loop around the step function.

Data flows one way. :func:`fsm.step.next_step` decides, from the attempt's
state and facts alone, which row of the table fires or which evidence is
missing; the driver carries that out: it records the transition (the
``transitions`` machine checks it, :mod:`fsm.attempt`), sends the entry,
the stop or the close, looks evidence up (:mod:`fsm.observe`), and feeds
the answers back as new facts. The adapter never decides anything.

Waiting: there is no fixed sleep anywhere. Every wait is "until the next
piece of evidence or the next back-off step, whichever comes first", bounded
by a deadline from :class:`~fsm.policy.Policy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from fsm import guards as G
from fsm.alerts import AlertSink
from fsm.attempt import Attempt, Recorder, Transition, attached_stop_id, client_ids
from fsm.book import Book, JournalFailed
from fsm.effects import CALLER, Tally, notify
from fsm.evidence import Facts, StopIntent
from fsm.journal import JournalSink
from fsm.lease import Lease, LeaseStore, account_of, hold, new_owner
from fsm.observe import Observer
from fsm.policy import Policy
from fsm.port import AttachedStopPort, ExchangePort
from fsm.recovery import recover
from fsm.request import BadRequest, OpenRequest, fit_to_market
from fsm.send import Sender
from fsm.step import Context, Fire, LookUp, Send, at, evolve, next_step
from fsm.table import State, Trigger

__all__ = ["AlertSink", "JournalFailed", "PositionOpener", "TransitionObserver", "client_ids"]

log = logging.getLogger("fsm")

#: The members the loop compares on every step, named once: Python 3.11
#: finds an enum member on its class through ``EnumType.__getattr__``'s slow
#: path (~20 times the cost of a plain attribute).
_VERIFIED, _ROLLING_BACK, _CLOSE_VERIFIED = State.VERIFIED, State.ROLLING_BACK, State.CLOSE_VERIFIED
_FALL_BACK = Trigger.FALL_BACK
#: The states whose decisions read the stream's latest position.
_READ_STREAM = frozenset({State.FETCHED, State.ROLLING_BACK})

#: ``PositionOpener(on_transition=...)``: called with the attempt and the step.
TransitionObserver = Callable[[Attempt, Transition], Awaitable[None] | None]


class PositionOpener:
    """Opens positions safely through one exchange adapter.

    ``alerts`` is called once per ORPHANED attempt with an
    :class:`~fsm.attempt.Alert` (sync or async callable; at least once across
    a crash, de-duplicate by ``alert_id``; see :mod:`fsm.sinks` for ready
    ones). ``journal``, when given, records every intent before its side
    effect. ``ids`` makes attempt ids deterministic (simulation); by default
    they are random. ``on_transition(attempt, step)``, when given, is called
    after every transition (sync, or async and then bounded by
    ``Policy.alert_timeout`` and never awaited by the attempt): the hook for
    metrics (:class:`fsm.metrics.Metrics`) and dashboards.

    Attempts on the same symbol through one opener run one after another:
    with one-way netting, a fill can only be attributed to an attempt if no
    other attempt of ours is moving the same position at the same time.
    """

    def __init__(
        self,
        adapter: ExchangePort,
        *,
        policy: Policy | None = None,
        alerts: AlertSink | None = None,
        journal: JournalSink | None = None,
        ids: Callable[[], str] | None = None,
        on_transition: TransitionObserver | None = None,
        account: str | None = None,
    ) -> None:
        self.adapter = adapter
        #: the account label of leases and ``lease`` records: by default the
        #: adapter's name and a hash of its API key (:func:`fsm.lease.account_of`)
        self.account = account if account is not None else account_of(adapter)
        #: the journal's lease store, when it keeps one (a durable journal
        #: shared by processes): attempts then hold an ``(account, symbol)``
        #: lease and every journal write carries its fencing token
        store = getattr(journal, "store", None)
        self.leases: LeaseStore | None = store if isinstance(store, LeaseStore) else None
        self.owner = new_owner()
        self.policy = policy if policy is not None else Policy()
        #: the journal writes and the alerts of this opener's attempts; the
        #: opener's ``journal`` and ``alerts`` are its (one place holds them)
        self._book = Book(journal, alerts, self.policy)
        self.on_transition = on_transition
        self._observing: set[asyncio.Future[None]] = set()
        self._ids = ids or (lambda: uuid.uuid4().hex[:24])
        self._recorder = Recorder()
        #: whether the adapter has the attached-stop methods: a structural
        #: check costs more than an attempt's own decisions, so it runs once
        self._attach_port = isinstance(adapter, AttachedStopPort)
        self._locks: dict[str, asyncio.Lock] = {}
        self._observe = Observer(adapter, self.policy)
        self._send = Sender(adapter, self.policy, self._observe, self._book.intent)

    @property
    def journal(self) -> JournalSink | None:
        """Where the attempts are journalled (``None``: nowhere)."""
        return self._book.journal

    @property
    def alerts(self) -> AlertSink | None:
        """Where ``ORPHANED`` alerts go."""
        return self._book.alerts

    # -- public ------------------------------------------------------------------

    async def open(self, request: OpenRequest) -> Attempt:
        """Run one attempt to a terminal state and return it.

        Raises :class:`~fsm.request.BadRequest` (nothing sent) when the
        request cannot be sent safely: bad input, a symbol the exchange does
        not list, an amount off its grid, an account it cannot read, or
        (:class:`~fsm.request.OppositePosition`) a position on the other
        side. Raises :class:`JournalFailed` when the journal fails: before
        the entry, with nothing sent; after it, only once the attempt was
        driven to a terminal state from memory and alerted (the attempt is
        ``exc.attempt``). Every other outcome, including exchange failures,
        is a terminal state of the returned attempt.

        Do not wrap this in a timeout of your own: :class:`Policy` bounds it
        (``Policy.max_duration``). Cancelling it abandons the attempt where
        it stands, exactly like a crash (a stop may be half-way out); with a
        journal, :meth:`recover` then drives it to a terminal state.
        """
        if not isinstance(request, OpenRequest):
            raise BadRequest(f"expected an OpenRequest, got {type(request).__name__}")
        attempt_id = self._ids()
        entry_cid, _, _ = client_ids(attempt_id)
        if len(entry_cid) > 36 or not entry_cid.isalnum():
            raise BadRequest(f"attempt id {attempt_id!r} makes an invalid client order id")
        tally = Tally()
        token = CALLER.set(tally)
        try:
            # The lease (when the journal keeps leases) is held from before
            # the account is read until the end record: one attempt per
            # (account, symbol) across processes, every write fenced.
            give_up = self._observe.pre_entry_deadline()
            if self.leases is None:
                return await self._open(request, attempt_id, entry_cid, tally, give_up)
            market = await self._observe.market(request.symbol, give_up)
            async with self.hold_lease(market.symbol) as lease:
                if lease is not None and lease.taken_over:
                    # Its last holder died or was fenced out: finish what it
                    # left before moving the position again (rule 9 would
                    # orphan it otherwise).
                    await recover(self, symbol=market.symbol)
                return await self._open(request, attempt_id, entry_cid, tally, give_up)
        finally:
            CALLER.reset(token)

    async def _open(self, request: OpenRequest, attempt_id: str, entry_cid: str,
                    tally: Tally, give_up: float) -> Attempt:
        attach = self._attaches()
        market = await self._observe.market(request.symbol, give_up)
        async with self._symbol_lock(market.symbol):
            price, baseline = await self._observe.price_and_account(
                market.symbol, request.side, request.reference_price, give_up)
            prepared = fit_to_market(request, market, price)
            if prepared.symbol != request.symbol or prepared.amount != request.amount \
                    or prepared.stop_loss != request.stop_loss:
                log.info("attempt %s: sending %s %g %s with stop %g (asked: %s %g, stop %g) to "
                         "fit the market's grid", attempt_id, prepared.side.value,
                         prepared.amount, prepared.symbol, prepared.stop_loss, request.symbol,
                         request.amount, request.stop_loss,
                         extra={"attempt_id": attempt_id, "state": State.NEW.value})
            attempt = Attempt(attempt_id, prepared, entry_cid, self._now(), baseline=baseline,
                              stop_attached=attach)
            attempt.requests = tally.requests
            CALLER.set(attempt)
            self._book.begin(attempt, prepared)
            await self._drive(attempt)
        # Outside the symbol lock: a slow alert receiver never holds up the
        # next attempt on the symbol.
        await self._book.conclude(attempt)
        return attempt

    async def recover(self) -> list[Attempt]:
        """Drive every unfinished attempt in the journal to a terminal state
        (see :func:`fsm.recovery.recover`). Call once at start-up, before
        opening new attempts; needs a journal that can be read back."""
        return await recover(self)

    async def resume(self, attempt: Attempt) -> Attempt:
        """Drive an attempt rebuilt from the journal to a terminal state, under
        the same rules (used by recovery)."""
        token = CALLER.set(attempt)
        try:
            async with self.hold_lease(attempt.request.symbol):
                async with self._symbol_lock(attempt.request.symbol):
                    await self._drive(attempt)
                await self._book.conclude(attempt)
        finally:
            CALLER.reset(token)
        return attempt

    def _attaches(self) -> bool:
        """Whether this opener sends the stop with the entry
        (``Policy.protection``); refuses ``"attached"`` where the adapter
        cannot, with nothing sent."""
        mode = self.policy.protection
        able = self._attach_port and bool(getattr(self.adapter, "attached_stops", False))
        if mode == "attached" and not able:
            raise BadRequest(f"Policy(protection='attached'), but {self.adapter.name} does not "
                             "arm a stop attached to a market entry. Nothing was sent.")
        return mode == "attached" or (mode == "auto" and able)

    @contextlib.asynccontextmanager
    async def hold_lease(self, symbol: str) -> AsyncIterator[Lease | None]:
        """Hold the ``(account, symbol)`` lease for the body, if the journal
        keeps leases (yields ``None`` otherwise). Re-entrant: recovery takes
        it per attempt, before :meth:`resume` takes it again."""
        if self.leases is None:
            yield None
            return
        async with hold(self.leases, self.account, symbol, self.owner, self.policy) as lease:
            yield lease

    def _symbol_lock(self, symbol: str) -> asyncio.Lock:
        """One attempt per symbol at a time: on a netted position a fill can
        be attributed to an attempt only if no other one of ours moves it."""
        lock = self._locks.get(symbol)
        if lock is None:
            lock = self._locks[symbol] = asyncio.Lock()
        return lock

    # -- the loop ---------------------------------------------------------------------

    async def _drive(self, a: Attempt) -> None:
        self._recorder.track(a, a.state)
        interrupted = True
        try:
            await self._run(a)
            interrupted = False
        finally:
            self._recorder.untrack(a)
            if a.attempt_id in self._observe.replies:  # the stream overtook the create's reply
                await self._observe.settle_reply(a, interrupted=interrupted)

    async def _run(self, a: Attempt) -> None:
        """Ask the step function, do what it says, until a terminal state."""
        # The running loop, looked up once per attempt: asyncio.get_running_loop()
        # makes a system call (getpid) every time, and an attempt reads the
        # loop's clock about ten times.
        loop = asyncio.get_running_loop()
        ctx = Context(client_id=a.client_id, close_id=client_ids(a.attempt_id)[2],
                      stream=self.adapter.position_cache is not None,
                      verify_timeout=self.policy.verify_timeout,
                      close_timeout=self.policy.close_timeout,
                      stop_lookup=self._enter(a, a.state, loop.time()))
        polls = 0
        clock = True  # read the clock before deciding: an await may have let time pass
        while not a.terminal:
            state = a.state  # read once per step: only self._take moves it
            step = next_step(state, self._facts_now(a, state, loop.time() if clock else None),
                             ctx)
            clock = True
            if isinstance(step, LookUp):
                seen = a.facts.stop
                polls += await self._observe.look(a, step, polls)
                # A stop read back is the venue's own view: no longer unread.
                ctx.stop_unread = ctx.stop_unread and a.facts.stop is seen
            elif isinstance(step, Send) and step.what == "entry":
                ctx.said = await self._send.entry(a)
            elif isinstance(step, Send):
                lookup, polls = await self._send.stop(a, polls)
                ctx.stop_lookup = ctx.stop_lookup or lookup
                s = a.facts.stop
                ctx.stop_unread = s is not None and None in (s.reduce_only, s.side, s.amount)
            else:
                self._take(a, step)
                entered = a.state
                if step.close is not None:
                    await self._send.close(a, step.close)
                    polls = 0  # fetch the close's fate at once, then back off
                elif step.row.trigger is _FALL_BACK:
                    # The stop attached to the entry is not trusted: cancel
                    # it, then protect as if none had been attached.
                    await self._send.fall_back(a)
                    polls = 0
                    ctx.stop_lookup = self._enter(a, entered, loop.time())
                elif entered is not state:
                    polls = 0
                    ctx.stop_lookup = self._enter(a, entered, loop.time())
                    if entered is _ROLLING_BACK and _stop_made_wrong(a.facts):
                        # A stop the venue made other than asked (not
                        # reduce-only, the wrong side or size) must not rest:
                        # it could open a position.
                        await self._send.cancel_wrong_stop(
                            a, a.facts.close_deadline or loop.time())
                    # Nothing was awaited since the clock was read (entering
                    # ROLLING_BACK may cancel a wrong stop: read it again
                    # there): no news can have arrived, and the next decision
                    # shares this one's instant (as it always does in virtual
                    # time).
                    clock = entered is _ROLLING_BACK
                if entered is _CLOSE_VERIFIED:
                    await self._send.cancel_stop(a)

    def _facts_now(self, a: Attempt, state: State, now: float | None) -> Facts:
        """The attempt's facts for the next decision in ``state``: as of
        ``now`` (``None``: nothing was awaited since the facts' instant, which
        still holds), with the stream's latest position where the state reads
        one."""
        f = a.facts
        if state in _READ_STREAM:
            cached = self._observe.stream_position(a)
            if cached is not None:
                return evolve(f, now=f.now if now is None else now, position=cached)
        return f if now is None else at(f, now)

    def _enter(self, a: Attempt, state: State, now: float) -> bool:
        """Deadlines and intents of ``state``, just entered, at loop time
        ``now``. Returns whether a stop may rest already (VERIFIED after a
        recovery that found a stop intent): then it is only looked up, never
        sent again (rule 10: client-id uniqueness is no safety net, and a
        second reduce-only stop would, once triggered, close exposure that
        is not the attempt's)."""
        f = a.facts
        if state is _ROLLING_BACK and f.close_deadline is None:
            a.facts = evolve(f, close_deadline=now + self.policy.close_timeout)
        if state is not _VERIFIED:
            return False
        size = f.entry.filled if f.entry is not None else None
        assert size is not None and size > 0, "VERIFIED without a fill"
        r = a.request
        if f.relying_on_attached:
            # The stop went with the entry: nothing is sent, what the exchange
            # armed is read back until its own deadline (then fall_back).
            if f.stop_intent is None or f.attached_deadline is None:
                intent = StopIntent(side=r.side.closing_side, amount=size,
                                    trigger_price=r.stop_loss,
                                    client_id=attached_stop_id(a.attempt_id))
                a.facts = evolve(f, stop_intent=intent,
                                 attached_deadline=now + self.policy.attached_stop_timeout)
            return False
        resumed = f.stop_intent is not None
        if not resumed or f.protect_deadline is None:
            intent = StopIntent(side=r.side.closing_side, amount=size, trigger_price=r.stop_loss,
                                client_id=client_ids(a.attempt_id)[1])
            a.facts = evolve(f, stop_intent=intent,
                             protect_deadline=now + self.policy.protect_timeout)
        return resumed

    # -- recording ----------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _take(self, a: Attempt, decision: Fire) -> Transition:
        step = self._recorder.take(a, decision)
        self._book.transition(a, step)
        if self.on_transition is not None:
            notify(self.on_transition, a, step, self.policy.alert_timeout, self._observing)
        return step


def _stop_made_wrong(f: Facts) -> bool:
    """A stop the venue accepted that is not the one asked for."""
    return G.stop_accepted(f) and not (
        G.stop_reduce_only(f) and G.stop_opposite_side(f) and G.stop_covers_size(f))
