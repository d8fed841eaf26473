"""Command line: ``python -m fsm demo | diagrams | journal | reconcile``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["OneLineParser", "main", "run_handler"]


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error in one line (and ``--help`` to ask)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def run_handler(args: argparse.Namespace) -> int:
    """Run a subcommand's handler; any error it lets escape is one redacted
    line on stderr and exit code 2 (with ``-v``, the traceback goes to the
    log, redacted too), never a bare traceback."""
    from fsm.redact import redact

    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if getattr(args, "verbose", False):
            logging.getLogger("fsm").exception("the command failed")
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(redact(f"error: {text}"), file=sys.stderr)
        return 2
    return code


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
