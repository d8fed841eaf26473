"""A Prometheus exporter for the engine's numbers (optional extra:
``pip install 'safe-position-opener[prometheus]'``; the core never imports
this module).

::

    from prometheus_client import start_http_server
    from fsm.prometheus import PrometheusMetrics

    metrics = PrometheusMetrics()            # registers on the default registry
    opener = PositionOpener(adapter, on_transition=metrics.on_transition)
    start_http_server(9108)                  # /metrics

Exported (``namespace`` defaults to ``position_opener``):

* ``attempts_total{state}``: attempts by terminal state;
* ``alerts_total{reason}``: ``orphaned`` and ``journal`` alerts;
* ``time_to_protection_seconds``: open() to PROTECTED, histogram;
* ``requests_per_attempt``: exchange requests per attempt, histogram.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from fsm.attempt import Attempt, Transition
from fsm.metrics import PROTECTION_BUCKETS, REQUEST_BUCKETS, time_to_protection
from fsm.table import TERMINAL, State

__all__ = ["PrometheusMetrics"]


class PrometheusMetrics:
    """The numbers of :class:`fsm.metrics.Metrics`, as Prometheus metrics."""

    def __init__(self, registry: CollectorRegistry = REGISTRY,
                 namespace: str = "position_opener") -> None:
        self.attempts = Counter("attempts", "Attempts by terminal state", ["state"],
                                namespace=namespace, registry=registry)
        self.alerts = Counter("alerts", "Alerts raised, by reason", ["reason"],
                              namespace=namespace, registry=registry)
        self.time_to_protection = Histogram(
            "time_to_protection_seconds", "Seconds from open() to PROTECTED",
            namespace=namespace, registry=registry, buckets=PROTECTION_BUCKETS)
        self.requests = Histogram(
            "requests_per_attempt", "Exchange requests per attempt",
            namespace=namespace, registry=registry, buckets=REQUEST_BUCKETS)
        for state in sorted(TERMINAL, key=lambda s: s.value):  # zeros are data too
            self.attempts.labels(state=state.value)
        for reason in ("orphaned", "journal"):
            self.alerts.labels(reason=reason)
        self._seen: set[str] = set()

    def observe(self, attempt: Attempt) -> None:
        """Record one finished attempt."""
        if not attempt.terminal or attempt.attempt_id in self._seen:
            return
        self._seen.add(attempt.attempt_id)
        self.attempts.labels(state=attempt.state.value).inc()
        if attempt.state is State.ORPHANED:
            self.alerts.labels(reason="orphaned").inc()
        if attempt.journal_error is not None:
            self.alerts.labels(reason="journal").inc()
        ttp = time_to_protection(attempt)
        if ttp is not None:
            self.time_to_protection.observe(ttp)
        self.requests.observe(attempt.requests)

    def on_transition(self, attempt: Attempt, step: Transition) -> None:
        """Record one transition."""
        if step.dest.terminal:
            self.observe(attempt)
