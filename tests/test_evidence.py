"""The facts an attempt starts with are exactly what ``Facts(...)`` builds,
however they are built."""

from __future__ import annotations

import attrs
import pytest

from adapters.port import PositionSide, PositionSnapshot, Source
from fsm.attempt import Attempt
from fsm.evidence import Facts
from tests.helpers import SYMBOL, request

HELD = PositionSnapshot(symbol=SYMBOL, side=PositionSide.LONG, size=5.0, source=Source.REST,
                        received_at=0.5)


@pytest.mark.parametrize(("baseline", "stop_attached"),
                         [(None, False), (HELD, False), (None, True), (HELD, True)])
def test_initial_facts_are_those_facts_builds(baseline: PositionSnapshot | None,
                                              stop_attached: bool) -> None:
    r = request()
    built = Facts(request=r, now=2.5, baseline=baseline, stop_attached=stop_attached)
    initial = Facts.initial(r, 2.5, baseline=baseline, stop_attached=stop_attached)
    assert type(initial) is Facts
    assert initial == built
    # Field by field, in field order, down to the instance dict.
    assert list(vars(initial).items()) == list(vars(built).items())
    assert attrs.asdict(initial, recurse=False) == attrs.asdict(built, recurse=False)


def test_initial_facts_are_not_shared_between_attempts() -> None:
    r = request()
    one, two = Facts.initial(r, 1.0), Facts.initial(r, 1.0)
    assert one == two and one is not two and vars(one) is not vars(two)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        one.now = 3.0  # type: ignore[misc]
    assert two.now == 1.0


def test_an_attempt_starts_from_its_initial_facts() -> None:
    r = request()
    a = Attempt("0" * 24, r, "sp" + "0" * 24 + "e", 3.0, baseline=HELD, stop_attached=True)
    assert a.facts == Facts(request=r, now=3.0, baseline=HELD, stop_attached=True)
