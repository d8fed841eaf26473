"""What an operator reads after the fact: every scenario's history and
warning lines, reviewed like the diagrams.

The history (``Attempt.history``, the journal, ``fsm journal show``) and
the engine's warnings are how a person on call learns what happened to
real money. Their words are part of what this library delivers, so they
are checked in (``tests/golden/histories.md``): a change to any of them
shows in the diff for review, and no change slips in unseen. Regenerate
after an intended change with::

    FSM_UPDATE_GOLDEN=1 python -m pytest tests/test_history_golden.py

Besides the exact text, each scenario's words are checked against rules
that hold whatever the wording: a field the exchange did not report is
written ``?``, never a default (rule 1), and each step names its evidence.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.simulated import AckStyle, Fault, OperatorMove, SimConfig, StreamMode
from fsm import State
from tests.helpers import PRICE, SYMBOL, Outcome, request, run_attempt
from tests.test_driver import INCIDENT, SCENARIOS

GOLDEN = Path(__file__).parent / "golden" / "histories.md"
F = Fault

#: Beyond the driver's scenarios: the hostile venue and the shared account,
#: whose words explain the subtler outcomes.
EXTRA: list[tuple[str, dict[str, Any]]] = [
    ("the incident", dict(INCIDENT)),
    ("the incident with the stop refused", dict(INCIDENT, stop_rejected=True)),
    ("stop without reduce-only", dict(stop_drops_reduce_only=True)),
    ("stop on the wrong side", dict(stop_flips_side=True)),
    ("stop for more than asked", dict(stop_amount_skew=1.0)),
    ("stop reply with ids only (read back)", dict(stop_ack_ids_only=True)),
    ("stop reply with ids only and a dropped flag",
     dict(stop_ack_ids_only=True, stop_drops_reduce_only=True)),
    ("ack with the order id only", dict(ack_only="order_id", ack=AckStyle.MINIMAL)),
    ("ack with the client id only", dict(ack_only="client_id", ack=AckStyle.MINIMAL)),
    ("close cut to the position, partial fill",
     dict(stop_rejected=True, close_cut_to_position=True, fill_ratio=0.5)),
    ("stream stale at the move", dict(stream=StreamMode.PRESENT, stream_stale_at_move=0.5,
                                      stop_rejected=True)),
    ("a position of ours held before the entry, stop refused",
     dict(stop_rejected=True, initial_positions={SYMBOL: 7.0})),
    ("partial fill, stop refused", dict(fill_ratio=0.5, stop_rejected=True)),
    ("the operator flips the account during the rollback, with a stream",
     dict(stop_rejected=True, stream=StreamMode.PRESENT,
          operator=(OperatorMove(0.1, SYMBOL, -100.0),))),
    ("attached stop for the whole order after a partial fill",
     dict(ack=AckStyle.MINIMAL, fill_ratio=0.5, attached_stops=True,
          attached_stop_whole_amount=True)),
    ("close refused, REST behind", dict(stop_rejected=True, close_rejected=True,
                                        rest_position_lag=4.0, ack=AckStyle.MINIMAL)),
    ("one contract, stop refused, REST 4 s behind",
     dict(req=request(amount=1), stop_rejected=True, rest_position_lag=4.0)),
    ("a fraction of a contract, stop refused, REST 4 s behind",
     dict(req=request(amount=0.5, symbol="FRAC/USDT:USDT"), stop_rejected=True,
          rest_position_lag=4.0, prices={"FRAC/USDT:USDT": 10.0})),
    ("the stream shows the order before the create's reply (rule 3: first evidence wins)",
     dict(ack=AckStyle.MINIMAL, stream=StreamMode.PRESENT, stream_lag=0.001)),
    ("the stream shows the order first, then the stop is refused",
     dict(ack=AckStyle.MINIMAL, stream=StreamMode.PRESENT, stream_lag=0.001,
          stop_rejected=True)),
    ("fetches failing until the deadline",
     dict(ack=AckStyle.MINIMAL, faults={"fetch_order": (F.UNAVAILABLE,) * 200})),
]

ALL: list[tuple[str, dict[str, Any]]] = [(n, k) for n, k, _ in SCENARIOS] + EXTRA


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}: {record.getMessage()}")


@contextlib.contextmanager
def _capture() -> Iterator[_Lines]:
    logger = logging.getLogger("fsm")
    handler = _Lines()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def story(name: str, knobs: dict[str, Any]) -> tuple[Outcome, str]:
    """One scenario in words: its steps with their times, then its warnings."""
    with _capture() as handler:
        o = run_attempt(SimConfig(prices={SYMBOL: PRICE}), **knobs)
    out = [f"## {name}", ""]
    out += [f"    {s.at:8.3f}  {s.describe()}" for s in o.attempt.history]
    out += [f"    {line}" for line in handler.lines]
    return o, "\n".join(out) + "\n"


def render() -> tuple[list[Outcome], str]:
    head = ("# Histories of the driver's scenarios (generated by "
            "tests/test_history_golden.py; do not edit)\n\n")
    outcomes, parts = [], []
    for name, knobs in ALL:
        o, text = story(name, knobs)
        outcomes.append(o)
        parts.append(text)
    return outcomes, head + "\n".join(parts)


def test_the_histories_read_as_reviewed() -> None:
    _, text = render()
    if os.environ.get("FSM_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert GOLDEN.exists(), "run with FSM_UPDATE_GOLDEN=1 to write tests/golden/histories.md"
    want = GOLDEN.read_text()
    if text != want:
        import difflib
        diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True),
                                            "checked in", "now", n=1))
        pytest.fail("the histories changed; review, then regenerate with "
                    f"FSM_UPDATE_GOLDEN=1:\n{diff[:6000]}")


def test_every_step_names_its_evidence_and_unreported_fields_read_as_unknown() -> None:
    outcomes, _ = render()
    states = set()
    for o in outcomes:
        for s in o.attempt.history:
            states.add(s.dest)
            assert s.detail and s.detail == s.detail.strip(), s
            assert "None" not in s.detail.replace("reduce_only=None", ""), s.describe()
        assert o.attempt.state.terminal
    assert states >= {st for st in State if st is not State.NEW}, "a state no scenario reaches"


def test_the_words_are_deterministic() -> None:
    """Run twice, a scenario reads the same: virtual time and seeded worlds,
    so the checked-in file can only change when the code does."""
    name, knobs = EXTRA[1]
    assert story(name, knobs)[1] == story(name, knobs)[1]
