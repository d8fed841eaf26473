"""Run the kit on a factory named in the environment, with no test file of
your own::

    ADAPTER_CONFORMANCE_VENUE=mybot.venue:make_venue \\
        python -m pytest --pyargs adapters.conformance

``make_venue`` is a function (plain or ``async``) that takes no argument and
returns a :class:`~adapters.conformance.venue.Venue`. Unset, the one test
here is skipped and says what to set."""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from typing import Any

import pytest

from adapters.conformance.kit import AdapterConformance
from adapters.conformance.venue import Venue

#: The environment variable naming the factory, as ``module:function``.
ENV = "ADAPTER_CONFORMANCE_VENUE"


def _factory(spec: str) -> Callable[[], Any]:
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"{ENV}={spec!r}: expected 'package.module:function'")
    factory: Callable[[], Any] = getattr(importlib.import_module(module), name)
    return factory


if os.environ.get(ENV):

    class TestVenueFromEnv(AdapterConformance):
        """The kit, on the venue ``$ADAPTER_CONFORMANCE_VENUE`` builds."""

        async def make_venue(self) -> Venue:
            """Call the factory; await it if it is a coroutine."""
            made = _factory(os.environ[ENV])()
            venue = await made if inspect.isawaitable(made) else made
            if not isinstance(venue, Venue):
                raise TypeError(f"{os.environ[ENV]} returned {venue!r}, not a Venue")
            return venue

else:

    def test_venue_from_env() -> None:
        """Skipped: no factory named."""
        pytest.skip(f"set {ENV}=package.module:make_venue to run the kit on your adapter")
