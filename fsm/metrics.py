"""Numbers for a bot operator, without reading histories.

:class:`Metrics` turns attempts into counters and histograms: attempts by
terminal state, time to protection, requests per attempt, alerts. Feed it
either way::

    metrics = Metrics()
    opener = PositionOpener(adapter, on_transition=metrics.on_transition)
    ...
    metrics.snapshot()    # plain dict, for logs or your own exporter

or call ``metrics.observe(attempt)`` on each attempt ``open()`` returns.
:class:`fsm.prometheus.PrometheusMetrics` (extra ``[prometheus]``) exports
the same numbers for a Prometheus scrape; the core needs nothing of it.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from typing import Any

from fsm.attempt import Attempt, Transition
from fsm.table import State

__all__ = ["PROTECTION_BUCKETS", "REQUEST_BUCKETS", "Histogram", "Metrics", "time_to_protection"]

#: Seconds from open() to PROTECTED: tens of ms on a calm venue, seconds
#: under load; the last bucket catches a stop that took its whole window.
PROTECTION_BUCKETS: tuple[float, ...] = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Exchange requests per attempt: 4-5 on the happy path (market rules,
#: position, create, fetch, stop), more with retries and rollbacks.
REQUEST_BUCKETS: tuple[float, ...] = (3, 4, 5, 6, 8, 10, 15, 20, 30, 50)


class Histogram:
    """A cumulative-bucket histogram (Prometheus' shape): ``counts[i]`` is
    how many observations were at most ``buckets[i]``."""

    def __init__(self, buckets: Sequence[float]) -> None:
        if list(buckets) != sorted(buckets) or not buckets:
            raise ValueError("buckets must be a non-empty increasing sequence")
        self.buckets = tuple(float(b) for b in buckets)
        self._per = [0] * (len(self.buckets) + 1)  # the last slot is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one value into its bucket."""
        self._per[bisect.bisect_left(self.buckets, value)] += 1
        self.count += 1
        self.sum += value

    @property
    def counts(self) -> list[int]:
        """Count per bucket, in bucket order."""
        out, running = [], 0
        for n in self._per[:-1]:
            running += n
            out.append(running)
        return out


def time_to_protection(attempt: Attempt) -> float | None:
    """Seconds from the attempt's creation (its pre-entry reads done) to its
    PROTECTED transition."""
    if attempt.state is not State.PROTECTED or not attempt.history:
        return None
    return attempt.history[-1].at - attempt.created_at


class Metrics:
    """Counters and histograms over finished attempts."""

    def __init__(self) -> None:
        self.attempts: Counter[State] = Counter()
        self.alerts: Counter[str] = Counter()
        self.time_to_protection = Histogram(PROTECTION_BUCKETS)
        self.requests = Histogram(REQUEST_BUCKETS)
        self._seen: set[str] = set()

    def observe(self, attempt: Attempt) -> None:
        """Count one attempt that reached a terminal state (again: no-op)."""
        if not attempt.terminal or attempt.attempt_id in self._seen:
            return
        self._seen.add(attempt.attempt_id)
        self.attempts[attempt.state] += 1
        if attempt.state is State.ORPHANED:
            self.alerts["orphaned"] += 1
        if attempt.journal_error is not None:
            self.alerts["journal"] += 1
        ttp = time_to_protection(attempt)
        if ttp is not None:
            self.time_to_protection.observe(ttp)
        self.requests.observe(attempt.requests)

    def on_transition(self, attempt: Attempt, step: Transition) -> None:
        """``PositionOpener(on_transition=metrics.on_transition)``: counts
        each attempt at its terminal transition. Requests made after that
        step (cancelling a leftover stop) are not in its count."""
        if step.dest.terminal:
            self.observe(attempt)

    def snapshot(self) -> dict[str, Any]:
        """Every metric, as plain data."""
        return {
            "attempts": {s.value: n for s, n in sorted(self.attempts.items(),
                                                       key=lambda kv: kv[0].value)},
            "alerts": dict(self.alerts),
            "time_to_protection": _hist(self.time_to_protection),
            "requests_per_attempt": _hist(self.requests),
        }


def _hist(h: Histogram) -> dict[str, Any]:
    return {"buckets": list(h.buckets), "counts": h.counts, "count": h.count, "sum": h.sum}
