"""Ground truth per attempt in a shared account: whose exposure is whose.

The simulated exchange records every execution on the account
(:attr:`~adapters.simulated.SimulatedExchange.fills`): the attempts' own
orders (known by their client ids), other attempts' orders and the
operator's hand trades (``actor="operator"``, no client id). From that
time-ordered list, :func:`ledger` computes for one attempt:

* ``A``, the attempt's live exposure in its request direction. Its entry's
  fill adds to it. After every execution on the symbol, by anyone, it is
  clamped to what the account still holds in that direction,
  ``A = min(A, max(N_dir, 0))``: an operator's reduction eats foreign
  exposure first, and the attempt's own only when the account holds less than
  the attempt put there. The attempt's own reducing fill (its close, or its
  stop) of ``q`` takes ``min(q, A)`` off ``A``;
* **foreign exposure touched** (law L11): what the attempt's own fills
  reduced beyond its own exposure, i.e. someone else's. A reducing fill
  beyond ``A`` reduces the account's other same-direction exposure; an
  adding fill on an account that holds the opposite side nets that
  position away. Both count, unless **excused by the race** the exchange's
  netting makes inherent: for a close, an operator execution after the
  attempt's last ``fetch_fills`` reached the exchange and before the close
  did (the engine checked, and the operator moved in between); for an entry,
  an operator execution before the entry arrived (the account the attempt
  read before sending is no longer the account the entry met);
* the attempt's own signed net (law L1: never beyond the amount asked), and
  its entry's true fill (laws L4, L5).

The arrival times of requests come from :class:`GroundTruthExchange`, a
simulated exchange that also records when each request took effect, and on
behalf of which attempt (a context variable the harness sets per attempt).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Sequence
from typing import TypeVar

import attrs

from adapters.port import Side
from adapters.simulated import SimConfig, SimFill, SimulatedExchange

__all__ = [
    "ATTEMPT_TAG",
    "Arrival",
    "GroundTruthExchange",
    "Ledger",
    "Own",
    "ledger",
]

T = TypeVar("T")

_EPS = 1e-9

#: Which attempt the current task works for (the harness sets it per attempt;
#: tasks the engine spawns inherit it). ``None``: unknown (e.g. recovery),
#: attributed to every attempt.
ATTEMPT_TAG: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "specs_attempt_tag", default=None)


@attrs.frozen
class Arrival:
    """A request took effect at the exchange at ``at`` (loop time)."""

    at: float
    kind: str  # the simulator's call kind: "create", "fetch_fills", ...
    tag: object | None  # ATTEMPT_TAG of the task that sent it


class GroundTruthExchange(SimulatedExchange):
    """The simulated exchange, also recording when each request reached it
    (a request lost on the way, refused at the gateway or delayed beyond the
    receive window never arrives), and for which attempt: the simulator's
    ``on_arrival`` hook runs in the sender's task, where ``ATTEMPT_TAG`` is
    the sending attempt's."""

    def __init__(self, config: SimConfig | None = None) -> None:
        super().__init__(config)
        self.arrivals: list[Arrival] = []
        self.on_arrival = self._arrived

    def _arrived(self, kind: str) -> None:
        self.arrivals.append(Arrival(self._now(), kind, ATTEMPT_TAG.get()))


@attrs.frozen
class Own:
    """What identifies one attempt's orders on the account."""

    symbol: str  # canonical
    side: Side
    amount: float  # as requested
    entry: str  # client ids
    stop: str
    close: str
    tag: object | None = None  # its ATTEMPT_TAG, for its fetch_fills arrivals


@attrs.frozen
class Touch:
    """One own fill that reduced exposure that was not the attempt's."""

    at: float
    client_id: str | None
    amount: float
    excused: bool


@attrs.frozen
class Ledger:
    """One attempt's ground truth at the end of the run."""

    exposure: float  # A: the attempt's live exposure in its direction
    entry_filled: float  # every fill under its entry client id
    own_max_abs: float  # the largest |own signed net| at any point
    own_net: float  # own signed net (in the request's direction) at the end
    touches: tuple[Touch, ...]
    operator_fills: tuple[float, ...]  # times of the operator's executions on the symbol

    @property
    def foreign_touched(self) -> float:
        """Foreign exposure the attempt reduced, the inherent race excused (L11)."""
        return sum(t.amount for t in self.touches if not t.excused)

    @property
    def excused(self) -> float:
        """Foreign exposure touched but excused by the race netting makes inherent."""
        return sum(t.amount for t in self.touches if t.excused)


def _dir(side: Side) -> float:
    return 1.0 if side is Side.BUY else -1.0


def ledger(fills: Sequence[SimFill], own: Own, *, initial: float = 0.0,
           arrivals: Iterable[Arrival] = ()) -> Ledger:
    """The attempt's ledger from the account's executions (see the module)."""
    d = _dir(own.side)
    checks = sorted(a.at for a in arrivals
                    if a.kind == "fetch_fills" and (a.tag is None or a.tag == own.tag))
    # Stable sort: same-instant fills keep the exchange's order.
    ordered = sorted((f for f in fills if f.symbol == own.symbol), key=lambda f: f.at)
    net = initial * d  # the account's net, in the attempt's direction
    a = 0.0
    entry = 0.0
    own_net = 0.0
    worst = 0.0
    touches: list[Touch] = []
    operator: list[float] = []
    for f in ordered:
        q = f.amount * (1.0 if f.side is own.side else -1.0)  # in the attempt's direction
        before_net, before_a = net, a
        net += q
        if f.actor == "operator":
            operator.append(f.at)
        if f.client_id in (own.entry, own.stop, own.close):
            own_net += q
            worst = max(worst, abs(own_net))
            if f.client_id == own.entry:
                entry += f.amount
            if q > 0:
                a += q
                netted = min(q, max(-before_net, 0.0))
                if netted > _EPS:
                    excused = bool(operator)  # the operator moved before it arrived
                    touches.append(Touch(f.at, f.client_id, netted, excused))
            else:
                mine = min(-q, before_a)
                a -= mine
                foreign = min(-q - mine, max(max(before_net, 0.0) - before_a, 0.0))
                if foreign > _EPS:
                    last = max((t for t in checks if t <= f.at), default=None)
                    excused = last is not None and any(last <= t <= f.at for t in operator)
                    touches.append(Touch(f.at, f.client_id, foreign, excused))
        a = max(0.0, min(a, max(net, 0.0)))
    return Ledger(exposure=a if a > _EPS else 0.0, entry_filled=entry, own_max_abs=worst,
                  own_net=own_net, touches=tuple(touches), operator_fills=tuple(operator))


def describe(fills: Sequence[SimFill], symbol: str) -> list[str]:
    """The account's executions on ``symbol``, one line each (for notes)."""
    return [f"  {f.at:.6f} {f.actor:>8} {f.side.value:>4} {f.amount:g} cid={f.client_id}"
            for f in sorted((f for f in fills if f.symbol == symbol), key=lambda f: f.at)]
