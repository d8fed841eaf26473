"""Open one protected position on Bybit demo trading (or testnet) through
:class:`adapters.ccxt.CcxtAdapter`, and print how the attempt ended.

Run from a checkout installed with ``pip install -e .``. Keys come from the
environment and never from the command line (shell history, process
lists)::

    export BYBIT_API_KEY=...        # a Bybit *demo trading* API key
    export BYBIT_API_SECRET=...
    python examples/bybit_demo_open.py --symbol BTC/USDT:USDT --side buy \\
        --amount 0.001 --stop-loss 90000

``BYBIT_TESTNET=1`` targets api-testnet.bybit.com instead of demo trading.
Without both keys the script refuses to run and sends nothing. It never
targets Bybit's live market: demo trading or testnet only.

Exit status: 0 PROTECTED, 1 any other terminal state (CLOSE_VERIFIED,
REJECTED, ORPHANED: read the printed history), 2 refused to start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

KEY_VAR = "BYBIT_API_KEY"
SECRET_VAR = "BYBIT_API_SECRET"
TESTNET_VAR = "BYBIT_TESTNET"


class MissingKeys(RuntimeError):
    """The API key or secret is not in the environment."""


def keys_from_env(env: dict[str, str] | os._Environ[str] = os.environ) -> tuple[str, str]:
    """The API key and secret from the environment (exits when missing)."""
    key, secret = env.get(KEY_VAR, "").strip(), env.get(SECRET_VAR, "").strip()
    if not key or not secret:
        raise MissingKeys(
            f"{KEY_VAR} and {SECRET_VAR} must be set to the keys of a Bybit demo-trading "
            f"(or, with {TESTNET_VAR}=1, testnet) account. Nothing was sent."
        )
    return key, secret


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--symbol", default="BTC/USDT:USDT", help="unified ccxt symbol (linear)")
    p.add_argument("--side", choices=("buy", "sell"), required=True)
    p.add_argument("--amount", type=float, required=True, help="contracts")
    p.add_argument("--stop-loss", type=float, required=True, help="stop trigger price")
    p.add_argument("--verify-timeout", type=float, default=10.0)
    p.add_argument("--close-timeout", type=float, default=10.0)
    p.add_argument(
        "--stream", action="store_true", help="also run the WebSocket position stream (ccxt pro)"
    )
    return p.parse_args(argv)


async def open_once(args: argparse.Namespace, key: str, secret: str, *, testnet: bool) -> int:
    # Imported here so that --help and the key check work even where the
    # exchange libraries are slow to import.
    """Open one position and print how the attempt ended."""
    import ccxt.pro as ccxt_pro

    from adapters.ccxt import CcxtAdapter
    from fsm import Alert, OpenRequest, Policy, PositionOpener, State

    exchange: Any = ccxt_pro.bybit({"apiKey": key, "secret": secret, "enableRateLimit": True})
    if testnet:
        exchange.set_sandbox_mode(True)
    else:
        exchange.enable_demo_trading(True)
    adapter = CcxtAdapter(exchange)

    def on_alert(alert: Alert) -> None:
        print(f"ALERT {alert.attempt_id} {alert.symbol}: {alert.message}", file=sys.stderr)

    try:
        await adapter.prepare()  # markets now, not on the critical path
        if args.stream:
            adapter.start_stream([args.symbol])
        opener = PositionOpener(
            adapter,
            policy=Policy(verify_timeout=args.verify_timeout, close_timeout=args.close_timeout),
            alerts=on_alert,
        )
        attempt = await opener.open(
            OpenRequest(
                symbol=args.symbol, side=args.side, amount=args.amount, stop_loss=args.stop_loss
            )
        )
        print(f"attempt {attempt.attempt_id}: {attempt.state.value}")
        for step in attempt.history:
            print("  ", step.describe())
        return 0 if attempt.state is State.PROTECTED else 1
    finally:
        await adapter.stop_stream()
        await exchange.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Open once on Bybit's demo or testnet; returns the exit code."""
    args = parse_args(argv)
    try:
        key, secret = keys_from_env()
    except MissingKeys as exc:
        print(f"refusing to run: {exc}", file=sys.stderr)
        return 2
    testnet = os.environ.get(TESTNET_VAR, "") == "1"
    return asyncio.run(open_once(args, key, secret, testnet=testnet))


if __name__ == "__main__":
    raise SystemExit(main())
