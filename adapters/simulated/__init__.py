"""The simulated venue: a deterministic exchange, its virtual-time loop and
the incident it replays. No keys, no network.

* :mod:`adapters.simulated.exchange`: :class:`SimulatedExchange` and its
  knobs (:class:`SimConfig`);
* :mod:`adapters.simulated.clock`: the virtual-time event loop
  (:func:`run_virtual`);
* :mod:`adapters.simulated.incident`: the AVLUSDT incident, defined once for
  the demo, the diagrams and the benchmarks;
* :mod:`adapters.simulated.legacy`: the incident's decision rules as a
  driver, the witness the specs must catch and the benchmarks' baseline;
* :mod:`adapters.simulated.ledger`: ground truth per attempt in a shared
  account, read from the simulator's executions (for your bot's tests too);
* :mod:`adapters.simulated.runs`: running attempts in bulk.

Everything public is importable from ``adapters.simulated`` directly.
"""

from adapters.simulated.clock import VirtualTimeDeadlock, VirtualTimeLoop, run_virtual
from adapters.simulated.exchange import (
    CALLS,
    DEFAULT_MARKETS,
    AckStyle,
    ClientIdScope,
    Fault,
    OperatorMove,
    SentOrder,
    SimConfig,
    SimFill,
    SimMarket,
    SimulatedExchange,
    StreamMode,
)
from adapters.simulated.incident import INCIDENT, INCIDENT_REQUEST, Replay, replay

__all__ = [
    "CALLS",
    "DEFAULT_MARKETS",
    "INCIDENT",
    "INCIDENT_REQUEST",
    "AckStyle",
    "ClientIdScope",
    "Fault",
    "OperatorMove",
    "Replay",
    "SentOrder",
    "SimConfig",
    "SimFill",
    "SimMarket",
    "SimulatedExchange",
    "StreamMode",
    "VirtualTimeDeadlock",
    "VirtualTimeLoop",
    "replay",
    "run_virtual",
]
