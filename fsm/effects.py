"""The engine's side effects on the outside world, one way each, shared by the
driver (:mod:`fsm.driver`), recovery (:mod:`fsm.recovery`) and the monitor
(:mod:`fsm.reconcile`):

* :func:`bounded`: one exchange call, bounded in time;
* :func:`deliver_alert` and :func:`deliver_queued`: alert delivery, at
  least once, queued in the journal before the callback is called;
* :func:`look_up_order`: an order looked up by id or client id, retried
  briefly (right after a crash it may not be visible yet);
* :func:`cancel_stop`: a leftover stop cancelled, best effort;
* :func:`absent_after`: when a not-found answer proves a request never
  executed (rule 10).

An alert is the last line of defence, so delivery is *at least once*: the
alert is queued in the journal (an ``alert`` record) before the callback is
called, and recorded delivered (``alert_delivered``) after it returns;
``recover()`` delivers again every queued alert without the second. A
receiver de-duplicates by :attr:`~fsm.attempt.Alert.alert_id`. The callback
is bounded in time, so a hanging pager never holds an attempt open.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from types import CoroutineType
from typing import Any, Generic, TypeVar, cast

from fsm.alerts import AlertSink, Note, alert_record
from fsm.attempt import Alert, Attempt, Transition
from fsm.fence import check_held
from fsm.model import AmbiguousError, OrderNotFound, OrderSnapshot
from fsm.policy import Policy
from fsm.port import ExchangePort

__all__ = ["CALLER", "Tally", "absent_after", "bounded", "cancel_stop", "deliver_alert",
           "deliver_queued", "hand_over", "look_up_order", "notify"]

log = logging.getLogger("fsm")

T = TypeVar("T")
A = TypeVar("A")


class Tally:
    """Counts an attempt's exchange requests (its pre-entry reads until the
    attempt exists)."""

    requests = 0


#: What this task's exchange calls are counted on (``Attempt.requests``): set
#: once per attempt, inherited by every task the attempt starts, so no call
#: site has to pass it along.
CALLER: contextvars.ContextVar[Tally | Attempt | None] = contextvars.ContextVar(
    "CALLER", default=None)


async def bounded(aw: Awaitable[T], limit: float, *, ambiguous: bool = True) -> T:
    """Await one exchange call for at most ``limit`` seconds, counted on the
    attempt in :data:`CALLER`. Exceeding it raises
    :class:`~fsm.model.AmbiguousError` (for a write we cannot know
    whether it reached the exchange), or ``TimeoutError`` when
    ``ambiguous`` is false (a read whose caller only reports failures)."""
    try:  # a process whose lease expired (paused, cut off) sends nothing more
        check_held()
    except asyncio.CancelledError:
        if isinstance(aw, CoroutineType):
            aw.close()
        raise
    counted = CALLER.get()
    if counted is not None:
        counted.requests += 1
    if isinstance(aw, CoroutineType):  # (inspect.iscoroutine, without its call)
        # Run the call up to its first suspension before arming a timer: an
        # answer that needs no waiting (a cache, an instant venue) costs no
        # timer, and one that waits is bounded from that moment on.
        try:
            first = aw.send(None)
        except StopIteration as done:
            value: T = done.value  # (not typing.cast: a function call, for nothing)
            return value
        aw = _Resumed(aw, first)
    try:
        async with asyncio.timeout(limit):
            return await aw
    except TimeoutError as exc:
        if not ambiguous:  # said in words: a bare TimeoutError reads as "" in a history
            raise TimeoutError(f"no answer within {limit:g}s") from exc
        raise AmbiguousError(f"no answer within {limit:g}s") from exc


class _Resumed(Generic[T]):
    """The rest of a coroutine already stepped once, as an awaitable: what
    ``yield from`` would do with it, starting from the value it yielded."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, T], first: Any) -> None:
        self._coro, self._first = coro, first

    def __await__(self) -> Generator[Any, Any, T]:
        coro, out = self._coro, self._first
        while True:
            try:
                sent = yield out
            except BaseException as exc:  # noqa: BLE001 - a cancellation, the timeout's included
                try:
                    out = coro.throw(exc)
                except StopIteration as done:
                    return cast(T, done.value)
            else:
                try:
                    out = coro.send(sent)
                except StopIteration as done:
                    return cast(T, done.value)


def absent_after(adapter: ExchangePort, policy: Policy, sent_at: float) -> float | None:
    """When a not-found answer proves a request sent at ``sent_at`` never
    executed: the exchange's receive window, plus clock skew, plus how long
    an accepted order may stay invisible (rule 10). None: never."""
    window = adapter.receive_window
    if window is None:
        return None
    return sent_at + window + policy.clock_skew_margin + adapter.lookup_lag


async def look_up_order(adapter: ExchangePort, policy: Policy, symbol: str, client_id: str,
                        order_id: str | None) -> OrderSnapshot | None:
    """Look an order up by id (or client id), retrying briefly: right after a
    crash it may not be visible yet. ``None`` means "not found", which is not
    proof that it was never sent."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + policy.request_timeout
    tries = 0
    while True:
        try:
            return await bounded(adapter.fetch_order(symbol=symbol, order_id=order_id,
                                                     client_id=client_id),
                                 policy.request_timeout, ambiguous=False)
        except (OrderNotFound, TimeoutError):
            pass
        except Exception as exc:  # noqa: BLE001 - a failed look-up proves nothing; retried
            log.info("recovery look-up of %s failed: %s", client_id, exc)
        if loop.time() >= give_up:
            return None
        await asyncio.sleep(min(policy.backoff(tries), max(0.0, give_up - loop.time())))
        tries += 1


async def cancel_stop(adapter: ExchangePort, limit: float, *, symbol: str,
                      order_id: str | None, client_id: str | None, attempt_id: str,
                      state: str) -> BaseException | None:
    """Cancel a stop that outlived its position (it would otherwise act on a
    future one). Best effort: returns the failure (logged), or None when the
    stop is gone (cancelled now, or already)."""
    try:
        await bounded(adapter.cancel_order(symbol=symbol, order_id=order_id,
                                           client_id=client_id), limit, ambiguous=False)
    except OrderNotFound:
        return None
    except Exception as exc:  # noqa: BLE001 - best effort: the monitor cancels what this misses
        log.warning("attempt %s: could not cancel leftover stop %s: %s", attempt_id,
                    client_id or order_id, exc,
                    extra={"attempt_id": attempt_id, "state": state})
        return exc
    return None


async def deliver_alert(sink: AlertSink | None, alert: Alert, limit: float) -> bool:
    """Log ``alert`` at CRITICAL and hand it to ``sink`` (:func:`hand_over`).
    Returns whether the sink took it (it is delivered again by
    ``recover()`` when it did not)."""
    log.critical(alert.message, extra={"attempt_id": alert.attempt_id,
                                       "state": alert.state.value,
                                       "alert_id": alert.alert_id})
    if sink is None:
        return True
    return await hand_over(sink, alert, limit, f"alert {alert.alert_id}",
                           {"attempt_id": alert.attempt_id, "alert_id": alert.alert_id})


async def hand_over(sink: Callable[[A], Awaitable[None] | None], alert: A, limit: float,
                    what: str, extra: Mapping[str, Any] | None = None) -> bool:
    """Hand one alert of any kind to ``sink``: a sync callable is called (it
    must return promptly), an async one is awaited for at most ``limit``
    seconds. Returns whether the sink took it; a sink that fails or hangs is
    logged, never raised: neither an attempt's outcome nor the monitor's
    next check depends on the pager."""
    try:
        async with asyncio.timeout(limit):
            result = sink(alert)
            if inspect.isawaitable(result):
                await result
    except TimeoutError:
        log.error("%s: the alert callback did not return within %gs; given up", what, limit,
                  extra=extra)
        return False
    except Exception:
        log.exception("%s: the alert callback failed", what, extra=extra)
        return False
    return True


async def deliver_queued(sink: AlertSink | None, alert: Alert, limit: float,
                         note: Note | None, *, queue: bool = True) -> bool:
    """Queue ``alert`` in the journal (unless it is queued already), deliver
    it, and record the delivery: the one path of the driver and recovery.
    Without a journal (``note`` is None) it is delivered, unqueued."""
    if note is not None and queue:
        note("alert", alert_record(alert))
    delivered = await deliver_alert(sink, alert, limit)
    if delivered and note is not None:
        note("alert_delivered", {"alert_id": alert.alert_id})
    return delivered


def notify(hook: Callable[[Attempt, Transition], Awaitable[None] | None], a: Attempt,
           step: Transition, limit: float, running: set[asyncio.Future[None]]) -> None:
    """Hand one step to an ``on_transition`` hook; its failure or slowness
    never touches the attempt. An async hook runs on its own, bounded by
    ``limit`` and kept in ``running`` until it ends; the attempt never
    awaits it."""
    try:
        result = hook(a, step)
    except Exception:
        log.exception("attempt %s: on_transition failed", a.attempt_id,
                      extra={"attempt_id": a.attempt_id, "state": a.state.value})
        return
    if inspect.isawaitable(result):
        task = asyncio.ensure_future(_hook_bounded(a, result, limit))
        running.add(task)
        task.add_done_callback(running.discard)


async def _hook_bounded(a: Attempt, aw: Awaitable[None], limit: float) -> None:
    try:
        async with asyncio.timeout(limit):
            await aw
    except Exception:
        log.exception("attempt %s: on_transition failed or took longer than %gs",
                      a.attempt_id, limit, extra={"attempt_id": a.attempt_id})
