"""Command line: ``python -m fsm demo | diagrams | journal | reconcile``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fsm.cli_parser import OneLineParser, run_handler

__all__ = ["OneLineParser", "main", "run_handler"]


def _build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m fsm",
        description="Open futures positions safely: demo, diagrams, journal and reconciliation.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="replay the AVLUSDT incident on the simulated exchange")
    demo.set_defaults(handler=_run_demo)
    from fsm import cli_diagrams, cli_journal

    cli_diagrams.add_parser(sub)
    cli_journal.add_parsers(sub)
    return parser


def _run_demo(_args: argparse.Namespace) -> int:
    from fsm.demo import main as demo_main

    return demo_main()


def main(argv: Sequence[str] | None = None) -> int:
    """The ``safe-opener`` command; returns the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # transitions logs every callback at INFO; our own log says what matters.
    logging.getLogger("transitions").setLevel(logging.WARNING)
    from fsm.redact import RedactingFilter

    for h in logging.getLogger().handlers:  # every logger's lines, ccxt's too
        h.addFilter(RedactingFilter())
    return run_handler(args)


if __name__ == "__main__":
    sys.exit(main())
