"""Observation: every read of the exchange an attempt makes, in one place.

Rule 3, first evidence wins: the stream, the order fetch and REST are raced,
never queued. :meth:`Observer.look` carries out one
:class:`~fsm.step.LookUp` the step function asked for and records what came
back in the attempt's facts; the pre-entry reads (market, price, the
account's position) are here too. Nothing here decides a transition.

Waiting: no fixed sleep. Every wait is "until the next piece of evidence or
the next back-off step, whichever comes first", bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import fsm.guards as G
from fsm.attempt import Attempt, attached_stop_id, client_ids
from fsm.effects import bounded
from fsm.evidence import Facts
from fsm.model import (
    AmbiguousError,
    Market,
    OrderNotFound,
    OrderSnapshot,
    OrderStatus,
    PositionSnapshot,
    Side,
    Source,
    TransientError,
    UnknownSymbol,
)
from fsm.policy import Policy
from fsm.port import AttachedStopPort, ExchangePort, PositionCache
from fsm.redact import redact
from fsm.request import BadRequest, OppositePosition
from fsm.step import Look, LookUp, at, evolve, pos_words
from fsm.table import State

__all__ = ["Observer", "consume", "later"]

log = logging.getLogger("fsm")

T = TypeVar("T")


class Observer:
    """The reads of one opener: look-ups, stream news, pre-entry reads."""

    def __init__(self, adapter: ExchangePort, policy: Policy) -> None:
        self.adapter = adapter
        self.policy = policy
        #: create replies still in flight after the stream answered first
        self.replies: dict[str, asyncio.Future[OrderSnapshot]] = {}
        #: markets by the spelling asked for; a venue's rules change rarely,
        #: and ccxt itself loads them once
        self._markets: dict[str, Market] = {}

    # -- plumbing ---------------------------------------------------------------------

    def now(self) -> float:
        """The event loop's time: what deadlines are measured in."""
        return asyncio.get_running_loop().time()

    async def sleep_until(self, when: float) -> None:
        """Sleep until loop time ``when`` (at once if it has passed)."""
        delay = when - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    async def back_off(self, polls: int, deadline: float | None) -> None:
        """Wait one back-off step, never past ``deadline``."""
        await self.sleep_until(min(self.now() + self.policy.backoff(polls), _end(deadline)))

    def call(self, aw: Awaitable[T], *, deadline: float | None = None) -> Coroutine[Any, Any, T]:
        """One exchange call, to be awaited at once, bounded by the request
        timeout and, if given, the phase deadline. Exceeding it raises
        AmbiguousError: for a write we cannot know whether it reached the
        exchange."""
        limit = self.policy.request_timeout
        if deadline is not None:
            # Never cut a request shorter than a tenth of the request timeout:
            # a request cancelled at once teaches nothing.
            limit = min(limit, max(deadline - self.now(), limit / 10))
        return bounded(aw, limit)

    # -- one look-up ------------------------------------------------------------------

    async def look(self, a: Attempt, step: LookUp, polls: int) -> bool:
        """Carry out ``step`` for ``a`` and record the answer in its facts.
        Returns whether the round counts as a poll (for the back-off)."""
        a.facts = step.facts
        f = step.facts
        deadline = _phase_deadline(a.state, f)
        if step.what is Look.ENTRY:
            await self._look_entry(a, step, polls, deadline)
        elif step.what is Look.CLOSE:
            await self._look_close(a, polls, deadline)
        elif step.what is Look.POSITION:
            pos = await self.observe_position(a, polls, deadline)
            if pos is not None:
                a.facts = a.facts.with_position(pos)
        elif step.what is Look.FILLS:
            await self.check_fills(a, polls, deadline)
        elif step.what is Look.ATTACHED:
            return await self.find_attached(a, polls)
        else:
            return await self.find_stop(a, polls)
        return True

    async def _look_entry(self, a: Attempt, step: LookUp, polls: int,
                          deadline: float | None) -> None:
        f = a.facts
        snap, src, missed = await self.observe_order(
            a, a.client_id, _order_id(f.ack), polls, deadline, also_position=step.with_position)
        if snap is not None:
            a.facts = evolve(a.facts, entry=snap, entry_source=src)
        else:
            after = a.facts.entry_absent_after
            if missed is not None and after is not None and missed >= after:
                a.facts = evolve(a.facts, entry_missing=True)

    async def _look_close(self, a: Attempt, polls: int, deadline: float | None) -> None:
        close_cid = client_ids(a.attempt_id)[2]
        snap, _src, missed = await self.observe_order(
            a, close_cid, _order_id(a.facts.close_order), polls, deadline, also_position=True)
        if snap is not None:
            a.facts = evolve(a.facts, close_order=snap)
        elif (missed is not None and a.facts.close_order is None
              and a.facts.close_absent_after is not None
              and missed >= a.facts.close_absent_after):
            a.facts = evolve(a.facts, close_missing=True)

    async def observe_order(
        self, a: Attempt, client_id: str, order_id: str | None, polls: int,
        deadline: float | None, *, also_position: bool = False,
    ) -> tuple[OrderSnapshot | None, Source | None, float | None]:
        """One poll round for an order: wait out the back-off step (ending
        early on stream news), then fetch it by id or client id. The first
        poll does not wait: a fetch right after create is the point.

        Returns the order and its source, or, when the exchange definitely
        answered "not found", the time that look-up was sent (a look-up that
        failed otherwise proves nothing, rule 10)."""
        # The stream's news of the order: what arrived while we were busy
        # with the previous request, else (after the first poll) what
        # arrives within one back-off step.
        streamed = self._order_news_arrived(a, client_id)
        if streamed is None and polls > 0:
            streamed = await self.stream_news(
                a, client_id, min(self.now() + self.policy.backoff(polls - 1), _end(deadline)),
                positions=also_position)
        if streamed is not None:
            return streamed, Source.STREAM, None
        if also_position:
            pos = await self.observe_position(a, 0, deadline, wait=False)
            if pos is not None:
                a.facts = a.facts.with_position(pos)
        asked_at = self.now()
        try:
            snap, source = await self.fetch_order_racing_stream(a, client_id, order_id, deadline)
            return snap, source, None
        except OrderNotFound:
            log.debug("attempt %s: order %s not visible yet", a.attempt_id, client_id,
                      extra=_extra(a))
            return None, None, asked_at
        except TransientError as exc:
            if exc.retry_after:
                await self.sleep_until(min(self.now() + exc.retry_after, _end(deadline)))
        except Exception:
            log.exception("attempt %s: unexpected error fetching order", a.attempt_id,
                          extra=_extra(a))
        return None, None, None

    def _order_news_arrived(self, a: Attempt, client_id: str) -> OrderSnapshot | None:
        """The stream's news of the order that arrived while we were busy
        with the previous request: terminal, and not what the attempt holds
        already. (Not a coroutine: on most polls there is none, and nothing
        to wait for.)"""
        cache = self.adapter.position_cache
        if cache is not None:
            hit = cache.latest_order(client_id)
            seen = a.facts.entry if client_id == a.client_id else a.facts.close_order
            if hit is not None and hit.terminal and hit is not seen:
                return hit
        return None

    async def fetch_order_racing_stream(
        self, a: Attempt, client_id: str, order_id: str | None, deadline: float | None
    ) -> tuple[OrderSnapshot, Source]:
        """Fetch the order; if the stream reports it terminal while the fetch
        is in flight, the stream wins and the fetch (a read) is abandoned.
        Rule 3: sources are raced, not queued. Without this, a fill the
        stream pushed just after a minimal ack waited a whole extra round
        trip for the fetch (calm profile: p50 67 ms to protection instead
        of ~45)."""
        def fetch() -> Awaitable[OrderSnapshot]:
            return self.call(
                self.adapter.fetch_order(symbol=a.request.symbol, order_id=order_id,
                                         client_id=client_id),
                deadline=deadline,
            )

        cache = self.adapter.position_cache
        if cache is None:
            return await fetch(), Source.ORDER
        fetching = asyncio.ensure_future(later(fetch))
        streamed = asyncio.ensure_future(_terminal_order_news(cache, client_id))
        await _race(fetching, streamed)
        fetched = fetching.done() and not fetching.cancelled() and fetching.exception() is None
        if streamed.done() and not fetched:
            fetching.cancel()
            await asyncio.gather(fetching, return_exceptions=True)
            return streamed.result(), Source.STREAM
        streamed.cancel()
        await asyncio.gather(streamed, return_exceptions=True)
        return fetching.result(), Source.ORDER

    async def observe_position(
        self, a: Attempt, polls: int, deadline: float | None, *, wait: bool = True
    ) -> PositionSnapshot | None:
        """One poll round for the position: the stream's news if it comes
        before the back-off step ends, else a REST read."""
        end = _end(deadline)
        if wait and polls > 0:
            wake = min(self.now() + self.policy.backoff(polls - 1), end)
            streamed = await self.stream_news(a, None, wake, positions=True)
            if streamed is not None:
                return None  # a position update: the caller re-reads the cache
        try:
            snaps = await self.call(self.adapter.fetch_positions([a.request.symbol]),
                                    deadline=deadline)
        except TransientError as exc:
            if exc.retry_after:
                await self.sleep_until(min(self.now() + exc.retry_after, end))
            return None
        except Exception:
            log.exception("attempt %s: unexpected error fetching positions", a.attempt_id,
                          extra=_extra(a))
            return None
        mine = [s for s in snaps if s.symbol == a.request.symbol]
        if mine:
            return None if _predates_fill(a.facts, mine[0]) else mine[0]
        # Absent from REST: a flat view (of unknown age).
        return PositionSnapshot(symbol=a.request.symbol, side=None, size=0.0,
                                source=Source.REST, received_at=self.now())

    async def stream_news(
        self, a: Attempt, client_id: str | None, until: float, *, positions: bool
    ) -> OrderSnapshot | None:
        """Sleep until ``until``, waking early on a stream update of the
        order (returned when terminal) or of the position (returns None
        early, so the caller re-reads the cache)."""
        cache = self.adapter.position_cache
        if cache is None:
            await self.sleep_until(until)
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
        timeout = max(0.0, until - self.now())
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

    def stream_position(self, a: Attempt) -> PositionSnapshot | None:
        """The stream's latest position for the symbol, if it arrived after
        the attempt began and, when both times are known, describes the
        account at or after the entry's fill (an older one says nothing about
        our order, however late a lagging stream delivers it)."""
        cache = self.adapter.position_cache
        if cache is None:
            return None
        snap = cache.latest(a.request.symbol)
        began = a.started_at
        if snap is None or began is None or snap.received_at < began:
            return None
        return None if _predates_fill(a.facts, snap) else snap

    async def check_fills(self, a: Attempt, polls: int, deadline: float | None) -> None:
        """Read the symbol's executions since the entry's fill and record
        whether any is not the attempt's own. A failed read records nothing
        (absence needs proof) and waits one back-off step."""
        f = a.facts
        since = f.entry.timestamp if f.entry is not None else None
        try:
            fills = await self.call(self.adapter.fetch_fills(a.request.symbol, since),
                                    deadline=deadline)
        except Exception as exc:  # noqa: BLE001 - a failed read records nothing
            log.warning("attempt %s: could not read the symbol's executions: %s", a.attempt_id,
                        exc, extra=_extra(a))
            await self.back_off(polls, deadline)
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
                own_stops = (stop_cid, attached_stop_id(a.attempt_id))
                whose = ("the attempt's own stop" if other.client_id in own_stops else
                         "the attempt's own close" if other.client_id == close_cid else
                         "an execution that is not this attempt's")
                foreign = (f"{whose} ({side} {other.amount:g}, order {other.order_id or '?'}) "
                           f"traded {a.request.symbol} since the fill")
        a.facts = evolve(a.facts, fills_checked=True, foreign_fill=foreign)

    async def find_attached(self, a: Attempt, polls: int) -> bool:
        """Read back the stop the exchange armed with our entry. A stop shown
        in full, or shown refused or gone, is news at once; otherwise one
        back-off step is waited (bounded by the attached stop's deadline)."""
        adapter = self.adapter
        assert isinstance(adapter, AttachedStopPort)
        f = a.facts
        deadline = f.attached_deadline
        try:
            snap = await self.call(adapter.fetch_attached_stop(
                symbol=a.request.symbol, order_id=_order_id(f.entry) or _order_id(f.ack),
                client_id=a.client_id, stop_client_id=attached_stop_id(a.attempt_id)),
                deadline=deadline)
        except Exception as exc:  # noqa: BLE001 - a failed look-up proves nothing; retried
            log.warning("attempt %s: attached stop look-up failed: %s", a.attempt_id, exc,
                        extra=_extra(a))
            snap = None
        if snap is not None:
            a.facts = evolve(a.facts, stop=snap)
            if snap.status is not OrderStatus.OPEN \
                    or G.stop_shown_in_full(at(a.facts, self.now())):
                return False
        await self.back_off(polls, deadline)
        return True

    async def find_stop(self, a: Attempt, polls: int) -> bool:
        """Look our stop up among the symbol's stops by client id; found, it
        joins the facts at once, else one back-off step is waited."""
        stop_cid = client_ids(a.attempt_id)[1]
        deadline = a.facts.protect_deadline
        try:
            stops = await self.call(self.adapter.fetch_stops(a.request.symbol),
                                    deadline=deadline)
        except Exception as exc:  # noqa: BLE001 - a failed look-up proves nothing; retried
            log.warning("attempt %s: stop look-up failed: %s", a.attempt_id, exc,
                        extra=_extra(a))
            stops = []
        found = next((s for s in stops if s.client_id == stop_cid), None)
        if found is not None:
            a.facts = evolve(a.facts, stop=found)
            return False
        await self.back_off(polls, deadline)
        return True

    # -- the create's reply against the stream ------------------------------------------

    async def stream_before_reply(
        self, a: Attempt, creating: asyncio.Future[OrderSnapshot]
    ) -> OrderSnapshot | None:
        """Wait for the create's reply, or for the stream's first report of
        the order, whichever comes first; the report if it came first, in
        which case the reply is left in flight (never cancelled by choice: it
        is a write's answer) and registered in ``replies``."""
        cache = self.adapter.position_cache
        if cache is None:
            return None
        cid = a.client_id
        news = asyncio.ensure_future(cache.wait_order(cid, cache.order_version(cid)))
        await _race(creating, news)
        if creating.done():
            news.cancel()
            await asyncio.gather(news, return_exceptions=True)
            return None
        self.replies[a.attempt_id] = creating
        attempt_task = asyncio.current_task()

        def gone(t: asyncio.Future[OrderSnapshot]) -> None:
            # Cancelled by anyone but us (the process going down) while the
            # attempt still counts on it: the attempt goes down too, as it
            # would have if it had been awaiting the reply itself.
            if t.cancelled() and self.replies.get(a.attempt_id) is t and attempt_task:
                attempt_task.cancel()

        creating.add_done_callback(gone)
        return news.result()

    async def settle_reply(self, a: Attempt, *, interrupted: bool = False) -> None:
        """The create reply the stream overtook: awaited before the attempt
        returns (it changes nothing, but a refusal now is a contradiction
        worth a log line), or cancelled when the attempt was interrupted."""
        reply = self.replies.pop(a.attempt_id, None)
        if reply is None:
            return
        if interrupted:  # the attempt's requests stop with it
            reply.cancel()
            reply.add_done_callback(consume)
            return
        try:
            await reply
        except AmbiguousError:
            pass  # the stream already told us what the reply would have
        except Exception as exc:  # noqa: BLE001 - the stream already proved the order; logged
            log.error("attempt %s: create reply after the stream had shown the order: %s",
                      a.attempt_id, exc, extra=_extra(a))

    # -- before the entry ---------------------------------------------------------------

    async def read(self, make: Callable[[], Awaitable[T]], what: str, give_up: float) -> T:
        """One read before the entry. A transient failure (rate limit, 503,
        timeout) is retried with back-off until ``give_up``, the end of the
        window all reads before the entry share (``Policy.verify_timeout``
        from the first: nothing is at risk yet, so they may take as long as
        the entry's fill would be given, but no longer, so that
        ``Policy.max_duration`` bounds the attempt); then, or on any other
        failure, the request is refused with nothing sent: an account the
        engine cannot see is one it must not trade."""
        tries = 0
        while True:
            try:
                return await self.call(make())
            except UnknownSymbol:
                raise
            except TransientError as exc:
                if self.now() >= give_up:
                    raise BadRequest(f"cannot {what} ({said(exc)}). Nothing was sent.") from exc
                await self.back_off(tries, give_up)
                tries += 1
            except Exception as exc:
                raise BadRequest(f"cannot {what} ({said(exc)}). Nothing was sent.") from exc

    def pre_entry_deadline(self) -> float:
        """The end of the window the reads before an entry share."""
        return self.now() + self.policy.verify_timeout

    async def market(self, symbol: str, give_up: float) -> Market:
        """The market for the request's symbol, in either spelling: every
        comparison from here on uses its canonical symbol (rule 9: an order
        the engine cannot recognise as its own is an order it cannot guard)."""
        known = self._markets.get(symbol)
        if known is not None:
            return known
        try:
            market = await self.read(lambda: self.adapter.market(symbol),
                                     f"load the market {symbol!r} from {self.adapter.name}",
                                     give_up)
        except UnknownSymbol as exc:
            raise BadRequest(f"{self.adapter.name} lists no market {symbol!r} ({said(exc)}). "
                             "Nothing was sent.") from exc
        self._markets[symbol] = market
        return market

    async def price_and_account(self, symbol: str, side: Side, reference: float | None,
                                give_up: float) -> tuple[float, PositionSnapshot]:
        """The reference price (the request's, or the market's) and the
        account's position before the entry; two reads at once when both
        are needed, since neither depends on the other."""
        if reference is not None:
            return reference, await self.account_before_entry(symbol, side, give_up)
        got_price, got_view = await asyncio.gather(
            self.market_price(symbol, give_up), self.account_before_entry(symbol, side, give_up),
            return_exceptions=True)
        if isinstance(got_price, BaseException):
            raise got_price
        if isinstance(got_view, BaseException):
            raise got_view
        return got_price, got_view

    async def market_price(self, symbol: str, give_up: float) -> float:
        """The market's price, to check the stop-loss against; refuses without one."""
        price = await self.read(
            lambda: self.adapter.fetch_price(symbol),
            f"check stop_loss against the market for {symbol}; pass reference_price to "
            "OpenRequest", give_up)
        if price is None:
            raise BadRequest(
                f"no reference price for {symbol}; pass reference_price to "
                "OpenRequest. Nothing was sent."
            )
        return price

    async def account_before_entry(self, sym: str, side: Side,
                                   give_up: float) -> PositionSnapshot:
        """One read of the symbol's position before the entry (rule 9). An
        opposite-side position refuses the request: the entry would net
        against exposure that is not the attempt's. A same-side one is
        allowed; the attempt then answers for its own fill only."""
        snaps = await self.read(lambda: self.adapter.fetch_positions([sym]),
                                f"read the account's {sym} position before the entry", give_up)
        views = [p for p in snaps if p.symbol == sym and p.size > 0]
        cache = self.adapter.position_cache
        streamed = cache.latest(sym) if cache is not None else None
        if streamed is not None and streamed.size > 0:
            views.append(streamed)
        for p in views:
            if p.side is not side.opens:
                raise OppositePosition(
                    f"the account holds {pos_words(p)} on {sym}; a {side.value} would net "
                    "against exposure that is not this attempt's. Close it first. Nothing was "
                    "sent.", p)
        if views:
            return views[0]
        return PositionSnapshot(symbol=sym, side=None, size=0.0, source=Source.REST,
                                received_at=self.now())


# -- small helpers -----------------------------------------------------------------------


def said(exc: BaseException, kind: bool = False) -> str:
    """An exception in words for a history detail, an alert or an error we
    raise, with any signed query string or credential redacted (a ccxt error
    can quote the whole signed URL)."""
    return redact(repr(exc) if kind else str(exc))


def _extra(a: Attempt) -> dict[str, str]:
    return {"attempt_id": a.attempt_id, "state": a.state.value}


def _end(d: float | None) -> float:
    return d if d is not None else float("inf")


def _order_id(o: OrderSnapshot | None) -> str | None:
    return o.order_id if o is not None else None


def _phase_deadline(state: State, f: Facts) -> float | None:
    if state is State.PLACED:
        return f.fetch_deadline
    if state is State.FETCHED:
        return f.verify_deadline
    if state is State.VERIFIED:
        return f.attached_deadline if f.relying_on_attached else f.protect_deadline
    return f.close_deadline


def _predates_fill(f: Facts, snap: PositionSnapshot) -> bool:
    """``snap`` shows the account before our entry filled (both times known).
    Such a view says nothing about our exposure, however late a lagging
    source delivers it: it must neither size a close nor count as a source
    that has seen our position."""
    filled_at = f.entry.timestamp if f.entry is not None else None
    return snap.as_of is not None and filled_at is not None and snap.as_of < filled_at


async def _race(a: asyncio.Future[Any], b: asyncio.Future[Any]) -> None:
    """Wait until one of two futures is done. Cancelled from outside, the
    attempt's requests stop with it: both are cancelled and awaited."""
    try:
        await asyncio.wait((a, b), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        a.cancel()
        b.cancel()
        await asyncio.gather(a, b, return_exceptions=True)
        raise


async def later(make: Callable[[], Awaitable[T]]) -> T:
    """Await what ``make`` builds, building it only once the task runs: a
    task cancelled before its first step then leaves no coroutine behind
    that was never awaited."""
    return await make()


def consume(fut: asyncio.Future[Any]) -> None:
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
