"""Issue 11, reproduction 7: ``Policy`` and ``ReconcilePolicy`` refuse what
is not a sane number of seconds, each with a message naming the field.

Before: ``Policy`` accepted ``True`` as a number, ``request_timeout=1e-12``
(every call times out before it is sent: an attempt ends ORPHANED without
sending anything) and values that made ``max_duration`` infinite;
``ReconcilePolicy(request_timeout=0)`` was accepted.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest

from fsm.policy import MAX_WAIT, Policy
from fsm.reconcile import OrphanAction, ReconcilePolicy

_NUMBERS = [f.name for f in attrs.fields(Policy)]


@pytest.mark.parametrize("field", _NUMBERS)
@pytest.mark.parametrize("value", [True, False, math.nan, math.inf, -math.inf, -1.0, 0.0,
                                   "5", None, 1e9])
def test_policy_refuses_what_is_not_a_sane_number(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"Policy\.{field}\b"):
        Policy(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value"), [
    ("request_timeout", 1e-12), ("request_timeout", 0.049), ("verify_timeout", 1e-12),
    ("close_timeout", 0.05), ("protect_timeout", 3600.5), ("clock_skew_margin", 61.0),
    ("backoff_factor", 0.5), ("backoff_factor", 11.0),
])
def test_policy_ranges(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"Policy\.{field} must be a finite number in"):
        kwargs: dict[str, Any] = {field: value}
        Policy(**kwargs)


def test_the_bounds_themselves_are_accepted_and_max_duration_stays_finite() -> None:
    lowest = Policy(verify_timeout=0.1, close_timeout=0.1, protect_timeout=0.1,
                    request_timeout=0.05, backoff_initial=0.001, backoff_max=0.001,
                    backoff_factor=1.0, clock_skew_margin=1e-3)
    assert lowest.request_timeout == 0.05
    highest = Policy(verify_timeout=MAX_WAIT, close_timeout=MAX_WAIT, protect_timeout=MAX_WAIT,
                     request_timeout=MAX_WAIT, backoff_initial=60.0, backoff_max=600.0,
                     backoff_factor=10.0, clock_skew_margin=60.0)
    assert math.isfinite(highest.max_duration)
    assert Policy(verify_timeout=7).verify_timeout == 7  # an int is a number


def test_backoff_max_below_backoff_initial_is_refused() -> None:
    with pytest.raises(ValueError, match=r"Policy\.backoff_max"):
        Policy(backoff_initial=2.0, backoff_max=1.0)


@pytest.mark.parametrize(("field", "value"), [
    ("request_timeout", 0), ("request_timeout", 0.01), ("request_timeout", math.inf),
    ("request_timeout", True), ("settle_time", -5), ("settle_time", math.nan),
    ("settle_time", math.inf), ("settle_time", True), ("settle_time", 86401),
    ("cancel_leftover_stops", 1), ("record_resolutions", "yes"), ("orphans", "close"),
])
def test_reconcile_policy_refuses_nonsense(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"ReconcilePolicy\.{field}\b"):
        ReconcilePolicy(**{field: value})  # type: ignore[arg-type]


def test_reconcile_policy_accepts_its_documented_range() -> None:
    p = ReconcilePolicy(settle_time=0, request_timeout=0.05, orphans=OrphanAction.PROTECT,
                        cancel_leftover_stops=True, record_resolutions=False)
    assert not p.read_only
