"""The ``python -m fsm diagrams`` subcommand: write or check ``diagrams/``.

Wired into :mod:`fsm.__main__` by one line, next to ``demo``::

    from fsm import cli_diagrams
    cli_diagrams.add_parser(sub)             # registers "diagrams"

``add_parser`` sets ``handler=run`` (and ``func=run``) as parser defaults,
so ``args.handler(args)`` dispatches to :func:`run`, which returns the exit
code.

``python -m fsm diagrams`` renders the lifecycle and the incident paths into
``diagrams/`` (relative to the current directory; run it from the repository
root). ``--check`` writes nothing: it exits 1 and prints what drifted and the
command to regenerate when the committed files do not match the code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_OUT", "add_parser", "run"]

DEFAULT_OUT = Path("diagrams")


def add_parser(subparsers: Any) -> None:
    """Register the ``diagrams`` subcommand on an argparse subparsers object."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "diagrams",
        help="render the lifecycle diagrams (Mermaid, DOT, SVG) from the table",
        description=(
            "Render the lifecycle state diagram and the incident's two paths from "
            "fsm.table.TABLE: Mermaid in Markdown, Graphviz DOT, and SVG when the "
            "Graphviz `dot` binary is installed. With --check, write nothing and exit "
            "1 if the committed files do not match the code."
        ),
    )
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
        help=f"directory to write or check (default: {DEFAULT_OUT}/)",
    )
    p.add_argument(
        "--check", action="store_true",
        help="compare with a fresh rendering without writing; exit 1 on drift",
    )
    p.set_defaults(handler=run, func=run)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the process exit code."""
    from fsm import diagrams

    out: Path = args.out
    regen = diagrams.regenerate_command(out)
    if args.check:
        problems = diagrams.check(out)
        if problems:
            print(f"diagrams in {out}/ are out of date with the code:", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            print(f"Regenerate them with: {regen}", file=sys.stderr)
            return 1
        print(f"diagrams in {out}/ match the code")
        return 0

    try:
        report = diagrams.write(out)
    except diagrams.DotFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in report.written:
        print(f"wrote {path}")
    print(f"{len(report.unchanged)} file(s) already up to date")
    if report.svg_skipped:
        print(diagrams.INSTALL_DOT, file=sys.stderr)
        for path in report.stale_svgs:
            print(f"warning: {path} is now older than its DOT source; "
                  f"install Graphviz and run `{regen}` again", file=sys.stderr)
    return 0
