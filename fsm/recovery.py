"""Recovery: after a crash, drive every unfinished attempt in the journal to a
terminal state, under the same rules (rule 8, law L10).

The journal holds, for each attempt, its request, every intent written
*before* its side effect, and every transition. The process that wrote it is
gone, and with it every fact it had collected, so recovery does not trust
its conclusions; it trusts only what the journal proves about what may have
been *sent*, and asks the exchange for the rest:

* **No entry intent** (the process stopped between ``begin`` and the entry's
  intent): nothing was sent. The attempt is ``REJECTED`` ("never sent"); a
  stale entry is never sent late, when the bot may no longer want it.
* **An entry intent, no rollback yet**: the entry may exist. The attempt is
  moved to ``PLACED`` with the create's outcome marked unknown, exactly as
  after an ambiguous create (rule 7), so the driver looks the entry up by its
  client id and never sends it again. From there the ordinary steps
  re-derive everything from the exchange's answers: fetched, verified,
  protected. If a stop intent is on record, the stop may rest already; the
  driver looks it up by client id before placing one.
* **A rollback had begun**: the old engine had given up on the entry, and
  the position may be partly closed, so protecting it now could stop the
  wrong size. The attempt goes back to ``ROLLING_BACK`` (through ``PLACED``
  and the ``fetch_failed`` row, its deadline marked spent by the crash).
  Recovery first looks up the entry (its fill and time let a flat view prove
  flatness) and, if a close intent is on record, the close; a close that is
  found is not sent again, and one that is not found is sent again only once
  it is proven never to have arrived (the exchange's receive window, counted
  from the start of recovery, has passed and a look-up by client id says no
  such order). Client-id uniqueness is never the safety net: Binance keeps
  client ids unique only among open orders.
* **Current evidence only.** The process was down; the operator may have
  traded meanwhile. Before a recovered attempt sends a stop or a close, it
  reads the symbol's executions since its fill: one that is not its own
  means the exposure may not be the attempt's any more, and it ends
  ``ORPHANED`` with one alert and nothing sent (rule 9).
* **A terminal transition without its end record** (the process died in the
  last step, e.g. while cancelling a leftover stop): the attempt is finished;
  recovery finishes that step (cancels the leftover stop after a verified
  close, alerts an ORPHANED attempt, whose alert follows the end record),
  and writes the end.

Every re-derivation step goes through the real machine
(:class:`~fsm.attempt.Recorder`) with evidence ``journal``, and is itself
journalled after a ``recover`` record, so a crash during recovery is
recovered the same way. Deadlines are fresh: loop times of the dead process
mean nothing in this one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import attrs

from fsm.alerts import AlertSink, Note, alert_from_record
from fsm.attempt import Alert, Attempt, Recorder
from fsm.effects import absent_after, cancel_stop, deliver_queued, look_up_order
from fsm.evidence import CloseIntent, Facts, StopIntent
from fsm.fence import Lease, lease_data
from fsm.journal import AttemptSummary, JournalLog, JournalSink, encode_step, summarize
from fsm.lease import LeaseBusy
from fsm.model import OrderSnapshot, Side, Source
from fsm.policy import Policy
from fsm.port import ExchangePort
from fsm.table import State, Trigger

__all__ = ["Resumer", "recover", "unfinished"]

log = logging.getLogger("fsm")


class Resumer(Protocol):
    """What recovery needs of an opener (:class:`fsm.driver.Resumer`
    is one): its exchange, policy, alert sink and journal, and a way to drive
    a rebuilt attempt on to a terminal state."""

    @property
    def adapter(self) -> ExchangePort:
        """The exchange the attempts were sent to."""
        ...

    @property
    def policy(self) -> Policy:
        """Deadlines and back-off for the resumed attempts."""
        ...

    @property
    def alerts(self) -> AlertSink | None:
        """Where alerts go."""
        ...

    @property
    def journal(self) -> JournalSink | None:
        """The journal to recover from (must be a JournalLog)."""
        ...

    async def resume(self, attempt: Attempt) -> Attempt:
        """Drive ``attempt`` to a terminal state under the engine's rules."""
        ...

    @property
    def account(self) -> str:
        """The account whose attempts this opener may take (leases' key)."""
        ...

    def hold_lease(self, symbol: str) -> AbstractAsyncContextManager[Lease | None]:
        """Hold the ``(account, symbol)`` lease (``None``: no leases kept)."""
        ...


def unfinished(journal: JournalLog) -> list[AttemptSummary]:
    """The journalled attempts without an end record, in the order they began."""
    return [s for s in summarize(journal.read()) if not s.finished]


async def recover(opener: Resumer, *, symbol: str | None = None) -> list[Attempt]:
    """Drive every unfinished attempt of ``opener.journal`` to a terminal
    state and return them (attempts that only lacked their end record are
    finished and logged, not returned).

    Attempts on one symbol are resumed one after another, in the order they
    began (their fills cannot be told apart on a netted position); different
    symbols are resumed concurrently. ``symbol`` limits it to one symbol
    (what ``open()`` does first on a symbol whose lease it took over).

    With a journal that keeps leases, only this opener's account's attempts
    are taken, each under its ``(account, symbol)`` lease and read again
    once the lease is held; a symbol whose lease stays held by a live
    process past ``Policy.lease_wait`` is left to it (logged).
    """
    journal = opener.journal
    if not isinstance(journal, JournalLog):
        raise TypeError(
            "recovery needs a journal that can be read back (fsm.Journal or "
            f"fsm.MemoryJournal), not {type(journal).__name__}")
    # Another account's attempts are not ours to drive (one journal may
    # serve several accounts); attempts journalled without leases are.
    summaries = [s for s in summarize(journal.read())
                 if (s.account is None or s.account == opener.account)
                 and (symbol is None or s.request.symbol == symbol)]
    for s in summaries:
        if s.finished and s.alerts_pending:
            await _redeliver(opener, journal, s)
    pending = [s for s in summaries if not s.finished]
    if pending:
        log.warning("recovering %d unfinished attempt(s): %s", len(pending),
                    ", ".join(f"{s.attempt_id} ({s.state.value})" for s in pending))
    by_symbol: dict[str, list[AttemptSummary]] = {}
    for s in pending:
        by_symbol.setdefault(s.request.symbol, []).append(s)

    async def one_symbol(items: Sequence[AttemptSummary]) -> list[Attempt]:
        done = []
        for s in items:
            try:
                got = await _recover_leased(opener, journal, s)
            except LeaseBusy as exc:
                # A live process holds the symbol: it is driving these
                # attempts. A later recover() takes them if it dies.
                log.warning("not recovering %d attempt(s) on %s now: %s", len(items),
                            s.request.symbol, exc)
                break
            done.extend(got)
        return done

    results = await asyncio.gather(*(one_symbol(v) for v in by_symbol.values()))
    order = {s.attempt_id: i for i, s in enumerate(pending)}
    return sorted((a for group in results for a in group),
                  key=lambda a: order.get(a.attempt_id, len(order)))


async def _recover_leased(
    opener: Resumer, journal: JournalLog, s: AttemptSummary
) -> list[Attempt]:
    """Take the attempt's ``(account, symbol)`` lease (when the journal keeps
    leases), then read the attempt again: it may have been finished, or
    taken further, by the process that held the lease meanwhile.

    A lease taken over from a holder that died may come with an attempt of
    that holder's begun after this recovery listed the journal: it is
    recovered too, under the same lease. Releasing the lease hides that its
    holder died (the next taker sees a released lease), so the next
    ``open()`` on the symbol would otherwise not recover it first and move
    the position under it."""
    async with opener.hold_lease(s.request.symbol) as lease:
        items = [s]
        if lease is not None:
            fresh = summarize(journal.read(s.attempt_id))
            items = [] if not fresh or fresh[0].finished else [fresh[0]]
            if lease.taken_over:
                items += [o for o in summarize(journal.read())
                          if not o.finished and o.request.symbol == s.request.symbol
                          and o.attempt_id != s.attempt_id
                          and (o.account is None or o.account == opener.account)]
        done = []
        for item in items:
            a = await _recover_one(opener, journal, item)
            if a is not None:
                done.append(a)
        return done


async def _recover_one(
    opener: Resumer, journal: JournalLog, s: AttemptSummary
) -> Attempt | None:
    now = _now()
    journal.note(s.attempt_id, "recover", now, {
        "from_state": s.state.value,
        "intents": sorted(s.intents),
        "rolled_back": s.rolled_back,
        "entry_order_id": s.entry_order_id,
        **lease_data(),
    })
    if s.state.terminal:
        await _finish(opener, journal, s)
        return None
    a = Attempt(s.attempt_id, s.request, s.client_id, now)
    recorder = Recorder()
    recorder.track(a)
    try:
        if "entry" not in s.intents and s.state is State.NEW:
            _fire(journal, recorder, a, Trigger.REJECT,
                  attrs.evolve(a.facts, create_error="never sent: the process stopped before "
                               "the entry's intent was journalled"),
                  "recovered: no entry intent in the journal, so nothing was sent")
        else:
            await _to_placed(opener, journal, recorder, a, s)
            if s.rolled_back:
                await _to_rolling_back(opener, journal, recorder, a, s)
    finally:
        recorder.untrack(a)
    return await opener.resume(a)


async def _to_placed(opener: Resumer, journal: JournalLog, recorder: Recorder,
                     a: Attempt, s: AttemptSummary) -> None:
    """PLACED, the create's outcome unknown: the driver looks the entry up by
    client id and never sends it again."""
    now = _now()
    window = opener.policy.verify_timeout
    ack = None
    if s.entry_order_id is not None:
        ack = OrderSnapshot(symbol=s.request.symbol, order_id=s.entry_order_id,
                            client_id=s.client_id)
    stop = s.intents.get("stop")
    stop_intent = None
    if stop is not None:
        stop_intent = StopIntent(side=Side(stop["side"]), amount=float(stop["amount"]),
                                 trigger_price=float(stop["trigger_price"]),
                                 client_id=str(stop["client_id"]))
    # The entry went with its stop attached: the exchange may have armed it,
    # so it is read back before anything else is placed. A stop intent on
    # record means the attempt had already fallen back to a separate stop.
    entry_intent = s.intents.get("entry") or {}
    attached = "attached_stop_client_id" in entry_intent
    fell_back = ("recovered: a separate stop may have been sent"
                 if attached and stop_intent is not None else None)
    # The entry, if it was sent at all, was sent before this process started:
    # a not-found answer after the receive window counted from now is proof.
    facts = attrs.evolve(a.facts, now=now, create_ambiguous=True, ack=ack,
                         fetch_deadline=now + window, verify_deadline=now + window,
                         stop_intent=stop_intent, recovered=True,
                         stop_attached=attached, attached_failed=fell_back,
                         entry_absent_after=absent_after(opener.adapter, opener.policy, now))
    _fire(journal, recorder, a, Trigger.SUBMIT, facts,
          f"recovered from {s.state.value}: the entry {s.client_id} may exist; looking it up "
          "by client id, never sending it again")


async def _to_rolling_back(opener: Resumer, journal: JournalLog, recorder: Recorder,
                           a: Attempt, s: AttemptSummary) -> None:
    """Back to ROLLING_BACK, with what the exchange says about the entry and
    the close (if one may have been sent)."""
    r = s.request
    entry = await _lookup(opener, r.symbol, s.client_id, s.entry_order_id)
    close = None
    close_data = s.intents.get("close")
    if close_data is not None:
        close = await _lookup(opener, r.symbol, str(close_data["client_id"]), s.close_order_id)
    now = _now()
    facts = attrs.evolve(a.facts, now=now, fetch_deadline=now)
    if entry is not None:
        facts = attrs.evolve(facts, entry=entry, entry_source=Source.ORDER)
    _fire(journal, recorder, a, Trigger.FETCH_FAILED, facts,
          "recovered: the journal shows a rollback had begun; resuming it "
          f"(entry {'found' if entry else 'not found'} by client id"
          + (f", close {'found' if close else 'not found'}" if close_data else "") + ")")
    if close_data is not None:
        # A close may have been sent: never send it again unless it is proven
        # never to have arrived (rule 10). Found: follow it to its end. Not
        # found: keep looking it up; a not-found answer after the receive
        # window, counted from now (it was sent before the crash), is proof.
        intent = CloseIntent(side=Side(close_data["side"]), amount=float(close_data["amount"]),
                             client_id=str(close_data["client_id"]))
        a.facts = attrs.evolve(a.facts, close_intent=intent, close_order=close,
                               close_absent_after=absent_after(opener.adapter, opener.policy, now))


async def _finish(opener: Resumer, journal: JournalLog, s: AttemptSummary) -> None:
    """The attempt reached ``s.state`` but its end record is missing: do what
    the driver does after the last transition, then write the end."""
    r = s.request
    if s.state is State.CLOSE_VERIFIED and "stop" in s.intents:
        await cancel_stop(opener.adapter, opener.policy.request_timeout, symbol=r.symbol,
                          order_id=s.stop_order_id,
                          client_id=str(s.intents["stop"]["client_id"]),
                          attempt_id=s.attempt_id, state=s.state.value)
    if s.state is State.ORPHANED:
        # Alert before the end record, as the driver does: a crash in
        # between is delivered again. An alert already queued is delivered
        # again (at least once, same alert_id); one recorded delivered is not.
        queued = any(rec.kind == "alert" for rec in s.records)
        if s.alerts_pending:
            await _redeliver(opener, journal, s)
        elif not queued:
            last = next((rec.step for rec in reversed(s.records) if rec.step), None)
            detail = last.detail if last is not None else ""
            await _deliver(opener, journal, Alert(
                attempt_id=s.attempt_id, symbol=r.symbol,
                message=(f"ORPHANED {r.side.value} {r.amount:g} {r.symbol}: {detail}. Exposure "
                         "may be open without a stop-loss; check the account. (Found by "
                         "recovery.)"),
                state=State.ORPHANED, at=_now(), history=()))
    journal.end(s.attempt_id, s.state, _now())
    log.warning("attempt %s had reached %s; end record written by recovery", s.attempt_id,
                s.state.value, extra={"attempt_id": s.attempt_id, "state": s.state.value})


async def _redeliver(opener: Resumer, journal: JournalLog, s: AttemptSummary) -> None:
    """Deliver again every alert the journal queued and never recorded
    delivered (the process died during delivery, or the receiver failed)."""
    for data in s.alerts_pending:
        alert = alert_from_record(s.attempt_id, data, symbol=s.request.symbol, state=s.state,
                                  at=_now())
        await deliver_queued(opener.alerts, alert, opener.policy.alert_timeout,
                             _noter(journal, s.attempt_id), queue=False)


async def _deliver(opener: Resumer, journal: JournalLog, alert: Alert) -> None:
    await deliver_queued(opener.alerts, alert, opener.policy.alert_timeout,
                         _noter(journal, alert.attempt_id))


def _noter(journal: JournalLog, attempt_id: str) -> Note:
    def note(kind: str, data: dict[str, Any]) -> None:
        journal.note(attempt_id, kind, _now(), data)

    return note


async def _lookup(opener: Resumer, symbol: str, client_id: str,
                  order_id: str | None) -> OrderSnapshot | None:
    return await look_up_order(opener.adapter, opener.policy, symbol, client_id, order_id)


def _fire(journal: JournalLog, recorder: Recorder, a: Attempt, trigger: Trigger, facts: Facts,
          detail: str) -> None:
    step = recorder.fire(a, trigger, facts.at(_now()), evidence=Source.JOURNAL, detail=detail)
    journal.transition(a.attempt_id, step.at, encode_step(step, a.facts))


def _now() -> float:
    return asyncio.get_running_loop().time()
