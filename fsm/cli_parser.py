"""What every subcommand shares: a parser whose usage errors are one line,
and a handler runner whose failures are one redacted line.

Its own module so that ``fsm.__main__`` and the stand-alone entry points
(:func:`fsm.cli_journal.main`) both use it without importing each other.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

__all__ = ["OneLineParser", "run_handler"]


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error in one line (and ``--help`` to ask)."""

    def error(self, message: str) -> NoReturn:
        """Print the one-line error and exit 2, without argparse's usage dump."""
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
