"""One bot process of a fleet: ``python -m tests.fleet_worker '<json>'``.

It opens the journal (SQLite path or PostgreSQL DSN) and reaches the
exchange emulator over HTTP, prints ``ready``, waits for a line on stdin
(so that a test can release every process at once), then, by ``mode``:

* ``open``: one ``open()``;
* ``recover``: one ``recover()``;
* ``loop``: ``recover()``, then ``count`` opens one after another.

Each outcome is one JSON line on stdout (``{"state": ...}`` or
``{"error": <exception class>, "message": ...}``), flushed at once, so a
test that kills the process knows everything it finished.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from fsm import OpenRequest, Policy, PositionOpener
from tests.emulator import HttpExchange
from tests.pg import open_journal


def _say(**what: Any) -> None:
    print(json.dumps(what), flush=True)


async def _guarded(label: str, aw: Any) -> Any:
    try:
        return await aw
    except Exception as exc:  # noqa: BLE001 - the outcome is what the test reads
        _say(step=label, error=type(exc).__name__, message=str(exc))
        return None


async def main(args: dict[str, Any]) -> None:
    journal = open_journal(args["journal"])
    policy = Policy(lease_duration=args.get("lease_duration", 2.0),
                    lease_renew=args.get("lease_renew", 0.5),
                    lease_wait=args.get("lease_wait", 30.0))
    opener = PositionOpener(HttpExchange(args["url"]), journal=journal, policy=policy)
    request = OpenRequest(symbol=args.get("symbol", "AVL/USDT:USDT"), side="buy",
                          amount=args.get("amount", 43), stop_loss=0.1290,
                          reference_price=0.1358)
    _say(ready=True, owner=opener.owner)
    await asyncio.to_thread(sys.stdin.readline)
    mode = args["mode"]
    if mode in ("recover", "loop"):
        done = await _guarded("recover", opener.recover())
        if done is not None:
            _say(step="recover", states=[a.state.value for a in done],
                 ids=[a.attempt_id for a in done])
    if mode in ("open", "loop"):
        for _ in range(args.get("count", 1)):
            a = await _guarded("open", opener.open(request))
            if a is not None:
                _say(step="open", state=a.state.value, id=a.attempt_id)
    journal.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
