"""The engine's writes to the exchange: the entry, the stop, the close, and
the cancel of a leftover stop. Each is announced in the journal first
(rule 8, through the driver's ``intent``) and its answer, whatever it is,
becomes facts of the attempt; nothing here decides a transition.

Exceptions are read from the narrowest: a duplicate client id is a refusal
that proves an earlier send arrived, and an ambiguous answer is a transient
one whose outcome is unknown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, Protocol

from fsm.attempt import Attempt, attached_stop_id, client_ids
from fsm.effects import absent_after, cancel_stop
from fsm.evidence import CloseIntent
from fsm.model import (
    AmbiguousError,
    DuplicateClientId,
    OrderRejected,
    OrderSnapshot,
    OrderStatus,
    Source,
    TransientError,
)
from fsm.observe import Observer, later, said
from fsm.policy import Policy
from fsm.port import AttachedStopPort, ExchangePort
from fsm.step import evolve, fall_back_reason, order_words

__all__ = ["Intent", "Sender"]

log = logging.getLogger("fsm")


class Intent(Protocol):
    """Journals an intent before its send: ``(attempt, action, client_id, **data)``."""

    def __call__(self, a: Attempt, action: str, client_id: str, **data: Any) -> None:
        """Journal the intent; raise if the entry's intent cannot be made durable."""
        ...


class Sender:
    """The writes of one opener."""

    def __init__(self, adapter: ExchangePort, policy: Policy, observe: Observer,
                 intent: Intent) -> None:
        self.adapter = adapter
        self.policy = policy
        self._observe = observe
        self._intent = intent

    async def entry(self, a: Attempt) -> tuple[Source | None, str]:
        """Send the entry once; the outcome becomes facts, and returns in words."""
        r = a.request
        attached = a.facts.stop_attached
        extra: dict[str, Any] = {}
        if attached:
            # Recovery reads this: a stop may have been armed with the entry.
            extra = {"attached_stop_price": r.stop_loss,
                     "attached_stop_client_id": attached_stop_id(a.attempt_id)}
        self._intent(a, "entry", a.client_id, side=r.side.value, amount=r.amount,
                     reduce_only=False, **extra)
        sent_at = self._observe.now()
        window = self.policy.verify_timeout
        before = a.facts
        # The deadlines the send starts, recorded with its outcome (one copy
        # of the facts, not two).
        base = {"fetch_deadline": sent_at + window, "verify_deadline": sent_at + window,
                "entry_absent_after": absent_after(self.adapter, self.policy, sent_at)}

        def create() -> Awaitable[OrderSnapshot]:
            if attached:
                adapter = self.adapter
                assert isinstance(adapter, AttachedStopPort)
                return self._observe.call(adapter.create_order_with_stop(
                    symbol=r.symbol, side=r.side, amount=r.amount, client_id=a.client_id,
                    stop_price=r.stop_loss, stop_client_id=attached_stop_id(a.attempt_id),
                ))
            return self._observe.call(self.adapter.create_order(
                symbol=r.symbol, side=r.side, amount=r.amount,
                client_id=a.client_id, reduce_only=False,
            ))

        reply: Awaitable[OrderSnapshot]
        if self.adapter.position_cache is None:
            reply = create()
        else:
            creating = asyncio.ensure_future(later(create))
            streamed = await self._observe.stream_before_reply(a, creating)
            if streamed is not None:
                # Rule 3, first evidence wins: the stream reported our order
                # before the create's reply (in the incident, by 8 ms; under
                # load, by seconds). That proves the order exists and says
                # more than a minimal reply would. The reply is a write's
                # answer: never cancelled, it is awaited before the attempt
                # returns.
                a.facts = evolve(before, **base, ack=streamed, entry=streamed,
                                 entry_source=Source.STREAM)
                return Source.STREAM, (f"stream reported {order_words(streamed)} before the "
                                       "create's reply")
            reply = creating
        try:
            ack = await reply
        except OrderRejected as exc:
            a.facts = evolve(before, **base, create_error=said(exc))
            return Source.ACK, f"create refused: {said(exc)}"
        except AmbiguousError as exc:
            a.facts = evolve(before, **base, create_ambiguous=True)
            return Source.ACK, (f"create outcome unknown ({said(exc)}); will look up "
                                f"client id {a.client_id}, never resend")
        except TransientError as exc:
            # Rate limits and the like are refused before matching: nothing
            # was placed. Adapters raise AmbiguousError when that is not sure.
            a.facts = evolve(before, **base, create_error=said(exc))
            return Source.ACK, f"create refused before matching: {said(exc)}"
        except Exception as exc:  # unknown failure of a write: assume it may exist
            log.exception("attempt %s: unexpected error from create_order", a.attempt_id,
                          extra={"attempt_id": a.attempt_id, "state": a.state.value})
            a.facts = evolve(before, **base, create_ambiguous=True)
            return Source.ACK, (f"create failed unexpectedly ({said(exc, True)}); treated as "
                                "ambiguous")
        a.facts = evolve(before, **base, ack=ack, entry=ack, entry_source=Source.ACK)
        return Source.ACK, f"acknowledged {order_words(ack)}"

    async def stop(self, a: Attempt, polls: int) -> tuple[bool, int]:
        """Place the stop once more. Returns whether it may rest already (from
        now on only looked up) and the polls count (one back-off step is
        waited unless the answer is news)."""
        i = a.facts.stop_intent
        assert i is not None
        self._intent(a, "stop", i.client_id, side=i.side.value, amount=i.amount,
                     trigger_price=i.trigger_price, reduce_only=True)
        lookup = True
        try:
            stop = await self._observe.call(self.adapter.place_stop(
                symbol=a.request.symbol, side=i.side, amount=i.amount,
                trigger_price=i.trigger_price, client_id=i.client_id,
            ), deadline=a.facts.protect_deadline)
            a.facts = evolve(a.facts, stop=stop)
            return False, polls
        except (DuplicateClientId, AmbiguousError):
            pass  # it may rest already: an earlier, ambiguous placement did arrive
        except OrderRejected as exc:
            a.facts = evolve(a.facts, stop_error=f"stop refused: {said(exc)}")
            return False, polls
        except TransientError as exc:
            lookup = False
            log.warning("attempt %s: stop not placed (%s), retrying", a.attempt_id, exc,
                        extra={"attempt_id": a.attempt_id, "state": a.state.value})
        except Exception:
            log.exception("attempt %s: unexpected error placing stop", a.attempt_id,
                          extra={"attempt_id": a.attempt_id, "state": a.state.value})
        await self._observe.back_off(polls, a.facts.protect_deadline)
        return lookup, polls + 1

    async def close(self, a: Attempt, intent: CloseIntent) -> None:
        """Send the reduce-only close. A close the adapter reports refused
        before matching (:class:`TransientError`: rate limit, unavailable) took
        no effect and is retried, until the close deadline and at most 20
        times (then ``close_error`` says why); an ambiguous one is looked up by client id
        by the rollback loop, and sent again only once proven never to have
        arrived."""
        a.facts = evolve(a.facts, close_intent=intent, close_order=None, close_missing=False,
                         fills_checked=False)
        sent_at = self._observe.now()
        self._intent(a, "close", intent.client_id, side=intent.side.value,
                     amount=intent.amount, reduce_only=True)
        tries = 0
        while True:
            try:
                snap = await self._observe.call(self.adapter.create_order(
                    symbol=a.request.symbol, side=intent.side, amount=intent.amount,
                    client_id=intent.client_id, reduce_only=True,
                ), deadline=a.facts.close_deadline)
                a.facts = evolve(a.facts, close_order=snap)
                return
            except DuplicateClientId:
                return  # the earlier send arrived; the rollback loop fetches it
            except OrderRejected as exc:
                a.facts = evolve(a.facts, close_error=f"close refused: {said(exc)}")
                log.error("attempt %s: reduce-only close refused: %s", a.attempt_id, exc,
                          extra={"attempt_id": a.attempt_id, "state": a.state.value,
                                 "source": Source.CLOSE.value})
                return
            except AmbiguousError:
                break  # the rollback loop looks it up by client id
            except TransientError as exc:
                tries += 1
                deadline = a.facts.close_deadline
                if (deadline is not None and self._observe.now() >= deadline) or tries > 20:
                    a.facts = evolve(a.facts, close_error=f"close not placed: {said(exc)}")
                    return
                await self._observe.back_off(tries, deadline)
            except Exception:
                log.exception("attempt %s: unexpected error sending close", a.attempt_id,
                              extra={"attempt_id": a.attempt_id, "state": a.state.value})
                break
        # Ambiguous: the rollback loop looks it up by client id, and a
        # not-found answer proves it never arrived only after this moment.
        a.facts = evolve(a.facts, close_absent_after=absent_after(self.adapter, self.policy,
                                                                  sent_at))

    async def cancel_wrong_stop(self, a: Attempt, deadline: float) -> None:
        """Cancel the stop the venue made other than asked (not reduce-only,
        the wrong side or size: it could open a position), retrying with
        back-off until ``deadline``; what this misses, the monitor cancels."""
        f = a.facts
        if f.stop is None:
            return
        cid = f.stop.client_id or (f.stop_intent.client_id if f.stop_intent else None)
        loop = asyncio.get_running_loop()
        p = self.policy
        tries = 0
        while True:
            limit = min(p.request_timeout, max(deadline - loop.time(), p.request_timeout / 10))
            failed = await cancel_stop(self.adapter, limit, symbol=a.request.symbol,
                                       order_id=f.stop.order_id, client_id=cid,
                                       attempt_id=a.attempt_id, state=a.state.value)
            if failed is None or loop.time() >= deadline:
                return
            await asyncio.sleep(min(p.backoff(tries), max(0.0, deadline - loop.time())))
            tries += 1

    async def fall_back(self, a: Attempt) -> None:
        """After the ``fall_back`` row: the stop attached to the entry is not
        trusted. A live one (wrong) or one not shown yet (it may still arm) is
        cancelled first, so two stops of the attempt never rest at once; if
        that cancel fails, no second stop is placed beside it (the protection
        then fails and the attempt rolls back). The separate stop starts
        from a clean slate."""
        f = a.facts
        s = f.stop
        error = None
        if s is None or s.status is OrderStatus.OPEN:
            order_id = s.order_id if s is not None else None
            client_id = ((s.client_id if s is not None else None)
                         or (None if order_id else attached_stop_id(a.attempt_id)))
            failed = await cancel_stop(
                self.adapter, self.policy.protect_timeout, symbol=a.request.symbol,
                order_id=order_id, client_id=client_id, attempt_id=a.attempt_id,
                state=a.state.value)
            if failed is not None:
                error = (f"could not cancel the attached stop ({said(failed)}): no second "
                         "stop is placed beside it")
        a.facts = evolve(f, attached_failed=fall_back_reason(f), stop_intent=None, stop=None,
                         stop_error=error, protect_deadline=None)

    async def cancel_stop(self, a: Attempt) -> None:
        """After a verified close, cancel a stop this attempt may have left
        (it would otherwise act on a future position). Best effort: the
        reconciliation monitor cancels what this misses. The stop attached
        to the entry may rest too (armed late, or a wrong one whose cancel
        failed): it is cancelled by its own id."""
        f = a.facts
        stop_cid = client_ids(a.attempt_id)[1]
        leftovers: list[tuple[str | None, str]] = []
        if f.stop_intent is not None:
            leftovers.append((f.stop.order_id if f.stop else None, f.stop_intent.client_id))
        if f.stop_attached and (f.stop_intent is None or f.stop_intent.client_id == stop_cid):
            leftovers.append((None, attached_stop_id(a.attempt_id)))
        for order_id, cid in leftovers:
            await cancel_stop(self.adapter, self.policy.request_timeout,
                              symbol=a.request.symbol, order_id=order_id, client_id=cid,
                              attempt_id=a.attempt_id, state=a.state.value)

