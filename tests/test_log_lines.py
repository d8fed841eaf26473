"""The engine's log lines are an operator's record of what happened: each
names its attempt in words and in structured fields, whatever went wrong.

Every line the ``fsm`` logger emits during an attempt starts with
``attempt <id>`` (so one ``grep`` finds an attempt's story) and carries the
``attempt_id`` and the ``state`` it was written in as record attributes (so
a JSON log pipeline can filter on them). Exercised on the simulator with
every failure that has a log line of its own."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from adapters.simulated import AckStyle, Fault, SimConfig, SimulatedExchange
from adapters.virtual_time import run_virtual
from fsm import Attempt, MemoryJournal, PositionOpener, State
from tests.helpers import PRICE, SYMBOL, Breaks, request

CALM = SimConfig(prices={SYMBOL: PRICE})


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Capture]:
    logger = logging.getLogger("fsm")
    handler, level = Capture(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def run(exchange: SimulatedExchange) -> Attempt:
    counter = itertools.count(1)
    opener = PositionOpener(exchange, journal=MemoryJournal(), alerts=lambda a: None,
                            ids=lambda: f"{next(counter):024x}")

    async def go() -> Attempt:
        # Virtual time: an attempt that outlives its own bound fails here,
        # in virtual seconds, instead of spinning until the test times out.
        async with asyncio.timeout(opener.policy.max_duration + 1.0):
            return await opener.open(request())

    return run_virtual(go())


SCENARIOS: dict[str, Any] = {
    "incident": lambda: SimulatedExchange(attrs.evolve(CALM, ack=AckStyle.MINIMAL,
                                                       stop_rejected=True)),
    "close refused": lambda: SimulatedExchange(attrs.evolve(CALM, stop_rejected=True,
                                                            close_rejected=True)),
    "stop rate-limited": lambda: SimulatedExchange(attrs.evolve(
        CALM, faults={"place_stop": (Fault.RATE_LIMIT,)})),
    "create breaks": lambda: Breaks(CALM, entry=True),
    "stop breaks": lambda: Breaks(CALM, stop=True),
    "close breaks": lambda: Breaks(attrs.evolve(CALM, stop_rejected=True), close=True),
    # A cancel that fails: of the stop left after a verified close, of a stop
    # the venue made wrong, of the stop attached to the entry.
    "leftover stop's cancel fails": lambda: SimulatedExchange(attrs.evolve(
        CALM, stop_rejected=True, faults={"cancel": (Fault.UNAVAILABLE,)})),
    "wrong stop's cancel fails": lambda: SimulatedExchange(attrs.evolve(
        CALM, stop_drops_reduce_only=True, faults={"cancel": (Fault.UNAVAILABLE,)})),
    "attached stop's cancel fails": lambda: SimulatedExchange(attrs.evolve(
        CALM, attached_stops=True, attached_stop_delay=50.0,
        faults={"cancel": (Fault.UNAVAILABLE,)})),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_line_names_its_attempt_in_words_and_in_fields(
    name: str, captured: Capture,
) -> None:
    attempt = run(SCENARIOS[name]())
    assert attempt.terminal
    lines = [r for r in captured.records if r.levelno < logging.CRITICAL]
    assert lines, "an attempt with a failure logged nothing"
    states = {s.value for s in State}
    for r in lines:
        msg = r.getMessage()
        assert msg.startswith(f"attempt {attempt.attempt_id}"), msg
        assert getattr(r, "attempt_id", None) == attempt.attempt_id, msg
        assert getattr(r, "state", None) in states, msg


def test_an_adapter_that_breaks_is_logged_with_its_traceback_and_what_it_was_doing(
    captured: Capture,
) -> None:
    """An error no adapter should raise is a bug to be fixed: the line says
    which write it broke and carries the traceback."""
    wanted = {"create breaks": "create_order", "stop breaks": "placing stop",
              "close breaks": "sending close"}
    for name, doing in wanted.items():
        captured.records.clear()
        attempt = run(SCENARIOS[name]())
        broken = [r for r in captured.records if r.exc_info and doing in r.getMessage()]
        assert broken, (name, [r.getMessage() for r in captured.records])
        assert broken[0].levelno == logging.ERROR and broken[0].exc_info is not None
        assert isinstance(broken[0].exc_info[1], KeyError)
        assert broken[0].getMessage().startswith(f"attempt {attempt.attempt_id}: unexpected")


def test_a_refused_close_is_an_error_line_naming_the_venues_reason(captured: Capture) -> None:
    attempt = run(SimulatedExchange(attrs.evolve(CALM, stop_rejected=True,
                                                 close_rejected=True)))
    assert attempt.state is State.ORPHANED
    refused = [r for r in captured.records if "close refused" in r.getMessage()]
    assert refused and refused[0].levelno == logging.ERROR
    assert refused[0].getMessage().startswith(f"attempt {attempt.attempt_id}: reduce-only")
    assert getattr(refused[0], "source", None) == "close"
    assert attempt.facts.close_error and attempt.facts.close_error.startswith("close refused")


def test_an_unexpected_create_failure_still_bounds_the_look_up(captured: Capture) -> None:
    """A create that failed unexpectedly may have placed the order: it is
    looked up by client id, within the verify window the send started,
    never sent again; the attempt ends honestly within its bound."""
    ex = Breaks(CALM, entry=True)
    attempt = run(ex)
    assert attempt.terminal
    assert ex.creates == 1, "the entry was sent twice"
    assert attempt.facts.create_ambiguous
    assert attempt.facts.fetch_deadline is not None
    assert attempt.facts.entry_absent_after is not None


@pytest.mark.parametrize("name", ["leftover stop's cancel fails", "wrong stop's cancel fails",
                                  "attached stop's cancel fails"])
def test_a_cancel_that_fails_is_a_warning_naming_the_stop_and_its_attempt(
    name: str, captured: Capture,
) -> None:
    """Best effort (the monitor cancels what this misses), but never silent:
    the line names the stop, its attempt and the state it was written in."""
    attempt = run(SCENARIOS[name]())
    failed = [r for r in captured.records if r.levelno == logging.WARNING
              and "could not cancel" in r.getMessage()]
    assert failed, [r.getMessage() for r in captured.records]
    for r in failed:
        assert r.getMessage().startswith(f"attempt {attempt.attempt_id}: could not cancel")
        assert getattr(r, "attempt_id", None) == attempt.attempt_id
        assert getattr(r, "state", None) in {s.value for s in State}


def test_an_adapter_that_breaks_on_the_entry_is_named_in_the_history_with_its_kind() -> None:
    """The history says the create failed unexpectedly, with the error's kind
    and words (a bare message can be empty), and that it is treated as
    ambiguous: the order may exist, so it is looked up, never re-sent."""
    attempt = run(Breaks(CALM, entry=True))
    first = attempt.history[0]
    assert first.detail == ("create failed unexpectedly (KeyError('unmapped venue error')); "
                            "treated as ambiguous")
    assert first.evidence is not None and first.evidence.value == "ack"
