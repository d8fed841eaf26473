"""The incident's paths, as committed in ``diagrams/``.

The replay itself is the one incident definition,
:mod:`adapters.simulated.incident`; this module only names the two
variants drawn (protected, and rolled back with the stop refused) and runs
them on a virtual-time loop. It is the diagrams' one piece of wiring to an
adapter: the simulator is imported only when an incident is run, so
rendering the lifecycle or a journalled path imports no adapter.
"""

from __future__ import annotations

import attrs

from fsm.attempt import Attempt

__all__ = ["INCIDENTS", "Incident", "run_incident"]


# -- the incident, replayed on the simulator -----------------------------------------------


@attrs.frozen
class Incident:
    """One replay of the AVLUSDT incident on the simulator."""

    stem: str
    attempt_id: str  # fixed, so the output is deterministic (alphanumeric)
    stop_rejected: bool
    title: str
    description: str


_SETUP = (
    "Replayed on the simulator (`adapters.simulated`, virtual time): the incident's "
    "request `OpenRequest(symbol=\"AVL/USDT:USDT\", side=\"buy\", amount=43, "
    "stop_loss=0.1290)` against an exchange whose create reply carries only the "
    "order id (`ack=AckStyle.MINIMAL`, as Bybit v5), whose REST positions lag "
    "4 s behind (`rest_position_lag=4.0`) and whose position stream is present "
    "(`stream=StreamMode.PRESENT`)"
)

INCIDENTS: tuple[Incident, ...] = (
    Incident(
        stem="incident-protected",
        attempt_id="avlprotected",
        stop_rejected=False,
        title="The incident, replayed: the entry fills and is protected",
        description=_SETUP + ". The side comes from our request, the fill from the "
        "fetched order, so the 4 s REST lag never matters: the attempt ends protected.",
    ),
    Incident(
        stem="incident-rolled-back",
        attempt_id="avlrolledback",
        stop_rejected=True,
        title="The incident, replayed with the stop refused: rolled back, proven flat",
        description=_SETUP + ", and the stop-loss is refused (`stop_rejected=True`). "
        "The engine rolls back: `close_sending` (a self-loop on `ROLLING_BACK`) fires "
        "only once the close side is derived from the exchange's position and agrees "
        "with the request, so the close is a reduce-only sell of 43, never a second buy.",
    ),
)


def run_incident(incident: Incident) -> Attempt:
    """Run one incident replay on a fresh virtual-time loop and return the attempt."""
    from adapters.simulated import INCIDENT, replay, run_virtual

    config = attrs.evolve(INCIDENT, stop_rejected=incident.stop_rejected)
    return run_virtual(replay(config, attempt_id=incident.attempt_id)).attempt
