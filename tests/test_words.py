"""The words of a history: what the exchange reported, and nothing it did
not. A field a reply left out reads ``?`` (rule 1: not yet known, never a
default); a missing snapshot says so; numbers read as the exchange gave
them. The helpers are pure, so every case is one line."""

from __future__ import annotations

import pytest

from adapters.port import OrderSnapshot, OrderStatus, PositionSnapshot, Side, Source, StopSnapshot
from fsm.evidence import CloseIntent, Facts
from fsm.step import (
    evolve,
    fall_back_reason,
    flat_source,
    flat_words,
    order_words,
    pos_words,
    side_of,
    stop_words,
)
from tests.helpers import SYMBOL, request


def stop(**kw: object) -> StopSnapshot:
    base: dict[str, object] = dict(symbol=SYMBOL, order_id="s1", client_id="c", side=Side.SELL,
                                   amount=43.0, trigger_price=0.129, reduce_only=True,
                                   status=OrderStatus.OPEN)
    base.update(kw)
    return StopSnapshot(**base)  # type: ignore[arg-type]


def facts(**kw: object) -> Facts:
    return evolve(Facts(request=request(), now=1.0), **kw)


@pytest.mark.parametrize(("snap", "words"), [
    (None, "none"),
    (stop(), "id=s1 sell 43 @ 0.129 reduce_only=True"),
    (stop(reduce_only=False, side=Side.BUY, amount=86.0), "id=s1 buy 86 @ 0.129 reduce_only=False"),
    (stop(order_id=None, side=None, amount=None, reduce_only=None),
     "id=? ? ? @ 0.129 reduce_only=?"),
    (stop(amount=0.5), "id=s1 sell 0.5 @ 0.129 reduce_only=True"),
])
def test_a_stop_in_words(snap: StopSnapshot | None, words: str) -> None:
    assert stop_words(snap) == words


@pytest.mark.parametrize(("snap", "words"), [
    (None, "nothing"),
    (OrderSnapshot(symbol=SYMBOL, order_id="1", client_id="c", side=Side.BUY, amount=43.0,
                   filled=21.5, status=OrderStatus.CLOSED),
     "id=1 side=buy status=closed filled=21.5/43"),
    (OrderSnapshot(symbol=SYMBOL, order_id=None, client_id="c"), "id=? side=? status=? filled=?/?"),
])
def test_an_order_in_words(snap: OrderSnapshot | None, words: str) -> None:
    assert order_words(snap) == words


@pytest.mark.parametrize(("snap", "words"), [
    (None, "no position view"),
    (PositionSnapshot(symbol=SYMBOL, side=None, size=0.0, source=Source.REST, received_at=0.0),
     "flat (rest)"),
    (PositionSnapshot(symbol=SYMBOL, side=Side.BUY.opens, size=0.5, source=Source.STREAM,
                      received_at=0.0), "long 0.5 (stream)"),
])
def test_a_position_in_words(snap: PositionSnapshot | None, words: str) -> None:
    assert pos_words(snap) == words


def test_the_side_the_exchange_reports_is_the_entry_s_else_the_ack_s_else_none() -> None:
    bare = OrderSnapshot(symbol=SYMBOL, order_id="1", client_id="c")
    sold = OrderSnapshot(symbol=SYMBOL, order_id="1", client_id="c", side=Side.SELL)
    bought = OrderSnapshot(symbol=SYMBOL, order_id="1", client_id="c", side=Side.BUY)
    assert side_of(facts()) == "none"
    assert side_of(facts(ack=bare, entry=bare)) == "none"
    assert side_of(facts(ack=sold, entry=bare)) == "sell"
    assert side_of(facts(ack=sold, entry=bought)) == "buy"


@pytest.mark.parametrize(("snap", "words"), [
    (None, "no attached stop shown by the deadline"),
    (stop(status=OrderStatus.REJECTED), "attached stop rejected: id=s1 sell 43 @ 0.129 "
                                        "reduce_only=True"),
    (stop(status=None), "attached stop ?: id=s1 sell 43 @ 0.129 reduce_only=True"),
    (stop(amount=86.0), "attached stop is not the one asked for: id=s1 sell 86 @ 0.129 "
                        "reduce_only=True"),
])
def test_why_an_attached_stop_is_not_trusted(snap: StopSnapshot | None, words: str) -> None:
    assert fall_back_reason(facts(stop=snap)) == words


CLOSE = CloseIntent(side=Side.SELL, amount=43.0, client_id="cc")
FILLED = OrderSnapshot(symbol=SYMBOL, order_id="c1", client_id="cc", side=Side.SELL,
                       amount=43.0, filled=43.0, status=OrderStatus.CLOSED)
STALE = PositionSnapshot(symbol=SYMBOL, side=Side.BUY.opens, size=43.0, source=Source.REST,
                         received_at=0.0)
FLAT = PositionSnapshot(symbol=SYMBOL, side=None, size=0.0, source=Source.STREAM,
                        received_at=0.0)


def test_flat_is_proven_by_the_close_s_own_fill_and_a_stale_view_is_called_stale() -> None:
    f = facts(close_intent=CLOSE, close_order=FILLED, position=STALE)
    assert flat_source(f) is Source.CLOSE
    assert flat_words(f) == ("close id=c1 side=sell status=closed filled=43/43; latest position "
                             "view long 43 (rest) predates the close")


def test_flat_by_a_view_names_the_view() -> None:
    f = facts(position=FLAT)
    assert flat_source(f) is Source.STREAM
    assert flat_words(f) == "position flat (stream)"
    g = facts(close_intent=CLOSE, close_order=FILLED, position=FLAT)
    assert flat_source(g) is Source.CLOSE
    assert flat_words(g) == ("close id=c1 side=sell status=closed filled=43/43; "
                             "position flat (stream)")


def test_without_a_view_or_a_filled_close_the_clock_is_all_there_is() -> None:
    f = facts(close_error="close refused: no")
    assert flat_source(f) is Source.CLOCK
    assert flat_words(f) == "close refused: no; position no position view"
    unfilled = OrderSnapshot(symbol=SYMBOL, order_id="c1", client_id="cc", side=Side.SELL,
                             amount=43.0, filled=None, status=OrderStatus.CLOSED)
    g = facts(close_intent=CLOSE, close_order=unfilled, position=STALE)
    assert flat_source(g) is Source.REST
    assert "predates" not in flat_words(g)


def test_quantities_read_as_given_whether_float_or_int() -> None:
    """An adapter may hand over whole numbers as ints: they read the same."""
    o = OrderSnapshot(symbol=SYMBOL, order_id="1", client_id="c", side=Side.BUY, amount=43,
                      filled=43, status=OrderStatus.CLOSED)
    assert order_words(o) == "id=1 side=buy status=closed filled=43/43"
