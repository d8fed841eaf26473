"""The driver: asks the exchange for facts and feeds them to the machine.

Data flows one way. The driver's coroutine does all I/O through the adapter,
turns answers into :class:`~fsm.evidence.Facts`, and fires triggers on the
attempt; the machine (:mod:`fsm.table` + :mod:`fsm.guards`) decides whether
the trigger may move it. The attempt's state then decides the next request.
The adapter never decides anything.

Waiting: there is no fixed sleep anywhere. Every wait is "until the next
piece of evidence or the next back-off step, whichever comes first", bounded
by a deadline from :class:`~fsm.policy.Policy`.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import operator
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import attrs

from fsm import guards as G
from fsm.alerts import AlertSink, deliver_queued
from fsm.attempt import Alert, Attempt, Recorder, Transition
from fsm.evidence import CloseIntent, Facts, StopIntent
from fsm.journal import JournalError, JournalLog, JournalSink
from fsm.model import (
    AmbiguousError,
    DuplicateClientId,
    Market,
    OrderNotFound,
    OrderRejected,
    OrderSnapshot,
    PositionSnapshot,
    Side,
    Source,
    StopSnapshot,
    TransientError,
    UnknownSymbol,
)
from fsm.policy import Policy
from fsm.port import ExchangePort, PositionCache
from fsm.redact import redact
from fsm.request import BadRequest, OpenRequest, OppositePosition, fit_to_market
from fsm.table import State, Trigger

__all__ = ["AlertSink", "JournalFailed", "PositionOpener", "TransitionObserver", "client_ids"]

log = logging.getLogger("fsm")

T = TypeVar("T")


#: Client order ids: "sp" + 24 hex chars + one role letter = 27 characters.
#: Alphanumeric only, so every exchange accepts it (OKX allows no dashes,
#: Bybit and Binance cap at 36), and derived from the attempt id so a
#: recovered attempt looks up exactly the ids it sent before.
_ID_PREFIX = "sp"


#: ``PositionOpener(on_transition=...)``: called with the attempt and the step.
TransitionObserver = Callable[[Attempt, Transition], Awaitable[None] | None]


def client_ids(attempt_id: str) -> tuple[str, str, str]:
    """The (entry, stop, close) client order ids of an attempt."""
    base = _ID_PREFIX + attempt_id
    return base + "e", base + "s", base + "c"


def _new_attempt_id() -> str:
    return uuid.uuid4().hex[:24]


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
    ) -> None:
        self.adapter = adapter
        self.policy = policy if policy is not None else Policy()
        self.alerts = alerts
        self.journal = journal
        self.on_transition = on_transition
        self._observing: set[asyncio.Future[None]] = set()
        self._ids = ids or _new_attempt_id
        self._recorder = Recorder()
        self._locks: dict[str, asyncio.Lock] = {}
        #: create replies still in flight after the stream answered first
        self._replies: dict[str, asyncio.Future[OrderSnapshot]] = {}
        #: markets by the spelling asked for; a venue's rules change rarely,
        #: and ccxt itself loads them once
        self._markets: dict[str, Market] = {}

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
        tally = _Tally()
        token = _CALLER.set(tally)
        try:
            return await self._open(request, attempt_id, entry_cid, tally)
        finally:
            _CALLER.reset(token)

    async def _open(self, request: OpenRequest, attempt_id: str, entry_cid: str,
                    tally: _Tally) -> Attempt:
        market = await self._market(request.symbol)
        async with self._symbol_lock(market.symbol):
            if request.reference_price is None:
                # Two reads at once: neither depends on the other.
                got_price, got_view = await asyncio.gather(
                    self._market_price(market.symbol),
                    self._account_before_entry(market.symbol, request.side),
                    return_exceptions=True)
                if isinstance(got_price, BaseException):
                    raise got_price
                if isinstance(got_view, BaseException):
                    raise got_view
                price, baseline = got_price, got_view
            else:
                price = request.reference_price
                baseline = await self._account_before_entry(market.symbol, request.side)
            prepared = fit_to_market(request, market, price)
            if prepared.symbol != request.symbol or prepared.amount != request.amount \
                    or prepared.stop_loss != request.stop_loss:
                log.info("attempt %s: sending %s %g %s with stop %g (asked: %s %g, stop %g) to "
                         "fit the market's grid", attempt_id, prepared.side.value,
                         prepared.amount, prepared.symbol, prepared.stop_loss, request.symbol,
                         request.amount, request.stop_loss,
                         extra={"attempt_id": attempt_id, "state": State.NEW.value})
            attempt = Attempt(attempt_id, prepared, entry_cid, self._now())
            attempt.facts = _evolve(attempt.facts, baseline=baseline)
            attempt.requests = tally.requests
            _CALLER.set(attempt)
            if self.journal is not None:
                try:
                    self.journal.begin(attempt_id, prepared, entry_cid, self._now())
                except Exception as exc:
                    raise JournalFailed(f"attempt {attempt_id}: the journal failed before "
                                        f"anything was sent ({_said(exc, True)}). Nothing was "
                                        "sent.", attempt) from exc
            await self._drive(attempt)
        # Outside the symbol lock: a slow alert receiver never holds up the
        # next attempt on the symbol.
        await self._conclude(attempt)
        return attempt

    async def recover(self) -> list[Attempt]:
        """Drive every unfinished attempt in the journal to a terminal state
        (see :func:`fsm.recovery.recover`). Call once at start-up, before
        opening new attempts; needs a journal that can be read back."""
        from fsm.recovery import recover  # recovery builds on this module

        return await recover(self)

    async def resume(self, attempt: Attempt) -> Attempt:
        """Drive an attempt rebuilt from the journal to a terminal state, under
        the same rules (used by recovery)."""
        token = _CALLER.set(attempt)
        try:
            async with self._symbol_lock(attempt.request.symbol):
                await self._drive(attempt)
            await self._conclude(attempt)
        finally:
            _CALLER.reset(token)
        return attempt

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
        try:
            steps: dict[State, Callable[[Attempt], Coroutine[Any, Any, None]]] = {
                State.NEW: self._submit,
                State.PLACED: self._await_fill,
                State.FETCHED: self._verify,
                State.VERIFIED: self._protect,
                State.ROLLING_BACK: self._roll_back,
            }
            while not a.terminal:
                before = len(a.history)
                await steps[a.state](a)
                assert len(a.history) > before, f"step for {a.state} fired nothing"
            reply = self._replies.pop(a.attempt_id, None)
            if reply is not None:
                await self._settle_reply(a, reply)
        finally:
            self._recorder.untrack(a)
            reply = self._replies.pop(a.attempt_id, None)
            if reply is not None:  # interrupted: the attempt's requests stop with it
                reply.cancel()
                reply.add_done_callback(_consume)

    # -- NEW: send the entry once ---------------------------------------------------------

    async def _submit(self, a: Attempt) -> None:
        r = a.request
        self._intent(a, "entry", a.client_id, side=r.side.value, amount=r.amount,
                     reduce_only=False)
        sent_at = self._now()
        window = self.policy.verify_timeout
        base = _evolve(a.facts, fetch_deadline=sent_at + window,
                       verify_deadline=sent_at + window,
                       entry_absent_after=self._absent_after(sent_at))
        def create() -> Awaitable[OrderSnapshot]:
            return self._call(self.adapter.create_order(
                symbol=r.symbol, side=r.side, amount=r.amount,
                client_id=a.client_id, reduce_only=False,
            ))

        reply: Awaitable[OrderSnapshot]
        if self.adapter.position_cache is None:
            reply = create()
        else:
            creating = asyncio.ensure_future(_later(create))
            streamed = await self._stream_before_reply(a, creating)
            if streamed is not None:
                # Rule 3, first evidence wins: the stream reported our order
                # before the create's reply (in the incident, by 8 ms; under
                # load, by seconds). That proves the order exists and says
                # more than a minimal reply would. The reply is a write's
                # answer: never cancelled, it is awaited before the attempt
                # returns.
                facts = _evolve(base, ack=streamed, entry=streamed,
                                entry_source=Source.STREAM)
                self._fire(a, Trigger.SUBMIT, facts, Source.STREAM,
                           f"stream reported {_order_words(streamed)} before the create's "
                           "reply")
                return
            reply = creating
        try:
            ack = await reply
        except OrderRejected as exc:
            self._fire(a, Trigger.REJECT, _evolve(base, create_error=_said(exc)),
                       Source.ACK, f"create refused: {_said(exc)}")
            return
        except AmbiguousError as exc:
            self._fire(a, Trigger.SUBMIT, _evolve(base, create_ambiguous=True),
                       Source.ACK, f"create outcome unknown ({_said(exc)}); will look up "
                       f"client id {a.client_id}, never resend")
            return
        except TransientError as exc:
            # Rate limits and the like are refused before matching: nothing
            # was placed. Adapters raise AmbiguousError when that is not sure.
            self._fire(a, Trigger.REJECT, _evolve(base, create_error=_said(exc)),
                       Source.ACK, f"create refused before matching: {_said(exc)}")
            return
        except Exception as exc:  # unknown failure of a write: assume it may exist
            log.exception("attempt %s: unexpected error from create_order", a.attempt_id,
                          extra={"attempt_id": a.attempt_id, "state": a.state.value})
            self._fire(a, Trigger.SUBMIT, _evolve(base, create_ambiguous=True),
                       Source.ACK,
                       f"create failed unexpectedly ({_said(exc, True)}); treated as ambiguous")
            return
        facts = _evolve(base, ack=ack, entry=ack, entry_source=Source.ACK)
        self._fire(a, Trigger.SUBMIT, facts, Source.ACK, f"acknowledged {_order_words(ack)}")

    # -- PLACED: fetch after create, until terminal or deadline -----------------------------

    async def _await_fill(self, a: Attempt) -> None:
        polls = 0
        while True:
            f = _at(a.facts, self._now())
            if G.side_contradicted(f):
                self._fire(a, Trigger.FETCH_FAILED, f, a.facts.entry_source,
                           f"exchange reports side {_side_of(f)} for a {f.request.side.value}"
                           " request: anomaly, not traded on")
                return
            if G.order_terminal(f) and G.order_filled(f) and G.side_matches_request(f):
                self._fire(a, Trigger.FETCHED, f, f.entry_source,
                           f"entry {_order_words(f.entry)}")
                return
            if G.order_terminal(f) and G.nothing_filled(f):
                self._fire(a, Trigger.NOT_FILLED, f, f.entry_source,
                           f"entry ended with nothing filled: {_order_words(f.entry)}")
                return
            if G.entry_never_arrived(f):
                self._fire(a, Trigger.NOT_FILLED, f, Source.ORDER, _never_arrived_words(a, f))
                return
            if G.fetch_deadline_passed(f):
                self._fire(a, Trigger.FETCH_FAILED, f, Source.CLOCK,
                           f"no terminal entry order within {self.policy.verify_timeout:g}s"
                           f" (last seen: {_order_words(f.entry)})")
                return
            snap, source, missed = await self._observe_order(
                a, a.client_id, _order_id(a.facts.ack), polls, a.facts.fetch_deadline
            )
            polls += 1
            if snap is not None:
                a.facts = _evolve(a.facts, entry=snap, entry_source=source)
            else:
                self._note_entry_miss(a, missed)

    # -- FETCHED: verify the position, first evidence wins --------------------------------

    async def _verify(self, a: Attempt) -> None:
        polls = 0
        while True:
            f = _at(a.facts, self._now())
            cached = self._stream_position(a)
            if cached is not None:
                f = f.with_position(cached)
            if G.position_contradicted(f):
                assert f.position is not None
                self._fire(a, Trigger.VERIFY_FAILED, f, f.position.source,
                           f"{f.position.source.value} shows {_pos_words(f.position)} for a "
                           f"{f.request.side.value}: anomaly")
                return
            if G.position_confirmed(f):
                agreed = f.position is not None and f.position.side is f.request.side.opens
                src = f.position.source if agreed and f.position else Source.ORDER
                what = _pos_words(f.position) if agreed and f.position else (
                    f"entry filled {f.entry.filled if f.entry else None:g}")
                self._fire(a, Trigger.VERIFIED, f, src, f"position confirmed: {what}")
                return
            if G.verify_deadline_passed(f):
                self._fire(a, Trigger.VERIFY_FAILED, f, Source.CLOCK,
                           "position not confirmed by the deadline")
                return
            a.facts = f
            snap = await self._observe_position(a, polls, a.facts.verify_deadline)
            polls += 1
            if snap is not None:
                a.facts = a.facts.with_position(snap)

    # -- VERIFIED: place the stop for exactly the verified size ---------------------------

    async def _protect(self, a: Attempt) -> None:
        r = a.request
        _, stop_cid, _ = client_ids(a.attempt_id)
        size = a.facts.entry.filled if a.facts.entry is not None else None
        assert size is not None and size > 0, "VERIFIED without a fill"
        intent = StopIntent(side=r.side.opposite, amount=size, trigger_price=r.stop_loss,
                            client_id=stop_cid)
        now = self._now()
        # A stop intent already on record means recovery rebuilt this attempt
        # from a journal that shows a stop may have been sent: look it up by
        # client id before placing one (rule 7), within a fresh deadline.
        resumed = a.facts.stop_intent is not None
        if not resumed or a.facts.protect_deadline is None:
            a.facts = _evolve(a.facts, stop_intent=intent,
                              protect_deadline=now + self.policy.protect_timeout)
        polls = 0
        # After an ambiguous placement, or a recovery that found a stop intent,
        # the stop may rest already: from then on it is only looked up, never
        # sent again (rule 10: client-id uniqueness is no safety net, and a
        # second reduce-only stop would, once triggered, close exposure that
        # is not the attempt's).
        lookup = resumed
        while a.facts.recovered and not a.facts.fills_checked \
                and self._now() < _deadline(a.facts.protect_deadline):
            await self._check_fills(a, polls, a.facts.protect_deadline)
            polls += 1
        while True:
            f = _at(a.facts, self._now())
            if G.exposure_unattributable(f):
                self._fire(a, Trigger.PROTECT_FAILED, f, Source.ORDER,
                           f"{f.foreign_fill}: the exposure may not be this attempt's any more; "
                           "placing nothing")
                return
            if G.stop_accepted(f) and self._recorder.possible(State.VERIFIED, Trigger.PROTECTED, f):
                self._fire(a, Trigger.PROTECTED, f, Source.STOP,
                           f"stop accepted: {_stop_words(f.stop)}")
                return
            if G.stop_accepted(f) or G.stop_refused(f):
                reason = f.stop_error or (
                    "stop does not match what was asked" if f.stop else "no stop by the deadline")
                self._fire(a, Trigger.PROTECT_FAILED,
                           _evolve(f, stop_error=f.stop_error or reason),
                           Source.STOP if f.stop_error or f.stop else Source.CLOCK, reason)
                return
            if lookup:
                found = await self._find_stop(a, stop_cid)
                if found is not None:
                    a.facts = _evolve(a.facts, stop=found)
                    continue
            else:
                self._intent(a, "stop", stop_cid, side=intent.side.value, amount=intent.amount,
                             trigger_price=intent.trigger_price, reduce_only=True)
                try:
                    stop = await self._call(
                        self.adapter.place_stop(
                            symbol=r.symbol, side=intent.side, amount=intent.amount,
                            trigger_price=intent.trigger_price, client_id=stop_cid,
                        ),
                        deadline=a.facts.protect_deadline,
                    )
                    a.facts = _evolve(a.facts, stop=stop)
                    continue
                except DuplicateClientId:
                    lookup = True  # an earlier, ambiguous placement did arrive
                except OrderRejected as exc:
                    a.facts = _evolve(a.facts, stop_error=f"stop refused: {_said(exc)}")
                    continue
                except AmbiguousError:
                    lookup = True
                except TransientError as exc:
                    log.warning("attempt %s: stop not placed (%s), retrying", a.attempt_id, exc,
                                extra={"attempt_id": a.attempt_id, "state": a.state.value})
                except Exception:
                    log.exception("attempt %s: unexpected error placing stop", a.attempt_id,
                                  extra={"attempt_id": a.attempt_id, "state": a.state.value})
                    lookup = True
            await self._sleep_until(min(self._now() + self.policy.backoff(polls),
                                        _deadline(a.facts.protect_deadline)))
            polls += 1

    # -- ROLLING_BACK: reduce-only close, then prove flat -----------------------------------

    async def _roll_back(self, a: Attempt) -> None:
        r = a.request
        _, stop_cid, close_cid = client_ids(a.attempt_id)
        if a.facts.close_deadline is None:
            a.facts = _evolve(a.facts, close_deadline=self._now() + self.policy.close_timeout)
        polls = 0
        while True:
            f = _at(a.facts, self._now())
            cached = self._stream_position(a)
            if cached is not None:
                f = f.with_position(cached)
            if G.entry_never_arrived(f):
                self._fire(a, Trigger.NOT_FILLED, f, Source.ORDER, _never_arrived_words(a, f))
                return
            if G.position_flat(f):
                self._fire(a, Trigger.CLOSE_VERIFIED, f, _flat_source(f),
                           f"flat: {_flat_words(f)}")
                await self._cancel_stop(a, stop_cid)
                return
            if f.close_intent is None and not f.fills_checked and G.order_filled(f) \
                    and not G.close_deadline_passed(f):
                # Rule 9: before anything is sent, and before a view of the
                # position is trusted, only the attempt's own orders may have
                # traded the symbol since its fill.
                a.facts = f
                await self._check_fills(a, polls, f.close_deadline)
                polls += 1
                continue
            if G.exposure_unattributable(f) and (
                    self.adapter.position_cache is None or G.close_deadline_passed(f)):
                # Nothing will be sent. With a stream, a timestamped view may
                # still prove the attempt's exposure gone (flat above) before
                # the deadline; without one, nothing can: alert now.
                self._fire(a, Trigger.CLOSE_UNVERIFIED, f, Source.ORDER,
                           f"{f.foreign_fill}: this attempt's exposure cannot be told from "
                           "anyone else's; nothing sent")
                return
            if G.close_deadline_passed(f):
                self._fire(a, Trigger.CLOSE_UNVERIFIED, f, Source.CLOCK,
                           f"could not prove flat within {self.policy.close_timeout:g}s "
                           f"({_flat_words(f)})")
                return
            if G.no_close_in_flight(f) and G.order_filled(f) and f.position is not None \
                    and not G.exposure_unattributable(f) \
                    and f.position.size > 0 and f.position.source in (Source.STREAM, Source.REST):
                f = _evolve(f, close_basis=f.position)
                if G.close_side_contradicted(f):
                    assert f.close_basis is not None
                    self._fire(a, Trigger.CLOSE_UNVERIFIED, f, f.close_basis.source,
                               f"exchange shows {_pos_words(f.close_basis)} but we asked to "
                               f"{r.side.value}: close side not derivable, nothing sent")
                    return
                if not f.fills_checked:  # again, right before a close is sent again
                    a.facts = f
                    await self._check_fills(a, polls, f.close_deadline)
                    polls += 1
                    continue
                basis = f.close_basis
                assert basis is not None and basis.side is not None
                # The close is for the attempt's own fill, never for a view of
                # the whole position: the account may hold more (another's
                # exposure) or, in a stale view, less.
                intent = CloseIntent(side=basis.side.closing_side, amount=f.exposure,
                                     client_id=close_cid)
                again = f.close_intent is not None
                detail = (f"exchange shows {_pos_words(basis)}: sending reduce-only "
                          f"{intent.side.value} {intent.amount:g} (this attempt's fill)")
                if again:
                    detail = (f"close {close_cid} proven never to have arrived (receive window "
                              f"passed, not found): sending it again; {detail}")
                self._fire(a, Trigger.CLOSE_SENDING, f, basis.source, detail)
                a.facts = _evolve(a.facts, close_intent=intent, close_order=None,
                                  close_missing=False, fills_checked=False)
                sent_at = self._now()
                if await self._send_close(a, intent):
                    a.facts = _evolve(a.facts, close_absent_after=self._absent_after(sent_at))
                polls = 0  # fetch the close's fate at once, then back off
                continue
            a.facts = f
            # Gather: the close order's fate (if sent), the entry's (while our
            # fill is unknown, nothing may be closed), and the position.
            if f.close_intent is None and not G.order_filled(f) and not G.order_terminal(f):
                snap, src, missed = await self._observe_order(
                    a, a.client_id, _order_id(f.ack), polls, f.close_deadline,
                    also_position=True,
                )
                if snap is not None:
                    a.facts = _evolve(a.facts, entry=snap, entry_source=src)
                else:
                    self._note_entry_miss(a, missed)
            elif f.close_in_flight:
                snap, _src, missed = await self._observe_order(
                    a, close_cid, _order_id(f.close_order), polls, f.close_deadline,
                    also_position=True,
                )
                if snap is not None:
                    a.facts = _evolve(a.facts, close_order=snap)
                elif (missed is not None and a.facts.close_order is None
                      and a.facts.close_absent_after is not None
                      and missed >= a.facts.close_absent_after):
                    a.facts = _evolve(a.facts, close_missing=True)
            else:
                pos = await self._observe_position(a, polls, f.close_deadline)
                if pos is not None:
                    a.facts = a.facts.with_position(pos)
            polls += 1

    async def _check_fills(self, a: Attempt, polls: int, deadline: float | None) -> None:
        """Read the symbol's executions since the entry's fill and record
        whether any is not the attempt's own. A failed read records nothing
        (absence needs proof) and waits one back-off step."""
        f = a.facts
        since = f.entry.timestamp if f.entry is not None else None
        try:
            fills = await self._call(self.adapter.fetch_fills(a.request.symbol, since),
                                     deadline=deadline)
        except Exception as exc:
            log.warning("attempt %s: could not read the symbol's executions: %s", a.attempt_id,
                        exc, extra={"attempt_id": a.attempt_id, "state": a.state.value})
            await self._sleep_until(min(self._now() + self.policy.backoff(polls),
                                        _deadline(deadline)))
            return
        foreign: str | None = None
        if since is None:
            foreign = "the entry's fill time is unknown, so executions since it cannot be read"
        else:
            # Only the entry's own executions may follow the fill: anything
            # else moved the position since, be it someone else's trade or the
            # attempt's own stop or close that its record does not show (a
            # triggered stop; a close a failed journal lost before a crash).
            entry_ids = {o.order_id for o in (f.ack, f.entry) if o is not None} - {None}
            _, stop_cid, close_cid = client_ids(a.attempt_id)
            other = next((x for x in fills
                          if x.order_id not in entry_ids and x.client_id != a.client_id),
                         None)
            if other is not None:
                side = other.side.value if other.side is not None else "?"
                whose = ("the attempt's own stop" if other.client_id == stop_cid else
                         "the attempt's own close" if other.client_id == close_cid else
                         "an execution that is not this attempt's")
                foreign = (f"{whose} ({side} {other.amount:g}, order {other.order_id or '?'}) "
                           f"traded {a.request.symbol} since the fill")
        a.facts = _evolve(a.facts, fills_checked=True, foreign_fill=foreign)

    def _absent_after(self, sent_at: float) -> float | None:
        """When a not-found answer proves a request sent at ``sent_at`` never
        executed: the exchange's receive window, plus clock skew, plus how
        long an accepted order may stay invisible (rule 10)."""
        window = self.adapter.receive_window
        if window is None:
            return None
        return sent_at + window + self.policy.clock_skew_margin + self.adapter.lookup_lag

    def _note_entry_miss(self, a: Attempt, missed: float | None) -> None:
        """A definite not-found of the entry, from a look-up sent at
        ``missed``: proof of absence once the receive window has passed."""
        after = a.facts.entry_absent_after
        if missed is not None and after is not None and missed >= after:
            a.facts = _evolve(a.facts, entry_missing=True)

    async def _send_close(self, a: Attempt, intent: CloseIntent) -> bool:
        """Send the reduce-only close. A close the adapter reports refused
        before matching (:class:`TransientError`: rate limit, unavailable) took
        no effect and is retried; an ambiguous one is looked up by client id
        by the rollback loop, and sent again only once proven never to have
        arrived. Returns whether the outcome is ambiguous."""
        r = a.request
        self._intent(a, "close", intent.client_id, side=intent.side.value,
                     amount=intent.amount, reduce_only=True)
        tries = 0
        while True:
            try:
                snap = await self._call(
                    self.adapter.create_order(
                        symbol=r.symbol, side=intent.side, amount=intent.amount,
                        client_id=intent.client_id, reduce_only=True,
                    ),
                    deadline=a.facts.close_deadline,
                )
                a.facts = _evolve(a.facts, close_order=snap)
                return False
            except DuplicateClientId:
                return False  # the earlier send arrived; the verify loop fetches it
            except OrderRejected as exc:
                a.facts = _evolve(a.facts, close_error=f"close refused: {_said(exc)}")
                log.error("attempt %s: reduce-only close refused: %s", a.attempt_id, exc,
                          extra={"attempt_id": a.attempt_id, "state": a.state.value,
                                 "source": Source.CLOSE.value})
                return False
            except AmbiguousError:
                return True  # the verify loop looks it up by client id
            except TransientError as exc:
                tries += 1
                if self._now() >= _deadline(a.facts.close_deadline) or tries > 20:
                    a.facts = _evolve(a.facts, close_error=f"close not placed: {_said(exc)}")
                    return False
                await self._sleep_until(min(self._now() + self.policy.backoff(tries),
                                            _deadline(a.facts.close_deadline)))
            except Exception:
                log.exception("attempt %s: unexpected error sending close", a.attempt_id,
                              extra={"attempt_id": a.attempt_id, "state": a.state.value})
                return True

    # -- observation helpers -------------------------------------------------------------------

    async def _observe_order(
        self,
        a: Attempt,
        client_id: str,
        order_id: str | None,
        polls: int,
        deadline: float | None,
        *,
        also_position: bool = False,
    ) -> tuple[OrderSnapshot | None, Source | None, float | None]:
        """One poll round for an order: wait out the back-off step (ending
        early on stream news), then fetch it by id or client id. The first
        poll does not wait: a fetch right after create is the point.

        Returns the order and its source, or, when the exchange definitely
        answered "not found", the time that look-up was sent (a look-up that
        failed otherwise proves nothing, rule 10)."""
        cache = self.adapter.position_cache
        end = _deadline(deadline)
        if cache is not None:
            # News that arrived while we were busy with the previous request.
            hit = cache.latest_order(client_id)
            if hit is not None and hit.terminal and hit is not _order_seen(a, client_id):
                return hit, Source.STREAM, None
        if polls > 0:
            wake = min(self._now() + self.policy.backoff(polls - 1), end)
            streamed = await self._stream_news(a, client_id, wake, positions=also_position)
            if streamed is not None:
                return streamed, Source.STREAM, None
        if also_position:
            pos = await self._observe_position(a, 0, deadline, wait=False)
            if pos is not None:
                a.facts = a.facts.with_position(pos)
        asked_at = self._now()
        try:
            snap, source = await self._fetch_order_racing_stream(a, client_id, order_id, deadline)
            return snap, source, None
        except OrderNotFound:
            log.debug("attempt %s: order %s not visible yet", a.attempt_id, client_id,
                      extra={"attempt_id": a.attempt_id, "state": a.state.value})
            return None, None, asked_at
        except TransientError as exc:
            if exc.retry_after:
                await self._sleep_until(min(self._now() + exc.retry_after, end))
        except Exception:
            log.exception("attempt %s: unexpected error fetching order", a.attempt_id,
                          extra={"attempt_id": a.attempt_id, "state": a.state.value})
        return None, None, None

    async def _stream_before_reply(
        self, a: Attempt, creating: asyncio.Future[OrderSnapshot]
    ) -> OrderSnapshot | None:
        """Wait for the create's reply, or for the stream's first report of
        the order, whichever comes first; the report if it came first, in
        which case the reply is left in flight (never cancelled by choice: it
        is a write's answer) and registered in ``_replies``."""
        cache = self.adapter.position_cache
        if cache is None:
            return None
        cid = a.client_id
        news = asyncio.ensure_future(cache.wait_order(cid, cache.order_version(cid)))
        try:
            await asyncio.wait((creating, news), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled from outside: the attempt's requests stop with it
            creating.cancel()
            news.cancel()
            await asyncio.gather(creating, news, return_exceptions=True)
            raise
        if creating.done():
            news.cancel()
            await asyncio.gather(news, return_exceptions=True)
            return None
        self._replies[a.attempt_id] = creating
        attempt_task = asyncio.current_task()

        def gone(t: asyncio.Future[OrderSnapshot]) -> None:
            # Cancelled by anyone but us (the process going down) while the
            # attempt still counts on it: the attempt goes down too, as it
            # would have if it had been awaiting the reply itself.
            if t.cancelled() and self._replies.get(a.attempt_id) is t and attempt_task:
                attempt_task.cancel()

        creating.add_done_callback(gone)
        return news.result()

    async def _settle_reply(self, a: Attempt, reply: asyncio.Future[OrderSnapshot]) -> None:
        """Await a create reply that the stream overtook; it changes nothing
        (the stream proved the order), but a refusal now would be a
        contradiction worth a log line."""
        try:
            await reply
        except AmbiguousError:
            pass  # the stream already told us what the reply would have
        except Exception as exc:
            log.error("attempt %s: create reply after the stream had shown the order: %s",
                      a.attempt_id, exc, extra={"attempt_id": a.attempt_id,
                                                "state": a.state.value})

    async def _fetch_order_racing_stream(
        self, a: Attempt, client_id: str, order_id: str | None, deadline: float | None
    ) -> tuple[OrderSnapshot, Source]:
        """Fetch the order; if the stream reports it terminal while the fetch
        is in flight, the stream wins and the fetch (a read) is abandoned.
        Rule 3: sources are raced, not queued. Without this, a fill the
        stream pushed just after a minimal ack waited a whole extra round
        trip for the fetch (calm profile: p50 67 ms to protection instead
        of ~45)."""
        def fetch() -> Awaitable[OrderSnapshot]:
            return self._call(
                self.adapter.fetch_order(symbol=a.request.symbol, order_id=order_id,
                                         client_id=client_id),
                deadline=deadline,
            )

        cache = self.adapter.position_cache
        if cache is None:
            return await fetch(), Source.ORDER
        fetching = asyncio.ensure_future(_later(fetch))
        streamed = asyncio.ensure_future(_terminal_order_news(cache, client_id))
        try:
            await asyncio.wait((fetching, streamed), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled from outside: leave nothing running
            fetching.cancel()
            streamed.cancel()
            await asyncio.gather(fetching, streamed, return_exceptions=True)
            raise
        fetched = fetching.done() and not fetching.cancelled() and fetching.exception() is None
        if streamed.done() and not fetched:
            fetching.cancel()
            await asyncio.gather(fetching, return_exceptions=True)
            return streamed.result(), Source.STREAM
        streamed.cancel()
        await asyncio.gather(streamed, return_exceptions=True)
        return fetching.result(), Source.ORDER

    async def _observe_position(
        self, a: Attempt, polls: int, deadline: float | None, *, wait: bool = True
    ) -> PositionSnapshot | None:
        """One poll round for the position: the stream's news if it comes
        before the back-off step ends, else a REST read."""
        end = _deadline(deadline)
        if wait and polls > 0:
            wake = min(self._now() + self.policy.backoff(polls - 1), end)
            streamed = await self._stream_news(a, None, wake, positions=True)
            if streamed is not None:
                return None  # a position update: the caller re-reads the cache
        try:
            snaps = await self._call(self.adapter.fetch_positions([a.request.symbol]),
                                     deadline=deadline)
        except TransientError as exc:
            if exc.retry_after:
                await self._sleep_until(min(self._now() + exc.retry_after, end))
            return None
        except Exception:
            log.exception("attempt %s: unexpected error fetching positions", a.attempt_id,
                          extra={"attempt_id": a.attempt_id, "state": a.state.value})
            return None
        mine = [s for s in snaps if s.symbol == a.request.symbol]
        if mine:
            return None if _predates_fill(a.facts, mine[0]) else mine[0]
        # Absent from REST: a flat view (of unknown age).
        return PositionSnapshot(symbol=a.request.symbol, side=None, size=0.0,
                                source=Source.REST, received_at=self._now())

    async def _stream_news(
        self, a: Attempt, client_id: str | None, until: float, *, positions: bool
    ) -> OrderSnapshot | None:
        """Sleep until ``until``, waking early on a stream update of the
        order (returned when terminal) or of the position (returns None
        early, so the caller re-reads the cache)."""
        cache = self.adapter.position_cache
        if cache is None:
            await self._sleep_until(until)
            return None
        waits: list[asyncio.Future[Any]] = []
        order_wait: asyncio.Future[Any] | None = None
        if client_id is not None:
            order_wait = asyncio.ensure_future(
                cache.wait_order(client_id, cache.order_version(client_id)))
            waits.append(order_wait)
        if positions:
            sym = a.request.symbol
            waits.append(asyncio.ensure_future(cache.wait_newer(sym, cache.version(sym))))
        timeout = max(0.0, until - self._now())
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                if not w.done():
                    w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        if order_wait is not None and order_wait in done:
            snap: OrderSnapshot = order_wait.result()
            if snap.terminal:
                return snap
        return None

    def _stream_position(self, a: Attempt) -> PositionSnapshot | None:
        """The stream's latest position for the symbol, if it arrived after
        the attempt began and, when both times are known, describes the
        account at or after the entry's fill (an older one says nothing about
        our order, however late a lagging stream delivers it)."""
        cache = self.adapter.position_cache
        if cache is None:
            return None
        snap = cache.latest(a.request.symbol)
        began = a.history[0].at if a.history else None
        if snap is None or began is None or snap.received_at < began:
            return None
        return None if _predates_fill(a.facts, snap) else snap

    async def _find_stop(self, a: Attempt, stop_cid: str) -> StopSnapshot | None:
        try:
            stops = await self._call(self.adapter.fetch_stops(a.request.symbol),
                                     deadline=a.facts.protect_deadline)
        except Exception as exc:
            log.warning("attempt %s: stop look-up failed: %s", a.attempt_id, exc,
                        extra={"attempt_id": a.attempt_id, "state": a.state.value})
            return None
        return next((s for s in stops if s.client_id == stop_cid), None)

    async def _cancel_stop(self, a: Attempt, stop_cid: str) -> None:
        """After a verified close, cancel a stop this attempt may have left
        (it would otherwise act on a future position). Best effort: the
        reconciliation monitor cancels what this misses."""
        if a.facts.stop_intent is None:
            return
        try:
            await self._call(self.adapter.cancel_order(
                symbol=a.request.symbol, order_id=_stop_id(a.facts.stop), client_id=stop_cid))
        except OrderNotFound:
            pass
        except Exception as exc:
            log.warning("attempt %s: could not cancel leftover stop %s: %s", a.attempt_id,
                        stop_cid, exc, extra={"attempt_id": a.attempt_id,
                                              "state": a.state.value})

    async def _read(self, make: Callable[[], Awaitable[T]], what: str) -> T:
        """One read before the entry. A transient failure (rate limit, 503,
        timeout) is retried with back-off within ``Policy.verify_timeout``
        (nothing is at risk yet, so the read may take as long as the entry's
        fill would be given); then, or on any other failure, the request is
        refused with nothing sent: an account the engine cannot see is one
        it must not trade."""
        give_up = self._now() + self.policy.verify_timeout
        tries = 0
        while True:
            try:
                return await self._call(make())
            except UnknownSymbol:
                raise
            except TransientError as exc:
                if self._now() >= give_up:
                    raise BadRequest(f"cannot {what} ({_said(exc)}). Nothing was sent.") from exc
                await self._sleep_until(min(self._now() + self.policy.backoff(tries), give_up))
                tries += 1
            except Exception as exc:
                raise BadRequest(f"cannot {what} ({_said(exc)}). Nothing was sent.") from exc

    async def _market(self, symbol: str) -> Market:
        """The market for the request's symbol, in either spelling: every
        comparison from here on uses its canonical symbol (rule 9: an order
        the engine cannot recognise as its own is an order it cannot guard)."""
        known = self._markets.get(symbol)
        if known is not None:
            return known
        try:
            market = await self._read(lambda: self.adapter.market(symbol),
                                      f"load the market {symbol!r} from {self.adapter.name}")
        except UnknownSymbol as exc:
            raise BadRequest(f"{self.adapter.name} lists no market {symbol!r} ({_said(exc)}). "
                             "Nothing was sent.") from exc
        self._markets[symbol] = market
        return market

    async def _market_price(self, symbol: str) -> float:
        price = await self._read(
            lambda: self.adapter.fetch_price(symbol),
            f"check stop_loss against the market for {symbol}; pass reference_price to "
            "OpenRequest")
        if price is None:
            raise BadRequest(
                f"no reference price for {symbol}; pass reference_price to "
                "OpenRequest. Nothing was sent."
            )
        return price

    async def _account_before_entry(self, sym: str, side: Side) -> PositionSnapshot:
        """One read of the symbol's position before the entry (rule 9). An
        opposite-side position refuses the request: the entry would net
        against exposure that is not the attempt's. A same-side one is
        allowed; the attempt then answers for its own fill only."""
        snaps = await self._read(lambda: self.adapter.fetch_positions([sym]),
                                 f"read the account's {sym} position before the entry")
        views = [p for p in snaps if p.symbol == sym and p.size > 0]
        cache = self.adapter.position_cache
        streamed = cache.latest(sym) if cache is not None else None
        if streamed is not None and streamed.size > 0:
            views.append(streamed)
        for p in views:
            if p.side is not side.opens:
                raise OppositePosition(
                    f"the account holds {_pos_words(p)} on {sym}; a {side.value} would net "
                    "against exposure that is not this attempt's. Close it first. Nothing was "
                    "sent.", p)
        if views:
            return views[0]
        return PositionSnapshot(symbol=sym, side=None, size=0.0, source=Source.REST,
                                received_at=self._now())

    # -- plumbing -----------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _sleep_until(self, when: float) -> None:
        delay = when - self._now()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _call(self, aw: Awaitable[T], *, deadline: float | None = None) -> T:
        """Await one exchange call, bounded by the request timeout and, if
        given, the phase deadline. Exceeding it raises AmbiguousError: for a
        write we cannot know whether it reached the exchange."""
        attempt = _CALLER.get()
        if attempt is not None:
            attempt.requests += 1
        limit = self.policy.request_timeout
        if deadline is not None:
            # Never cut a request shorter than a tenth of the request timeout:
            # a request cancelled at once teaches nothing.
            limit = min(limit, max(deadline - self._now(), limit / 10))
        try:
            async with asyncio.timeout(limit):
                return await aw
        except TimeoutError as exc:
            raise AmbiguousError(f"no answer within {limit:g}s") from exc

    def _fire(self, a: Attempt, trigger: Trigger, facts: Facts, evidence: Source | None,
              detail: str) -> Transition:
        now = self._now()
        if facts.now != now:  # most callers built ``facts`` this very tick
            facts = _at(facts, now)
        step = self._recorder.fire(a, trigger, facts, evidence=evidence, detail=detail)
        journal = self.journal
        if journal is not None:
            self._write(a, lambda: journal.transition(a.attempt_id, step.at,
                                                      _step_record(step, a.facts)))
        if self.on_transition is not None:
            self._notify(a, step)
        return step

    def _notify(self, a: Attempt, step: Transition) -> None:
        """Hand one step to ``on_transition``; its failure or slowness never
        touches the attempt."""
        assert self.on_transition is not None
        try:
            result = self.on_transition(a, step)
        except Exception:
            log.exception("attempt %s: on_transition failed", a.attempt_id,
                          extra={"attempt_id": a.attempt_id, "state": a.state.value})
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._bounded(a, result))
            self._observing.add(task)
            task.add_done_callback(self._observing.discard)

    async def _bounded(self, a: Attempt, aw: Awaitable[None]) -> None:
        try:
            async with asyncio.timeout(self.policy.alert_timeout):
                await aw
        except Exception:
            log.exception("attempt %s: on_transition failed or took longer than %gs",
                          a.attempt_id, self.policy.alert_timeout,
                          extra={"attempt_id": a.attempt_id})

    def _write(self, a: Attempt, write: Callable[[], None]) -> None:
        """One journal write of a live attempt. Once the entry may have left,
        a failing journal must not stop the engine from protecting or rolling
        back: the failure is logged, remembered, and alerted and raised only
        when the attempt is safe (:meth:`_conclude`)."""
        try:
            write()
        except Exception as exc:
            if a.journal_error is None:
                a.journal_error = exc
                log.critical("attempt %s: the journal failed (%r); driving the attempt to a "
                             "safe state from memory", a.attempt_id, exc,
                             extra={"attempt_id": a.attempt_id, "state": a.state.value})

    def _intent(self, a: Attempt, action: str, client_id: str, **data: Any) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info("attempt %s: about to send %s %s", a.attempt_id, action, client_id,
                     extra={"attempt_id": a.attempt_id, "state": a.state.value,
                            "action": action})
        journal = self.journal
        if journal is None:
            return
        at = self._now()
        if action != "entry":
            self._write(a, lambda: journal.intent(a.attempt_id, action, client_id, at, data))
            return
        try:  # rule 8: no entry leaves unless its intent is durable
            journal.intent(a.attempt_id, action, client_id, at, data)
        except Exception as exc:
            raise JournalFailed(f"attempt {a.attempt_id}: the journal failed before the entry "
                                f"was sent ({_said(exc, True)}). Nothing was sent.", a) from exc

    async def _conclude(self, a: Attempt) -> None:
        """After the terminal transition: alert (queued in the journal before
        delivery, so a crash during delivery is delivered again by
        ``recover()``), then write the end record. A journal that failed while
        the attempt was live is alerted and raised only now, with the
        exposure protected, closed or alerted."""
        failed = a.journal_error
        if a.state is State.ORPHANED:
            extra = (f" The journal also failed ({_said(failed, True)}): a restart cannot "
                     "recover this attempt from it." if failed is not None else "")
            last = a.history[-1]
            a.alert = Alert(
                attempt_id=a.attempt_id, symbol=a.request.symbol,
                message=(f"ORPHANED {a.request.side.value} {a.request.amount:g} "
                         f"{a.request.symbol}: {last.detail}. Exposure may be open without a "
                         f"stop-loss; check the account.{extra}"),
                state=a.state, at=last.at, history=a.history)
            await self._deliver(a, a.alert)
        elif failed is not None:
            await self._deliver(a, Alert(
                attempt_id=a.attempt_id, symbol=a.request.symbol,
                message=(f"the journal failed ({_said(failed, True)}) while attempt {a.attempt_id} "
                         f"({a.request.side.value} {a.request.amount:g} {a.request.symbol}) was "
                         f"live; it was driven to {a.state.value} from memory, and a restart "
                         "cannot recover it from the journal. Check the journal's disk."),
                state=a.state, at=self._now(), history=a.history, reason="journal"))
        journal = self.journal
        if journal is not None:
            self._write(a, lambda: journal.end(a.attempt_id, a.state, self._now()))
        if failed is not None:
            raise JournalFailed(f"attempt {a.attempt_id} ended {a.state.value}, but its "
                                f"journal failed ({_said(failed, True)}); see the attempt and "
                                "the alert", a) from failed

    async def _deliver(self, a: Attempt, alert: Alert) -> None:
        journal = self.journal
        note = None
        if isinstance(journal, JournalLog):
            log_ = journal

            def note(kind: str, data: dict[str, Any]) -> None:
                self._write(a, lambda: log_.note(a.attempt_id, kind, self._now(), data))

        await deliver_queued(self.alerts, alert, self.policy.alert_timeout, note)


class JournalFailed(JournalError):
    """The journal failed while an attempt was live. Before the entry left,
    nothing was sent (``attempt.state`` is ``NEW``). After, the engine drove
    the attempt to a terminal state from memory and alerted; ``attempt`` is
    that attempt. A restart cannot recover it from the journal."""

    def __init__(self, message: str, attempt: Attempt) -> None:
        super().__init__(message)
        self.attempt = attempt


#: The attempt on whose behalf this task calls the exchange (for
#: ``Attempt.requests``): set once per attempt, inherited by every task the
#: attempt starts, so no call site has to pass it along.
class _Tally:
    """Counts the pre-entry reads until the attempt exists."""

    requests = 0


_CALLER: contextvars.ContextVar[Attempt | _Tally | None] = contextvars.ContextVar(
    "_CALLER", default=None)


# -- small pure helpers --------------------------------------------------------------------------

#: A new fact is a new Facts object, so an attempt copies its evidence a dozen
#: times; ``attrs.evolve`` introspects every field on each copy and was the
#: largest single CPU cost of an attempt. These copy by position instead.
_FACT_FIELDS: tuple[str, ...] = tuple(f.name for f in attrs.fields(Facts))
assert all(f.init and not f.kw_only and f.alias == f.name for f in attrs.fields(Facts))
_FACT_INDEX = {name: i for i, name in enumerate(_FACT_FIELDS)}
_FACT_NOW = _FACT_INDEX["now"]
_fact_values = operator.attrgetter(*_FACT_FIELDS)


def _evolve(f: Facts, **changes: Any) -> Facts:
    """``attrs.evolve(f, **changes)`` for :class:`Facts`, about twice as fast."""
    values = list(_fact_values(f))
    for name, value in changes.items():
        values[_FACT_INDEX[name]] = value
    return Facts(*values)


def _at(f: Facts, now: float) -> Facts:
    """``f.at(now)``, without ``attrs.evolve``."""
    values = list(_fact_values(f))
    values[_FACT_NOW] = now
    return Facts(*values)



def _predates_fill(f: Facts, snap: PositionSnapshot) -> bool:
    """``snap`` shows the account before our entry filled (both times known).
    Such a view says nothing about our exposure, however late a lagging
    source delivers it: it must neither size a close nor count as a source
    that has seen our position."""
    filled_at = f.entry.timestamp if f.entry is not None else None
    return snap.as_of is not None and filled_at is not None and snap.as_of < filled_at


def _deadline(d: float | None) -> float:
    return d if d is not None else float("inf")


def _order_id(o: OrderSnapshot | None) -> str | None:
    return o.order_id if o is not None else None


def _stop_id(s: StopSnapshot | None) -> str | None:
    return s.order_id if s is not None else None


async def _later(make: Callable[[], Awaitable[T]]) -> T:
    """Await what ``make`` builds, building it only once the task runs: a
    task cancelled before its first step then leaves no coroutine behind
    that was never awaited."""
    return await make()


def _consume(fut: asyncio.Future[Any]) -> None:
    """Retrieve a background future's outcome so it is never reported as
    an exception nobody retrieved."""
    if not fut.cancelled():
        fut.exception()


async def _terminal_order_news(cache: PositionCache, client_id: str) -> OrderSnapshot:
    """The next stream update of this order that shows it terminal."""
    while True:
        snap = await cache.wait_order(client_id, cache.order_version(client_id))
        if snap.terminal:
            return snap


def _order_seen(a: Attempt, client_id: str) -> OrderSnapshot | None:
    f = a.facts
    if client_id == a.client_id:
        return f.entry
    return f.close_order


def _side_of(f: Facts) -> str:
    for o in (f.entry, f.ack):
        if o is not None and o.side is not None:
            return o.side.value
    return "none"


def _order_words(o: OrderSnapshot | None) -> str:
    if o is None:
        return "nothing"

    def v(x: object) -> str:
        return "?" if x is None else (x.value if hasattr(x, "value") else f"{x:g}"
                                      if isinstance(x, float) else str(x))

    return (f"id={o.order_id or '?'} side={v(o.side)} status={v(o.status)} "
            f"filled={v(o.filled)}/{v(o.amount)}")


def _pos_words(p: PositionSnapshot | None) -> str:
    if p is None:
        return "no position view"
    if p.size == 0:
        return f"flat ({p.source.value})"
    assert p.side is not None
    return f"{p.side.value} {p.size:g} ({p.source.value})"


def _stop_words(s: StopSnapshot | None) -> str:
    if s is None:
        return "none"
    side = s.side.value if s.side else "?"
    amt = f"{s.amount:g}" if s.amount is not None else "?"
    return f"id={s.order_id or '?'} {side} {amt} @ {s.trigger_price} reduce_only={s.reduce_only}"


def _said(exc: BaseException, kind: bool = False) -> str:
    """An exception in words for a history detail, an alert or an error we
    raise, with any signed query string or credential redacted (a ccxt error
    can quote the whole signed URL)."""
    return redact(repr(exc) if kind else str(exc))


def _never_arrived_words(a: Attempt, f: Facts) -> str:
    return (f"the create {a.client_id} never reached the exchange: its receive window has "
            "passed and the look-up by client id says no such order, so it can never execute")


def _flat_source(f: Facts) -> Source:
    c, ci = f.close_order, f.close_intent
    if c is not None and ci is not None and c.terminal and c.filled is not None:
        return Source.CLOSE
    return f.position.source if f.position is not None else Source.CLOCK


def _flat_words(f: Facts) -> str:
    parts = []
    if f.close_order is not None:
        parts.append(f"close {_order_words(f.close_order)}")
    if f.close_error:
        parts.append(f.close_error)
    if _flat_source(f) is Source.CLOSE and f.position is not None and f.position.size > 0:
        # The close's own fill is the proof; say that the view has not caught up.
        parts.append(f"latest position view {_pos_words(f.position)} predates the close")
    else:
        parts.append(f"position {_pos_words(f.position)}")
    return "; ".join(parts)


def _step_record(step: Transition, f: Facts) -> dict[str, Any]:
    return {
        "trigger": step.trigger.value,
        "source": step.source.value,
        "dest": step.dest.value,
        "guards": [g for g, _ in step.guards],
        "evidence": step.evidence.value if step.evidence else None,
        "detail": step.detail,
        "entry_order_id": f.entry.order_id if f.entry else (f.ack.order_id if f.ack else None),
        "filled": f.entry.filled if f.entry else None,
        "stop_order_id": f.stop.order_id if f.stop else None,
        "close_order_id": f.close_order.order_id if f.close_order else None,
    }
