"""Hypothesis profiles for the executable specifications.

``FSM_SPECS_PROFILE`` selects one (default: ``default``):

* ``default`` - the CI budget: the whole ``specs/`` run stays within about
  three minutes on two cores. Every example runs in virtual time, so the
  budget is spent on worlds, not on waiting.
* ``deep`` - nightly or local: 100,000 examples per law (``FSM_SPECS_EXAMPLES``
  overrides the count, e.g. for a shorter deep run).
* ``quick`` - for editing the specs: a few dozen examples per law.
* ``mutation`` - the killing suite of mutation testing (``specs/mutation.py``):
  100 examples per law, derandomized and without the example database, so
  a mutant's verdict does not depend on the run before it.

Every profile prints a reproduction blob on failure (``print_blob``), and the
failing world is printed as a ``World(...)`` that pastes into ``@example``.
Replay a failure with ``@reproduce_failure(...)`` from the blob, or re-run
with the same ``--hypothesis-seed``. Real-time deadlines are off: a world's
ten virtual seconds cost microseconds, but a slow CI machine must not fail
a law.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Verbosity, settings

_COMMON = dict(
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)

settings.register_profile("fsm-default", max_examples=1000, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("fsm-quick", max_examples=30, **_COMMON)  # type: ignore[arg-type]
settings.register_profile(
    "fsm-mutation", max_examples=100, derandomize=True, database=None,
    **_COMMON,  # type: ignore[arg-type]
)
settings.register_profile(
    "fsm-deep",
    max_examples=int(os.environ.get("FSM_SPECS_EXAMPLES", "100000")),
    # No explicit phases: explain and shrink as usual; the database keeps
    # what a nightly run finds so the next default run replays it first.
    verbosity=Verbosity.normal,
    **_COMMON,  # type: ignore[arg-type]
)
PROFILE = os.environ.get("FSM_SPECS_PROFILE", "default")
settings.load_profile("fsm-" + PROFILE)


def pytest_report_header() -> str:
    """The Hypothesis profile in use, in pytest's header."""
    s = settings()
    return f"fsm specs: hypothesis profile {PROFILE!r}, max_examples={s.max_examples}"
