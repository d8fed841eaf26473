"""No loop of the engine outlives its deadline, and none spins.

An exchange whose calls never return, or always fail at once, is put in
front of the simulator; the virtual clock records every wait the engine
schedules and the wrapper records every call's start and end. The checks
are the rules, not the code: each call lasts at most ``request_timeout`` and
ends by its phase's deadline (or a tenth of the request timeout after it
started, the shortest a call is ever cut); no wait ends past the deadline;
polls back off, growing (rule 2); a look-up of an order whose exchange id is
known carries that id.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import attrs
import pytest

from adapters.port import TransientError
from adapters.simulated import AckStyle, SimConfig, SimulatedExchange
from adapters.virtual_time import VirtualTimeLoop
from fsm import Alert, Attempt, MemoryJournal, Policy, PositionOpener, State, client_ids
from tests.helpers import PRICE, SYMBOL, ids, request

T = TypeVar("T")
EPS = 1e-6


@attrs.define
class Call:
    kind: str
    started: float
    args: dict[str, Any]
    ended: float | None = None


class Betraying:
    """The simulator behind a venue whose chosen calls, from the entry on,
    never return (``hang``) or fail at once with a transient error
    (``transient``). The reads before the entry are answered."""

    def __init__(self, inner: SimulatedExchange, *, hang: set[str] | None = None,
                 transient: set[str] | None = None) -> None:
        self.inner = inner
        self.hang = hang or set()
        self.transient = transient or set()
        self.calls: list[Call] = []
        self.betraying = False

    def __getattr__(self, name: str) -> Any:  # name, position_cache, receive_window, ...
        return getattr(self.inner, name)

    async def _do(self, kind: str, make: Callable[[], Awaitable[T]], args: dict[str, Any]) -> T:
        loop = asyncio.get_running_loop()
        call = Call(kind, loop.time(), args)
        self.calls.append(call)
        self.betraying = self.betraying or kind == "create"
        try:
            if kind in self.hang and self.betraying:
                await loop.create_future()  # never resolves: only a timeout ends it
            if kind in self.transient and self.betraying:
                raise TransientError(f"{kind}: service unavailable")
            return await make()
        finally:
            call.ended = loop.time()

    async def create_order(self, **kw: Any) -> Any:
        kind = "close" if kw["reduce_only"] else "create"
        return await self._do(kind, lambda: self.inner.create_order(**kw), kw)

    async def create_order_with_stop(self, **kw: Any) -> Any:
        return await self._do("create", lambda: self.inner.create_order_with_stop(**kw), kw)

    async def fetch_order(self, **kw: Any) -> Any:
        return await self._do("fetch_order", lambda: self.inner.fetch_order(**kw), kw)

    async def fetch_positions(self, symbols: Any = None) -> Any:
        return await self._do("fetch_positions", lambda: self.inner.fetch_positions(symbols),
                              {"symbols": symbols})

    async def place_stop(self, **kw: Any) -> Any:
        return await self._do("place_stop", lambda: self.inner.place_stop(**kw), kw)

    async def fetch_stops(self, symbol: Any = None) -> Any:
        return await self._do("fetch_stops", lambda: self.inner.fetch_stops(symbol),
                              {"symbol": symbol})

    async def cancel_order(self, **kw: Any) -> Any:
        return await self._do("cancel", lambda: self.inner.cancel_order(**kw), kw)

    async def fetch_fills(self, symbol: str, since: float | None) -> Any:
        return await self._do("fetch_fills", lambda: self.inner.fetch_fills(symbol, since),
                              {"symbol": symbol, "since": since})


class RecordingLoop(VirtualTimeLoop):
    """A virtual clock that records every wait scheduled on it (``sleep``,
    and ``asyncio.wait``'s timeout) as (when, length). Timeouts that bound a
    call are not waits, and are left out."""

    _WAITS = ("_set_result_unless_cancelled", "_release_waiter")

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[tuple[float, float]] = []

    def call_at(  # type: ignore[override]
            self, when: float, callback: Any, *args: Any, context: Any = None) -> Any:
        if getattr(callback, "__name__", "") in self._WAITS:
            self.waits.append((self.time(), when - self.time()))
        return super().call_at(when, callback, *args, context=context)


@attrs.define
class Run:
    attempt: Attempt
    venue: Betraying
    waits: list[tuple[float, float]]
    alerts: list[Alert]
    started: float
    ended: float

    def phases(self) -> list[tuple[State, float, float, float | None]]:
        """(state, entered, left, that phase's deadline) for every state the
        attempt passed through after NEW."""
        f = self.attempt.facts
        deadline = {State.PLACED: f.fetch_deadline, State.FETCHED: f.verify_deadline,
                    State.VERIFIED: f.protect_deadline, State.ROLLING_BACK: f.close_deadline}
        hist = self.attempt.history
        out: list[tuple[State, float, float, float | None]] = []
        for step, nxt in zip(hist, [*hist[1:], None], strict=True):
            if step.dest.terminal:
                continue
            left = nxt.at if nxt is not None else self.ended
            if out and out[-1][0] is step.dest:  # a self-loop: one phase
                out[-1] = (step.dest, out[-1][1], left, out[-1][3])
                continue
            out.append((step.dest, step.at, left, deadline.get(step.dest)))
        return out

    def phase_at(self, t: float) -> tuple[State, float, float, float | None] | None:
        for p in self.phases():
            if p[1] <= t < p[2] or (p[1] <= t and p[2] == t == self.ended):
                return p
        return None


def run(venue_config: SimConfig, policy: Policy, *, ack: AckStyle = AckStyle.MINIMAL,
        hang: set[str] | None = None, transient: set[str] | None = None,
        idle: float = 0.0) -> Run:
    inner = SimulatedExchange(attrs.evolve(venue_config, rtt=0.0, jitter=0.0, ack=ack))
    venue = Betraying(inner, hang=hang, transient=transient)
    alerts: list[Alert] = []
    opener = PositionOpener(venue, policy=policy, alerts=alerts.append,
                            journal=MemoryJournal(), ids=ids())
    loop = RecordingLoop()

    async def go() -> Run:
        if idle:  # the clock is not at zero: a deadline and a duration are not the same number
            await asyncio.sleep(idle)
        t0 = loop.time()
        # An attempt that outlives its bound fails here, in virtual seconds,
        # rather than hanging the test on a call nothing cuts.
        async with asyncio.timeout(policy.max_duration + 1.0):
            attempt = await opener.open(request())
        return Run(attempt, venue, loop.waits, alerts, t0, loop.time())

    return _run_on(loop, go())


def _run_on(loop: VirtualTimeLoop, coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def check_bounded(r: Run, policy: Policy) -> None:
    """Every call and every wait within its phase's deadline; the attempt
    within its policy bound (L3)."""
    assert r.attempt.state.terminal
    assert r.ended - r.started <= policy.max_duration + EPS
    floor = policy.request_timeout / 10
    for c in r.venue.calls:
        assert c.ended is not None, f"{c.kind} never ended"
        assert c.ended - c.started <= policy.request_timeout + EPS, c
        phase = r.phase_at(c.started)
        if phase is not None and phase[3] is not None:
            bound = max(phase[3], c.started + floor)
            assert c.ended <= bound + EPS, (
                f"{c.kind} started at {c.started:g} in {phase[0].value} ran to {c.ended:g}, "
                f"past the phase deadline {phase[3]:g}")
    for at, length in r.waits:
        assert length >= 0
        phase = r.phase_at(at)
        if phase is not None and phase[3] is not None:
            assert at + length <= phase[3] + EPS, (
                f"a wait of {length:g}s from {at:g} in {phase[0].value} ends past the "
                f"deadline {phase[3]:g}")


def waits_in(r: Run, state: State) -> list[float]:
    spans = [(a, b) for s, a, b, _ in r.phases() if s is state]
    return [length for at, length in r.waits if any(a <= at < b for a, b in spans)]


def check_growing(lengths: list[float], policy: Policy, deadline_cut: bool = True) -> None:
    """Rule 2: short back-off, growing geometrically by ``backoff_factor``
    up to the cap: each wait is the one before times the factor, or the cap;
    only the last wait may be shorter (cut by the deadline)."""
    body = lengths[:-1] if deadline_cut else lengths
    assert body, "no back-off at all"
    for a, b in itertools.pairwise(body):
        assert b + EPS >= a, f"back-off shrank: {body}"
        grown = min(policy.backoff_max, a * policy.backoff_factor)
        assert b == pytest.approx(grown, rel=1e-6, abs=EPS), (
            f"a wait of {a:g} was followed by {b:g}, not {grown:g}: {body}")
    assert all(x <= policy.backoff_max + EPS for x in lengths)
    assert body[0] <= policy.backoff_initial + EPS, f"first poll waits {body[0]:g}"
    if deadline_cut and len(lengths) > 1:
        last = min(policy.backoff_max, body[-1] * policy.backoff_factor)
        assert lengths[-1] <= last + EPS, f"the last wait outgrew the back-off: {lengths}"


def entry_order_id(r: Run) -> str:
    creates = [c for c in r.venue.calls if c.kind == "create"]
    assert len(creates) == 1
    ack = r.attempt.facts.ack
    assert ack is not None and ack.order_id is not None
    return ack.order_id


HANG_READS = {"fetch_order", "fetch_positions", "fetch_fills", "fetch_stops", "cancel"}


@pytest.mark.parametrize("policy", [
    Policy(),
    Policy(verify_timeout=1.0, close_timeout=0.5, request_timeout=4.0),
    Policy(verify_timeout=3.0, close_timeout=2.0, request_timeout=0.3, backoff_max=0.1),
], ids=["defaults", "windows-shorter-than-a-request", "short-requests"])
def test_reads_that_never_return_are_cut_by_the_deadlines(policy: Policy) -> None:
    r = run(SimConfig(prices={SYMBOL: PRICE}), policy, hang=HANG_READS)
    assert r.attempt.state is State.ORPHANED
    assert len(r.alerts) == 1
    check_bounded(r, policy)
    # Every look-up of the entry, in the rollback too, carries the exchange's id.
    oid = entry_order_id(r)
    looks = [c for c in r.venue.calls if c.kind == "fetch_order"]
    assert looks and all(c.args["order_id"] == oid for c in looks), looks
    in_rollback = [c for c in looks
                   if (p := r.phase_at(c.started)) and p[0] is State.ROLLING_BACK]
    assert in_rollback, "the rollback never looked the entry up"


@pytest.mark.parametrize("policy", [
    Policy(),
    Policy(verify_timeout=2.0, close_timeout=3.0, backoff_initial=0.01, backoff_factor=2.0,
           backoff_max=0.5),
], ids=["defaults", "fast-growth"])
def test_reads_that_always_fail_back_off_growing_and_stop_at_the_deadline(
        policy: Policy) -> None:
    r = run(SimConfig(prices={SYMBOL: PRICE}), policy,
            transient={"fetch_order", "fetch_positions", "fetch_fills"})
    assert r.attempt.state is State.ORPHANED
    check_bounded(r, policy)
    placed = waits_in(r, State.PLACED)
    check_growing(placed, policy)
    # It yields between polls: never more look-ups than waits, plus the first.
    looks = [c for c in r.venue.calls if c.kind == "fetch_order"
             and (p := r.phase_at(c.started)) and p[0] is State.PLACED]
    assert len(looks) <= len(placed) + 1
    assert sum(placed) <= policy.verify_timeout + EPS
    rollback = waits_in(r, State.ROLLING_BACK)
    assert rollback and sum(rollback) <= policy.close_timeout + EPS
    # The rollback's look-ups of the entry carry the exchange's order id.
    oid = entry_order_id(r)
    assert all(c.args["order_id"] == oid for c in r.venue.calls if c.kind == "fetch_order")


@pytest.mark.parametrize("policy", [
    Policy(),
    Policy(close_timeout=30.0, backoff_max=2.0),
    Policy(close_timeout=0.5),
], ids=["defaults", "long-window", "short-window"])
def test_a_close_refused_before_matching_is_retried_with_growing_back_off(
        policy: Policy) -> None:
    venue = SimConfig(prices={SYMBOL: PRICE}, stop_rejected=True)
    r = run(venue, policy, ack=AckStyle.FULL, transient={"close"})
    assert r.attempt.state is State.ORPHANED
    check_bounded(r, policy)
    closes = [c for c in r.venue.calls if c.kind == "close"]
    assert 1 <= len(closes) <= 21, f"{len(closes)} sends of one close"
    close_waits = waits_in(r, State.ROLLING_BACK)
    if len(closes) > 2:
        check_growing(close_waits[:len(closes) - 1], policy,
                      deadline_cut=closes[-1].started >= (r.attempt.facts.close_deadline or 0))
    # No close is sent once the deadline has passed.
    deadline = r.attempt.facts.close_deadline
    assert deadline is not None and all(c.started <= deadline + EPS for c in closes)
    # Nor does it spin at the deadline: each send waits after the one before.
    gaps = [b.started - a.started for a, b in itertools.pairwise(closes)]
    assert all(g > EPS for g in gaps), f"closes sent at the same instant: {gaps}"
    # Why the rollback failed, in the venue's words, in the facts and the alert.
    error = r.attempt.facts.close_error or ""
    assert error.startswith("close not placed: ") and "close: service unavailable" in error
    assert len(r.alerts) == 1 and error in r.alerts[0].message


def test_a_close_refused_before_matching_is_sent_at_most_21_times() -> None:
    """Refusals before matching (rate limits, a venue down) are retried, at
    most 20 times after the first send even in a long window: a venue that
    keeps refusing is not hammered. Then the attempt waits out its window
    and is ORPHANED with the venue's words."""
    policy = Policy(close_timeout=60.0, backoff_initial=0.01, backoff_max=0.05)
    venue = SimConfig(prices={SYMBOL: PRICE}, stop_rejected=True)
    r = run(venue, policy, ack=AckStyle.FULL, transient={"close"})
    assert r.attempt.state is State.ORPHANED
    check_bounded(r, policy)
    closes = [c for c in r.venue.calls if c.kind == "close"]
    assert len(closes) == 21, f"{len(closes)} sends of one close"
    deadline = r.attempt.facts.close_deadline
    assert deadline is not None and closes[-1].started < deadline - 10.0
    assert (r.attempt.facts.close_error or "").startswith("close not placed: close: service")


@pytest.mark.parametrize("policy", [
    Policy(close_timeout=1.0, request_timeout=5.0),
    Policy(close_timeout=0.3, request_timeout=5.0),
    Policy(close_timeout=8.0, request_timeout=2.0),
], ids=["close-window-1s", "close-window-0.3s", "close-window-8s"])
def test_a_close_that_never_answers_is_cut_at_the_close_deadline(policy: Policy) -> None:
    venue = SimConfig(prices={SYMBOL: PRICE}, stop_rejected=True)
    r = run(venue, policy, ack=AckStyle.FULL, hang={"close"})
    assert r.attempt.state is State.ORPHANED
    check_bounded(r, policy)
    closes = [c for c in r.venue.calls if c.kind == "close"]
    # Ambiguous: sent again only once proven never to have arrived (rule 10:
    # the receive window and the clock skew have passed, and it is not found).
    window = r.venue.inner.config.receive_window
    assert window is not None
    for first, again in itertools.pairwise(closes):
        assert again.started >= first.started + window + policy.clock_skew_margin - EPS
    # With time left after the close timed out, it is looked up by its client id.
    deadline = r.attempt.facts.close_deadline
    assert deadline is not None
    close_cid = client_ids(r.attempt.attempt_id)[2]
    looks = [c for c in r.venue.calls if c.kind == "fetch_order"
             and c.args["client_id"] == close_cid]
    assert closes[0].ended is not None
    if closes[0].ended + policy.backoff_max < deadline:
        assert looks, "the ambiguous close was never looked up"
    assert all(c.started >= closes[0].ended for c in looks)


def test_a_stop_placement_that_never_answers_is_cut_at_the_protect_deadline() -> None:
    policy = Policy(protect_timeout=1.0, request_timeout=5.0)
    r = run(SimConfig(prices={SYMBOL: PRICE}), policy, ack=AckStyle.FULL,
            hang={"place_stop", "fetch_stops"})
    assert r.attempt.state in (State.CLOSE_VERIFIED, State.ORPHANED)
    check_bounded(r, policy)
    stops = [c for c in r.venue.calls if c.kind == "place_stop"]
    assert len(stops) == 1  # ambiguous: never sent twice


@pytest.mark.parametrize("policy", [
    Policy(),
    Policy(close_timeout=4.0, backoff_initial=0.02, backoff_factor=3.0, backoff_max=0.9),
], ids=["defaults", "fast-growth"])
def test_a_rollback_that_cannot_read_the_position_polls_with_growing_back_off(
        policy: Policy) -> None:
    venue = SimConfig(prices={SYMBOL: PRICE}, stop_rejected=True)
    r = run(venue, policy, ack=AckStyle.FULL, transient={"fetch_positions"})
    assert r.attempt.state is State.ORPHANED
    check_bounded(r, policy)
    assert not [c for c in r.venue.calls if c.kind == "close"], "closed without a view"
    waits = waits_in(r, State.ROLLING_BACK)
    check_growing(waits, policy)
    reads = [c for c in r.venue.calls if c.kind == "fetch_positions"
             and (p := r.phase_at(c.started)) and p[0] is State.ROLLING_BACK]
    assert len(reads) <= len(waits) + 1


@pytest.mark.parametrize("fault", ["hang", "transient"])
def test_cancelling_a_stop_the_venue_made_wrong_is_bounded_by_the_close_deadline(
        fault: str) -> None:
    """A stop the venue made without reduce-only must not rest (it could open
    a position). The rollback cancels it first, retrying with growing
    back-off; every cancel names the stop by both its ids, lasts at most one
    request and ends by the close deadline, and no wait outlives it."""
    policy = Policy(close_timeout=2.0, request_timeout=5.0, backoff_initial=0.05,
                    backoff_factor=2.0, backoff_max=0.4)
    venue = SimConfig(prices={SYMBOL: PRICE}, stop_drops_reduce_only=True)
    r = run(venue, policy, ack=AckStyle.FULL, idle=100.0, **{fault: {"cancel"}})
    assert r.attempt.state is State.ORPHANED
    check_bounded(r, policy)
    stop = r.attempt.facts.stop
    assert stop is not None and stop.order_id is not None
    intent = r.attempt.facts.stop_intent
    stop_cid = stop.client_id or (intent.client_id if intent is not None else None)
    assert stop_cid is not None
    cancels = [c for c in r.venue.calls if c.kind == "cancel"]
    assert cancels, "the wrong stop was never cancelled"
    for c in cancels:
        assert c.args["order_id"] == stop.order_id and c.args["client_id"] == stop_cid, c
        assert c.args["symbol"] == SYMBOL, c  # venues look the order up within it
    if fault == "transient":
        # Each failure answers at once: the gaps between tries are the back-off.
        gaps = [b.started - a.started for a, b in itertools.pairwise(cancels)]
        check_growing(gaps, policy)


@pytest.mark.parametrize("close_timeout", [0.1, 0.3])
def test_a_cancel_started_with_almost_no_time_left_is_still_given_a_tenth_of_a_request(
        close_timeout: float) -> None:
    """The close window is shorter than a tenth of the request timeout: the
    cancel of the stop the venue made wrong is not cut at the deadline but
    given the floor every call gets (a request cancelled at once teaches
    nothing), and not tried again once the deadline has passed."""
    policy = Policy(close_timeout=close_timeout, request_timeout=5.0)
    venue = SimConfig(prices={SYMBOL: PRICE}, stop_drops_reduce_only=True)
    r = run(venue, policy, ack=AckStyle.FULL, hang={"cancel"})
    check_bounded(r, policy)
    deadline = r.attempt.facts.close_deadline
    assert deadline is not None
    in_rollback = [c for c in r.venue.calls if c.kind == "cancel" and c.started <= deadline]
    assert len(in_rollback) == 1, in_rollback
    (cancel,) = in_rollback
    assert cancel.ended is not None and deadline - cancel.started < policy.request_timeout / 10
    assert cancel.ended - cancel.started == pytest.approx(policy.request_timeout / 10)


@pytest.mark.parametrize("fault", ["hang", "transient"])
def test_the_cancel_of_a_leftover_stop_after_a_verified_close_is_bounded(fault: str) -> None:
    """After CLOSE_VERIFIED the attempt cancels a stop it may have left
    (best effort: the monitor cancels what this misses). A venue that never
    answers that cancel must not hold the attempt past one request, nor past
    its bound."""
    policy = Policy(request_timeout=2.0)
    venue = SimConfig(prices={SYMBOL: PRICE}, stop_rejected=True)
    hang, transient = ({"cancel"}, None) if fault == "hang" else (None, {"cancel"})
    r = run(venue, policy, ack=AckStyle.FULL, hang=hang, transient=transient)
    assert r.attempt.state is State.CLOSE_VERIFIED
    check_bounded(r, policy)
    cancels = [c for c in r.venue.calls if c.kind == "cancel"]
    assert cancels, "the leftover stop was never cancelled"
    stop_cid = client_ids(r.attempt.attempt_id)[1]
    assert all(c.args["symbol"] == SYMBOL and c.args["client_id"] == stop_cid for c in cancels)
    assert r.ended - cancels[-1].started <= policy.request_timeout + EPS


def test_the_cancel_of_an_attached_stop_not_shown_is_bounded_by_the_protect_deadline() -> None:
    """The stop attached to the entry is not shown by its deadline: it is
    cancelled (it may still arm) before a separate stop is placed. A venue
    that never answers that cancel holds the attempt for one protect window
    at most; then no second stop is placed beside one that may rest."""
    policy = Policy(protect_timeout=1.0, request_timeout=5.0)
    venue = SimConfig(prices={SYMBOL: PRICE}, attached_stops=True, attached_stop_delay=50.0)
    r = run(venue, policy, ack=AckStyle.FULL, hang={"cancel"})
    check_bounded(r, policy)
    cancels = [c for c in r.venue.calls if c.kind == "cancel"]
    assert cancels and cancels[0].ended is not None
    assert cancels[0].ended - cancels[0].started <= policy.protect_timeout + EPS
    assert not [c for c in r.venue.calls if c.kind == "place_stop"], \
        "a second stop was placed beside one whose cancel never answered"
    assert r.attempt.state is not State.PROTECTED
    error = r.attempt.facts.stop_error or ""
    assert "no second stop is placed beside it" in error
    assert f"no answer within {policy.protect_timeout:g}s" in error, error
