"""What the specs and the benchmarks share, and the library does not ship.

* :mod:`harness.ledger`: ground truth per attempt in a shared account, read
  from the simulator's executions (:class:`GroundTruthExchange`, :func:`ledger`);
* :mod:`harness.legacy`: the incident's decision rules as a driver, the
  witness the specs must catch and the benchmarks' baseline;
* :mod:`harness.runs`: running attempts on the simulator in bulk
  (:func:`settle_time`, :func:`quiet_engine_log`).

It may import ``fsm`` and ``adapters``; neither imports it, and ``specs``
and ``benchmarks`` import it instead of each other.
"""
