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
    p.add_argument(
        "--journal", type=Path, metavar="PATH",
        help="with --attempt: render the path of a journalled attempt instead",
    )
    p.add_argument(
        "--attempt", metavar="ID",
        help="attempt id (or unique prefix) in --journal whose path to render",
    )
    p.set_defaults(handler=run, func=run)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the process exit code."""
    from fsm import diagrams

    if getattr(args, "attempt", None) or getattr(args, "journal", None):
        return _run_attempt(args)
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
    except OSError as exc:
        print(f"error: cannot write {out}/: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for path in report.written:
        print(f"wrote {path}")
    print(f"{len(report.unchanged)} file(s) already up to date")
    if report.svg_skipped:
        print(diagrams.INSTALL_DOT, file=sys.stderr)
        for path in report.stale_svgs:
            print(f"warning: {path} is now older than its DOT source; "
                  f"install Graphviz and run `{regen}` again", file=sys.stderr)
    return 0


def _run_attempt(args: argparse.Namespace) -> int:
    """Render the path one journalled attempt took: ``attempt-<id>.md``,
    ``.dot`` and (with Graphviz) ``.svg`` in ``--out``."""
    from fsm import diagrams
    from fsm.cli_journal import OPEN_ERRORS, fail
    from fsm.journal import Journal

    if not args.journal or not args.attempt:
        return fail("--journal and --attempt go together")
    try:
        # Read-only (SQLite mode=ro): the file is left exactly as it was.
        with Journal(args.journal, read_only=True) as journal:
            ids = sorted({r.attempt_id for r in journal.read()
                          if r.attempt_id.startswith(args.attempt)})
            if len(ids) != 1:
                what = "no attempt" if not ids else f"{len(ids)} attempts"
                return fail(f"{what} in {args.journal} match {args.attempt!r}")
            steps = diagrams.steps_from_records(journal.read(ids[0]))
    except FileNotFoundError:
        return fail(f"no journal at {args.journal}")
    except OPEN_ERRORS as exc:
        return fail(exc)
    if not steps:
        print(f"error: attempt {ids[0]} has no transitions yet", file=sys.stderr)
        return 2
    rendered = diagrams.render_path(
        steps, stem=f"attempt-{ids[0]}", title=f"Attempt {ids[0]}",
        description=f"The path attempt {ids[0]} took, read from the journal {args.journal}.",
    )
    report = diagrams.write(args.out, [rendered])
    for path in report.written:
        print(f"wrote {path}")
    if report.svg_skipped:
        print(diagrams.INSTALL_DOT, file=sys.stderr)
    return 0
