"""The conformance suite: every case a pytest test method on
:class:`AdapterConformance`. Subclass it, name the subclass ``Test...``,
implement :meth:`AdapterConformance.make_venue`, and pytest runs every case
against your adapter (see ``adapters/README.md``).

Each case builds a fresh venue, runs on its own event loop (virtual time by
default, so the windows the kit waits out cost nothing) and closes the venue.
A case whose venue knob is :class:`~adapters.conformance.venue.Unsupported`
is skipped with the reason; a broken promise fails with its name and the
venue's.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest

from adapters.conformance.promises import Promise, PromiseBroken, broken
from adapters.conformance.venue import ErrorKind, Failure, Unsupported, Venue
from adapters.port import (
    AmbiguousError,
    DuplicateClientId,
    ExchangeError,
    OrderNotFound,
    OrderRejected,
    OrderSnapshot,
    OrderStatus,
    PositionSide,
    PositionSnapshot,
    Side,
    StopSnapshot,
    TransientError,
    UnknownSymbol,
    qty_eq,
)
from adapters.virtual_time import run_virtual

__all__ = ["AdapterConformance"]

P = Promise
#: Slack added to every window the kit waits out (seconds): more than a
#: request's one-way trip on any venue the kit drives.
_MARGIN = 0.5
#: Order fields that must be ``None`` when the venue did not report them.
_ORDER_FIELDS = ("side", "amount", "filled", "status", "average", "timestamp", "reduce_only")


class AdapterConformance:
    """The kit. Subclass as ``class TestMyVenue(AdapterConformance)`` and
    implement :meth:`make_venue`; pytest collects the inherited cases.

    ``virtual_time``: run each case on a virtual-time loop (the default;
    right for fakes and the simulator). Set ``False`` for a venue that does
    real I/O (an emulator on a socket); the kit then waits real seconds.
    ``case_deadline``: loop-clock seconds after which a case fails as hung.
    """

    virtual_time: ClassVar[bool] = True
    case_deadline: ClassVar[float] = 120.0

    async def make_venue(self) -> Venue:
        """Build a fresh adapter and the venue behind it, for one case."""
        raise NotImplementedError("subclass AdapterConformance and implement make_venue()")

    # -- running a case ----------------------------------------------------------------

    def _run(self, case: Callable[[Venue], Awaitable[None]], promise: Promise) -> None:
        """Run ``case`` on a fresh venue. Anything it raises other than a
        broken promise or a skip is reported as ``promise`` broken."""
        skipped: list[str] = []

        async def main() -> None:
            venue = await self.make_venue()
            try:
                async with asyncio.timeout(self.case_deadline):
                    await case(venue)
            except Unsupported as exc:
                skipped.append(f"not checked on venue {venue.name!r}: {exc}")
            except (PromiseBroken, pytest.skip.Exception):
                raise
            except Exception as exc:
                raise PromiseBroken(promise, venue.name,
                                    f"the case could not complete: {_said(exc)}") from exc
            finally:
                if venue.close is not None:
                    await venue.close()

        if self.virtual_time:
            run_virtual(main())
        else:
            asyncio.run(main())
        if skipped:
            pytest.skip(skipped[0])

    # -- unknown is None ---------------------------------------------------------------

    def test_unknown_fields_are_none(self) -> None:
        """unknown-is-none: replies that carry ids only read back as None."""

        async def case(v: Venue) -> None:
            stripped = v.driver.ids_only_replies()
            cid = _cid("bare")
            ack = await v.adapter.create_order(symbol=v.symbol, side=Side.BUY, amount=v.amount,
                                               client_id=cid, reduce_only=False)
            if "create" in stripped:
                _all_none(v, ack, "the create reply")
            if "fetch_order" in stripped:
                got = await _lookup(v, cid)
                _all_none(v, got, "the look-up by client id")

        self._run(case, P.UNKNOWN_IS_NONE)

    def test_reported_fields_are_the_venues(self) -> None:
        """reported-as-is: a filled order reads back as the venue holds it."""

        async def case(v: Venue) -> None:
            cid = _cid("full")
            await v.adapter.create_order(symbol=v.symbol, side=Side.BUY, amount=v.amount,
                                         client_id=cid, reduce_only=False)
            got = await _lookup(v, cid)
            _expect(v, P.REPORTED_AS_IS, got.client_id == cid, f"client id {got.client_id!r}")
            _expect(v, P.REPORTED_AS_IS, got.symbol == v.symbol,
                    f"symbol {got.symbol!r}, want the canonical {v.symbol!r}")
            _expect(v, P.REPORTED_AS_IS, got.side is Side.BUY, f"side {got.side}, sent BUY")
            _expect(v, P.REPORTED_AS_IS, got.status is OrderStatus.CLOSED,
                    f"status {got.status} of a filled order")
            _expect(v, P.REPORTED_AS_IS,
                    _same(got.amount, v.amount) and _same(got.filled, v.amount),
                    f"amount {got.amount} filled {got.filled}, want {v.amount} both")
            _expect(v, P.REPORTED_AS_IS, got.reduce_only is not True,
                    "an entry reads back reduce-only")

        self._run(case, P.REPORTED_AS_IS)

    # -- error classes -----------------------------------------------------------------

    def test_not_found_is_a_miss(self) -> None:
        """not-found-is-a-miss: a client id never sent is not found."""

        async def case(v: Venue) -> None:
            await _expect_miss(v, _cid("never"), P.NOT_FOUND_IS_A_MISS)

        self._run(case, P.NOT_FOUND_IS_A_MISS)

    def test_refused_order_is_definitive(self) -> None:
        """refused-is-definitive: a refused entry raises OrderRejected."""

        async def case(v: Venue) -> None:
            v.driver.next_order("reject")
            cid = _cid("refused")
            exc = await _raised(v.adapter.create_order(
                symbol=v.symbol, side=Side.BUY, amount=v.amount, client_id=cid, reduce_only=False))
            _expect(v, P.REFUSED_IS_DEFINITIVE, isinstance(exc, OrderRejected),
                    f"the venue refused the order; the adapter said {_said(exc)}")
            _expect(v, P.REFUSED_IS_DEFINITIVE, v.driver.received(cid) is None,
                    "the venue holds the order it refused (driver fault)")
            await _expect_flat(v, P.REFUSED_IS_DEFINITIVE)

        self._run(case, P.REFUSED_IS_DEFINITIVE)

    @pytest.mark.parametrize("failure", ["timeout_before", "timeout_after", "unavailable"])
    def test_write_of_unknown_fate_is_ambiguous(self, failure: Failure) -> None:
        """ambiguous-write: a create that timed out, lost its reply or met a
        5xx may exist; the adapter must say so."""

        async def case(v: Venue) -> None:
            v.driver.fail_next("create", failure)
            exc = await _raised(v.adapter.create_order(
                symbol=v.symbol, side=Side.BUY, amount=v.amount, client_id=_cid("amb"),
                reduce_only=False))
            _expect(v, P.AMBIGUOUS_WRITE, isinstance(exc, AmbiguousError),
                    f"create met {failure}; the adapter said {_said(exc)}")

        self._run(case, P.AMBIGUOUS_WRITE)

    @pytest.mark.parametrize("failure",
                             ["timeout_before", "timeout_after", "unavailable", "rate_limit"])
    def test_failed_read_is_not_a_miss(self, failure: Failure) -> None:
        """failed-read-is-not-a-miss: a look-up that failed says nothing
        about the order, even one the venue does not hold (rule 10)."""

        async def case(v: Venue) -> None:
            cid = _cid("read")
            v.driver.fail_next("fetch_order", failure)
            exc = await _raised(v.adapter.fetch_order(symbol=v.symbol, order_id=None,
                                                      client_id=cid))
            _expect(v, P.FAILED_READ_IS_NOT_A_MISS,
                    isinstance(exc, TransientError) and not isinstance(exc, OrderNotFound),
                    f"look-up met {failure}; the adapter said {_said(exc)}")

        self._run(case, P.FAILED_READ_IS_NOT_A_MISS)

    def test_rate_limited_says_retry(self) -> None:
        """rate-limited-says-retry: on a write and on a read."""

        async def case(v: Venue) -> None:
            v.driver.fail_next("create", "rate_limit")
            exc = await _raised(v.adapter.create_order(
                symbol=v.symbol, side=Side.BUY, amount=v.amount, client_id=_cid("rl"),
                reduce_only=False))
            _expect_rate_limited(v, exc, "create")
            v.driver.fail_next("fetch_order", "rate_limit")
            exc = await _raised(v.adapter.fetch_order(symbol=v.symbol, order_id=None,
                                                      client_id=_cid("rlread")))
            _expect_rate_limited(v, exc, "look-up")

        self._run(case, P.RATE_LIMITED)

    def test_venue_error_codes_map_right(self) -> None:
        """venue-codes-map-right: every code in ``Venue.error_codes``."""

        async def case(v: Venue) -> None:
            if not v.error_codes:
                raise Unsupported("the profile lists no venue error codes")
            wrong: list[str] = []
            for code, kind in sorted(v.error_codes.items()):
                wrong += await _code_checks(v, code, kind)
            if wrong:
                broken(P.VENUE_CODES, v.name, "; ".join(wrong))

        self._run(case, P.VENUE_CODES)

    # -- look-up by client id ------------------------------------------------------------

    def test_lookup_finds_closed_order(self) -> None:
        """lookup-finds-open-and-closed: a filled order, by client id."""

        async def case(v: Venue) -> None:
            cid = _cid("closed")
            await v.adapter.create_order(symbol=v.symbol, side=Side.BUY, amount=v.amount,
                                         client_id=cid, reduce_only=False)
            got = await _lookup(v, cid, promise=P.LOOKUP_OPEN_AND_CLOSED)
            _expect(v, P.LOOKUP_OPEN_AND_CLOSED, got.client_id == cid and got.terminal,
                    f"a filled order reads back as {got}")
            if got.order_id is not None:  # and by the exchange's id
                by_id = await v.adapter.fetch_order(symbol=v.symbol, order_id=got.order_id,
                                                    client_id=None)
                _expect(v, P.LOOKUP_OPEN_AND_CLOSED, by_id.order_id == got.order_id
                        and by_id.client_id in (cid, None) and by_id.terminal,
                        f"look-up by id {got.order_id!r} answers {by_id}")

        self._run(case, P.LOOKUP_OPEN_AND_CLOSED)

    def test_lookup_finds_resting_order(self) -> None:
        """lookup-finds-open-and-closed: an accepted, unfilled order."""

        async def case(v: Venue) -> None:
            v.driver.next_order("rest")
            cid = _cid("open")
            await v.adapter.create_order(symbol=v.symbol, side=Side.BUY, amount=v.amount,
                                         client_id=cid, reduce_only=False)
            got = await _lookup(v, cid, promise=P.LOOKUP_OPEN_AND_CLOSED)
            _expect(v, P.LOOKUP_OPEN_AND_CLOSED,
                    got.client_id == cid and got.status in (OrderStatus.OPEN, None),
                    f"a resting order reads back as {got}")

        self._run(case, P.LOOKUP_OPEN_AND_CLOSED)

    def test_lookup_after_visibility_window_finds_the_order(self) -> None:
        """lookup-authoritative-after-window: one look-up sent after the
        declared window finds an order the venue hid until then."""

        async def case(v: Venue) -> None:
            loop = asyncio.get_running_loop()
            v.driver.hide_orders(max(v.adapter.lookup_lag, 0.5))
            lag = v.adapter.lookup_lag
            sent = loop.time()
            cid = _cid("hidden")
            await v.adapter.create_order(symbol=v.symbol, side=Side.BUY, amount=v.amount,
                                         client_id=cid, reduce_only=False)
            early = await _raised(v.adapter.fetch_order(symbol=v.symbol, order_id=None,
                                                        client_id=cid))
            _expect(v, P.LOOKUP_AUTHORITATIVE, early is None or isinstance(early, OrderNotFound),
                    f"within the visibility window a look-up answers the order or a miss; "
                    f"it said {_said(early)}")
            await _sleep_until(sent + lag + _MARGIN)
            exc = await _raised(v.adapter.fetch_order(symbol=v.symbol, order_id=None,
                                                      client_id=cid))
            _expect(v, P.LOOKUP_AUTHORITATIVE, exc is None,
                    f"{lag:g}s (the declared lookup_lag) after the create, the look-up said "
                    f"{_said(exc)}")

        self._run(case, P.LOOKUP_AUTHORITATIVE)

    def test_lost_reply_order_is_found(self) -> None:
        """lookup-authoritative-after-window: a create whose reply was lost
        is found by client id once the window has passed."""

        async def case(v: Venue) -> None:
            loop = asyncio.get_running_loop()
            v.driver.fail_next("create", "timeout_after")
            cid = _cid("lostreply")
            sent = loop.time()
            await _raised(v.adapter.create_order(symbol=v.symbol, side=Side.BUY, amount=v.amount,
                                                 client_id=cid, reduce_only=False))
            await _sleep_until(sent + v.adapter.lookup_lag + _MARGIN)
            exc = await _raised(v.adapter.fetch_order(symbol=v.symbol, order_id=None,
                                                      client_id=cid))
            _expect(v, P.LOOKUP_AUTHORITATIVE, exc is None,
                    f"the venue executed {cid} and lost the reply; the look-up after the "
                    f"window said {_said(exc)}")

        self._run(case, P.LOOKUP_AUTHORITATIVE)

    def test_lost_request_is_proven_absent(self) -> None:
        """lookup-authoritative-after-window: a create lost on the way is
        missed once the receive window and the visibility lag have passed."""

        async def case(v: Venue) -> None:
            loop = asyncio.get_running_loop()
            v.driver.fail_next("create", "timeout_before")
            cid = _cid("lostreq")
            sent = loop.time()
            await _raised(v.adapter.create_order(symbol=v.symbol, side=Side.BUY, amount=v.amount,
                                                 client_id=cid, reduce_only=False))
            window = v.adapter.receive_window or 0.0
            await _sleep_until(sent + window + v.adapter.lookup_lag + _MARGIN)
            await _expect_miss(v, cid, P.LOOKUP_AUTHORITATIVE)

        self._run(case, P.LOOKUP_AUTHORITATIVE)

    # -- reduce-only -------------------------------------------------------------------

    def test_close_is_sent_reduce_only(self) -> None:
        """reduce-only-sent: a close reaches the venue reduce-only."""

        async def case(v: Venue) -> None:
            v.driver.set_position(v.symbol, v.amount)
            cid = _cid("close")
            await v.adapter.create_order(symbol=v.symbol, side=Side.SELL, amount=v.amount,
                                         client_id=cid, reduce_only=True)
            got = v.driver.received(cid)
            _expect(v, P.REDUCE_ONLY_SENT, got is not None and got.reduce_only,
                    f"the venue received the close as {got}")
            await _expect_flat(v, P.REDUCE_ONLY_SENT)

        self._run(case, P.REDUCE_ONLY_SENT)

    @pytest.mark.parametrize("held", [0.0, 1.0])
    def test_reduce_only_never_increases(self, held: float) -> None:
        """reduce-only-never-increases: on a flat account and on a long one,
        a reduce-only buy is refused."""

        async def case(v: Venue) -> None:
            if held:
                v.driver.set_position(v.symbol, held * v.amount)
            exc = await _raised(v.adapter.create_order(
                symbol=v.symbol, side=Side.BUY, amount=v.amount, client_id=_cid("ro"),
                reduce_only=True))
            where = "a long position" if held else "a flat account"
            _expect(v, P.REDUCE_ONLY_NEVER_INCREASES, isinstance(exc, OrderRejected),
                    f"a reduce-only buy on {where}: the adapter said {_said(exc)}")
            views = await _positions(v)
            size = views[0].signed() if views else 0.0
            _expect(v, P.REDUCE_ONLY_NEVER_INCREASES, _same(size, held * v.amount),
                    f"the position moved to {size:g}")

        self._run(case, P.REDUCE_ONLY_NEVER_INCREASES)

    # -- stops -------------------------------------------------------------------------

    @pytest.mark.parametrize("held", ["long", "short"])
    def test_stop_reads_back_as_placed(self, held: str) -> None:
        """stop-reads-back-as-placed and stop-listed-by-client-id."""

        async def case(v: Venue) -> None:
            long = held == "long"
            v.driver.set_position(v.symbol, v.amount if long else -v.amount)
            side = Side.SELL if long else Side.BUY
            trigger = await _on_grid(v, v.price * (0.9 if long else 1.1))
            cid = _cid("stop")
            reply = await v.adapter.place_stop(symbol=v.symbol, side=side, amount=v.amount,
                                               trigger_price=trigger, client_id=cid)
            _stop_matches(v, reply, side, v.amount, trigger, "the placement reply",
                          reply_may_omit=True)
            got = v.driver.received(cid)
            _expect(v, P.REDUCE_ONLY_SENT, got is not None and got.reduce_only,
                    f"the venue received the stop as {got}")
            listed = await _listed_stop(v, cid, v.symbol)
            _stop_matches(v, listed, side, v.amount, trigger, "the stop listing",
                          reply_may_omit=False)
            await _listed_stop_everywhere(v, cid)
            await v.adapter.cancel_order(symbol=v.symbol, order_id=None, client_id=cid)
            left = [s for s in await v.adapter.fetch_stops(v.symbol) if s.client_id == cid]
            _expect(v, P.STOP_LISTED, not left, f"a stop cancelled by client id is listed: {left}")
            again = await _raised(v.adapter.cancel_order(symbol=v.symbol, order_id=None,
                                                         client_id=cid))
            _expect(v, P.STOP_LISTED, isinstance(again, OrderNotFound),
                    f"cancelling a stop already cancelled: the adapter said {_said(again)}")

        self._run(case, P.STOP_AS_PLACED)

    def test_stop_on_the_wrong_side_is_refused(self) -> None:
        """stop-reads-back-as-placed: a sell stop above the market would fire
        at once; it is refused, not placed."""

        async def case(v: Venue) -> None:
            v.driver.set_position(v.symbol, v.amount)
            trigger = await _on_grid(v, v.price * 0.9)
            v.driver.set_price(v.symbol, await _on_grid(v, v.price * 0.8))
            exc = await _raised(v.adapter.place_stop(symbol=v.symbol, side=Side.SELL,
                                                     amount=v.amount, trigger_price=trigger,
                                                     client_id=_cid("wrongside")))
            _expect(v, P.STOP_AS_PLACED, isinstance(exc, OrderRejected),
                    f"a sell stop at {trigger:g} above the market: the adapter said {_said(exc)}")

        self._run(case, P.STOP_AS_PLACED)

    # -- positions and symbols -----------------------------------------------------------

    def test_positions_side_and_size(self) -> None:
        """positions-side-and-size: long, short, flat."""

        async def case(v: Venue) -> None:
            for signed in (v.amount, -2 * v.amount, 0.0):
                v.driver.set_position(v.symbol, signed)
                for views in (await _positions(v), await _positions(v, everything=True)):
                    _position_matches(v, views, signed)

        self._run(case, P.POSITIONS)

    def test_symbol_is_canonical(self) -> None:
        """symbol-canonical: both spellings, and an unknown one."""

        async def case(v: Venue) -> None:
            for spelling in filter(None, (v.symbol, v.native_symbol)):
                market = await v.adapter.market(spelling)
                _expect(v, P.SYMBOL_CANONICAL, market.symbol == v.symbol,
                        f"market({spelling!r}) reports {market.symbol!r}, want {v.symbol!r}")
            exc = await _raised(v.adapter.market("NOSUCHCOIN/USDT:USDT"))
            _expect(v, P.SYMBOL_CANONICAL, isinstance(exc, UnknownSymbol),
                    f"an unknown symbol: the adapter said {_said(exc)}")

        self._run(case, P.SYMBOL_CANONICAL)

    def test_hedge_mode_is_reported_or_refused(self) -> None:
        """hedge-mode-reported-or-refused: both legs listed, or an error."""

        async def case(v: Venue) -> None:
            v.driver.hedge_legs(v.symbol, long=2 * v.amount, short=v.amount)
            exc = await _raised(v.adapter.fetch_positions([v.symbol]))
            if isinstance(exc, ExchangeError):
                return  # refused: the engine cannot mistake it for one-way
            legs_of: Any = getattr(v.adapter, "fetch_position_legs", None)
            _expect(v, P.HEDGE_MODE, legs_of is not None,
                    "fetch_positions answered a hedge-mode account and the adapter lists no legs")
            legs = {(p.side, p.size) for p in await legs_of([v.symbol]) if p.symbol == v.symbol}
            want = {(PositionSide.LONG, 2 * v.amount), (PositionSide.SHORT, v.amount)}
            _expect(v, P.HEDGE_MODE, legs == want, f"legs {legs}, want {want}")

        self._run(case, P.HEDGE_MODE)

    # -- the stream ----------------------------------------------------------------------

    def test_stream_delivers_in_order(self) -> None:
        """stream-in-order: open then close; the cache ends flat, its views
        never go back in exchange time."""

        async def case(v: Venue) -> None:
            cache = v.adapter.position_cache
            if cache is None:
                raise Unsupported("the adapter offers no position stream")
            seen: list[PositionSnapshot] = []
            await v.adapter.create_order(symbol=v.symbol, side=Side.BUY, amount=v.amount,
                                         client_id=_cid("sopen"), reduce_only=False)
            seen += await _stream_until(v, v.amount)
            await v.adapter.create_order(symbol=v.symbol, side=Side.SELL, amount=v.amount,
                                         client_id=_cid("sclose"), reduce_only=True)
            seen += await _stream_until(v, 0.0)
            stamps = [s.as_of for s in seen if s.as_of is not None]
            _expect(v, P.STREAM_IN_ORDER, stamps == sorted(stamps),
                    f"streamed views go back in exchange time: {stamps}")

        self._run(case, P.STREAM_IN_ORDER)

    def test_stale_push_never_replaces_a_newer_view(self) -> None:
        """stale-push-never-wins: a push older than the view held is dropped."""

        async def case(v: Venue) -> None:
            cache = v.adapter.position_cache
            if cache is None:
                raise Unsupported("the adapter offers no position stream")
            now = asyncio.get_running_loop().time()
            v.driver.push_position(v.symbol, 2 * v.amount, at=now)
            await _stream_until(v, 2 * v.amount)
            before = cache.version(v.symbol)
            v.driver.push_position(v.symbol, v.amount, at=now - 1.0)  # stale
            v.driver.push_position(v.symbol, 3 * v.amount, at=now + 1.0)  # newer
            await _stream_until(v, 3 * v.amount)
            _expect(v, P.STALE_PUSH, cache.version(v.symbol) == before + 1,
                    "a push 1s older than the view held replaced it before the next one came")

        self._run(case, P.STALE_PUSH)

    # -- declared capabilities -----------------------------------------------------------

    def test_receive_window_is_enforced(self) -> None:
        """receive-window-true: a create delayed past the declared window
        never executes."""

        async def case(v: Venue) -> None:
            window = v.adapter.receive_window
            if window is None:
                raise Unsupported("the adapter declares no receive window")
            loop = asyncio.get_running_loop()
            cid = _cid("late")
            v.driver.delay_next("create", window + 1.0)
            sent = loop.time()
            exc = await _raised(v.adapter.create_order(
                symbol=v.symbol, side=Side.BUY, amount=v.amount, client_id=cid,
                reduce_only=False))
            _expect(v, P.AMBIGUOUS_WRITE, isinstance(exc, AmbiguousError),
                    f"a create that timed out in transit: the adapter said {_said(exc)}")
            await _sleep_until(sent + window + 1.0 + v.adapter.lookup_lag + _MARGIN)
            _expect(v, P.RECEIVE_WINDOW, v.driver.received(cid) is None,
                    f"a create that reached the venue {window + 1.0:g}s after it was sent "
                    f"executed; the adapter declares a {window:g}s window")
            await _expect_miss(v, cid, P.RECEIVE_WINDOW)
            await _expect_flat(v, P.RECEIVE_WINDOW)

        self._run(case, P.RECEIVE_WINDOW)

    def test_attached_stop_is_armed(self) -> None:
        """attached-stop-true: only for adapters that declare the capability."""

        async def case(v: Venue) -> None:
            if getattr(v.adapter, "attached_stops", False) is not True:
                raise Unsupported("the adapter declares no attached-stop capability")
            adapter: Any = v.adapter
            trigger = await _on_grid(v, v.price * 0.9)
            cid, stop_cid = _cid("att"), _cid("attsl")
            await adapter.create_order_with_stop(symbol=v.symbol, side=Side.BUY, amount=v.amount,
                                                 client_id=cid, stop_price=trigger,
                                                 stop_client_id=stop_cid)
            entry = await _lookup(v, cid, promise=P.ATTACHED_STOP)
            stop = await _poll(lambda: adapter.fetch_attached_stop(
                symbol=v.symbol, order_id=entry.order_id, client_id=cid, stop_client_id=stop_cid),
                v.adapter.lookup_lag + 5.0)
            _expect(v, P.ATTACHED_STOP, stop is not None and stop.status is OrderStatus.OPEN,
                    f"the armed stop reads back as {stop}")
            assert stop is not None
            _stop_matches(v, stop, Side.SELL, entry.filled or v.amount, trigger,
                          "the attached stop", reply_may_omit=False, promise=P.ATTACHED_STOP)

        self._run(case, P.ATTACHED_STOP)


# -- helpers ---------------------------------------------------------------------------

_ids = itertools.count(1)


def _cid(tag: str) -> str:
    """A client id every venue accepts (OKX: letters and digits, <= 32)."""
    return f"kit{tag}{next(_ids)}"


def _said(exc: BaseException | None) -> str:
    return "nothing (it returned)" if exc is None else f"{type(exc).__name__}({exc})"


def _expect(v: Venue, promise: Promise, ok: bool, detail: str) -> None:
    if not ok:
        broken(promise, v.name, detail)


def _same(a: float | None, b: float) -> bool:
    return a is not None and qty_eq(a, b)


async def _raised(call: Awaitable[object]) -> Exception | None:
    """The exception ``call`` raised, or ``None`` if it returned."""
    try:
        await call
    except Exception as exc:  # noqa: BLE001 - the answer under test is the exception itself
        return exc
    return None


async def _sleep_until(when: float) -> None:
    await asyncio.sleep(max(0.0, when - asyncio.get_running_loop().time()))


async def _poll(fetch: Callable[[], Awaitable[Any]], within: float) -> Any:
    """``fetch()`` until it answers something other than a miss, a transient
    failure or ``None``, with a growing back-off, for ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline, pause = loop.time() + within, 0.05
    while True:
        try:
            got = await fetch()
        except (OrderNotFound, TransientError):
            got = None
        if got is not None or loop.time() >= deadline:
            return got
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


async def _lookup(v: Venue, cid: str, promise: Promise = P.REPORTED_AS_IS) -> OrderSnapshot:
    """The order under ``cid``, looked up until the venue's window has passed."""
    got = await _poll(lambda: v.adapter.fetch_order(symbol=v.symbol, order_id=None,
                                                    client_id=cid),
                      v.adapter.lookup_lag + _MARGIN)
    if got is None:
        broken(promise, v.name, f"look-up by client id {cid!r} finds nothing after the "
                                f"declared {v.adapter.lookup_lag:g}s window")
    assert isinstance(got, OrderSnapshot)
    return got


async def _expect_miss(v: Venue, cid: str, promise: Promise) -> None:
    exc = await _raised(v.adapter.fetch_order(symbol=v.symbol, order_id=None, client_id=cid))
    _expect(v, promise, isinstance(exc, OrderNotFound) and not isinstance(exc, TransientError),
            f"look-up of {cid!r}, which the venue never accepted: the adapter said {_said(exc)}")


def _all_none(v: Venue, snap: OrderSnapshot, where: str) -> None:
    made_up = {f: getattr(snap, f) for f in _ORDER_FIELDS if getattr(snap, f) is not None}
    _expect(v, P.UNKNOWN_IS_NONE, not made_up,
            f"the venue reported ids only; {where} says {made_up}")


def _expect_rate_limited(v: Venue, exc: Exception | None, what: str) -> None:
    ok = (isinstance(exc, TransientError) and exc.retry_after is not None
          and not isinstance(exc, (OrderRejected, OrderNotFound)))
    _expect(v, P.RATE_LIMITED, ok, f"a rate-limited {what}: the adapter said {_said(exc)}"
            + ("" if exc is None or not isinstance(exc, TransientError)
               else f", retry_after={exc.retry_after}"))


async def _code_checks(v: Venue, code: str, kind: ErrorKind) -> list[str]:
    """What is wrong with the adapter's answer to venue error ``code``."""
    wrong: list[str] = []
    if kind in ("refused", "ambiguous", "rate_limited", "duplicate_client_id"):
        v.driver.venue_error("create", code)
        exc = await _raised(v.adapter.create_order(
            symbol=v.symbol, side=Side.BUY, amount=v.amount, client_id=_cid("code"),
            reduce_only=False))
        ok = {
            "refused": isinstance(exc, OrderRejected) and not isinstance(exc, DuplicateClientId),
            "ambiguous": isinstance(exc, AmbiguousError),
            "rate_limited": isinstance(exc, TransientError) and exc.retry_after is not None
            and not isinstance(exc, AmbiguousError),
            "duplicate_client_id": isinstance(exc, (AmbiguousError, DuplicateClientId)),
        }[kind]
        if not ok:
            wrong.append(f"{code} ({kind}) on create -> {_said(exc)}")
    if kind in ("not_found", "ambiguous", "rate_limited"):
        v.driver.venue_error("fetch_order", code)
        exc = await _raised(v.adapter.fetch_order(symbol=v.symbol, order_id=None,
                                                  client_id=_cid("codeq")))
        if kind == "not_found":
            ok = isinstance(exc, OrderNotFound)
        else:
            ok = isinstance(exc, TransientError) and not isinstance(exc, OrderNotFound)
        if not ok:
            wrong.append(f"{code} ({kind}) on look-up -> {_said(exc)}")
    return wrong


async def _positions(v: Venue, *, everything: bool = False) -> list[PositionSnapshot]:
    views = await v.adapter.fetch_positions(None if everything else [v.symbol])
    return [p for p in views if p.symbol == v.symbol and not p.flat]


async def _expect_flat(v: Venue, promise: Promise) -> None:
    views = await _positions(v)
    _expect(v, promise, not views, f"the account holds {views}")


def _position_matches(v: Venue, views: list[PositionSnapshot], signed: float) -> None:
    if signed == 0:
        _expect(v, P.POSITIONS, not views, f"a flat account reads back as {views}")
        return
    want = PositionSide.LONG if signed > 0 else PositionSide.SHORT
    _expect(v, P.POSITIONS, len(views) == 1, f"one {want.value} {abs(signed):g} "
            f"under {v.symbol!r} reads back as {views}")
    got = views[0]
    _expect(v, P.POSITIONS, got.side is want and qty_eq(got.size, abs(signed)),
            f"{want.value} {abs(signed):g} reads back as {got.side} {got.size:g}")


async def _on_grid(v: Venue, price: float) -> float:
    step = (await v.adapter.market(v.symbol)).price_step
    if not step:
        return price
    return float(f"{round(price / step) * step:.12g}")


def _stop_matches(v: Venue, stop: StopSnapshot, side: Side, amount: float, trigger: float,
                  where: str, *, reply_may_omit: bool, promise: Promise = P.STOP_AS_PLACED
                  ) -> None:
    """The stop as read back equals what was placed; a placement reply may
    leave a field unreported (``None``), a listing may not."""
    got: dict[str, object] = {"side": stop.side, "amount": stop.amount,
                              "trigger_price": stop.trigger_price,
                              "reduce_only": stop.reduce_only}
    want: dict[str, object] = {"side": side, "amount": amount, "trigger_price": trigger,
                               "reduce_only": True}
    for key, value in got.items():
        if value is None and reply_may_omit:
            continue
        _expect(v, promise, _equal(value, want[key]),
                f"{where}: {key} is {value!r}, placed {want[key]!r}")


def _equal(a: object, b: object) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


async def _listed_stop(v: Venue, cid: str, symbol: str | None) -> StopSnapshot:
    stops = await v.adapter.fetch_stops(symbol)
    mine = [s for s in stops if s.client_id == cid]
    scope = "all symbols" if symbol is None else symbol
    _expect(v, P.STOP_LISTED, len(mine) == 1,
            f"listing stops on {scope} finds {len(mine)} under client id {cid!r} "
            f"(listed: {[s.client_id for s in stops]})")
    return mine[0]


async def _listed_stop_everywhere(v: Venue, cid: str) -> None:
    """A listing of all symbols finds the stop too, or is refused as a
    whole (Binance refuses it through ccxt; callers then list per symbol)."""
    try:
        await v.adapter.fetch_stops(None)
    except ExchangeError:
        return
    await _listed_stop(v, cid, None)


async def _stream_until(v: Venue, signed: float) -> list[PositionSnapshot]:
    """Every streamed view of ``v.symbol`` until one shows ``signed``."""
    cache = v.adapter.position_cache
    assert cache is not None
    seen: list[PositionSnapshot] = []
    version = cache.version(v.symbol)
    latest = cache.latest(v.symbol)
    try:
        async with asyncio.timeout(5.0 + v.adapter.lookup_lag):
            while latest is None or not qty_eq(latest.signed(), signed):
                latest = await cache.wait_newer(v.symbol, version)
                version = cache.version(v.symbol)
                seen.append(latest)
    except TimeoutError:
        broken(P.STREAM_IN_ORDER, v.name, f"the stream never showed {signed:g}; it showed "
                                          f"{[s.signed() for s in seen]}")
    return seen
