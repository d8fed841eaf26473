"""What is written: the rendered text of each diagram, and writing or
checking ``diagrams/`` against a fresh rendering."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs

from fsm.attempt import Attempt, Transition
from fsm.diagrams import dot as _dotmod
from fsm.diagrams.dot import _dot_source, _svg_problem, render_svg
from fsm.diagrams.incidents import INCIDENTS, run_incident
from fsm.diagrams.mermaid import _comment, _legend_md, _mermaid, _outcome, _steps_md, _table_md
from fsm.diagrams.model import (
    _GENERATED,
    LIFECYCLE,
    REGENERATE,
    _current_table,
    _edges,
    _match,
)
from fsm.table import Row

__all__ = [
    "Rendered",
    "WriteReport",
    "check",
    "regenerate_command",
    "render_all",
    "render_lifecycle",
    "render_path",
    "write",
]


# -- rendered output ----------------------------------------------------------------


@attrs.frozen
class Rendered:
    """The text outputs of one diagram: ``<stem>.md`` and ``<stem>.dot``."""

    stem: str
    markdown: str
    dot: str

    def files(self) -> dict[str, str]:
        """File name → text, for the Markdown and the DOT."""
        return {f"{self.stem}.md": self.markdown, f"{self.stem}.dot": self.dot}


def render_lifecycle(table: Sequence[Row] | None = None) -> Rendered:
    """The lifecycle of every attempt, as the table defines it."""
    rows = _current_table(table)
    edges = _edges(rows)
    title = "Lifecycle of one attempt to open a position"
    md = "\n".join(
        [
            _comment(_GENERATED.format(cmd=REGENERATE, extra="")),
            f"# {title}",
            "",
            "Every state an attempt can be in and every transition the table allows. "
            "An edge reads `trigger [guard & guard]`: the trigger moves the attempt "
            "only if every named guard holds over the evidence collected so far. "
            "Terminal states end in `[*]` and are coloured by what they mean for the "
            "money. See [README.md](README.md) for how to read this and "
            "[lifecycle.svg](lifecycle.svg) for the Graphviz rendering.",
            "",
            "```mermaid",
            *_mermaid(edges, steps=None),
            "```",
            "",
            *_legend_md(),
            "",
            *_table_md(rows),
        ]
    )
    dot = _dot_source(LIFECYCLE, title, edges, steps=None)
    return Rendered(LIFECYCLE, md + "\n", dot)


def render_path(
    path: Attempt | Iterable[Transition],
    *,
    stem: str = "path",
    title: str | None = None,
    description: str = "",
    table: Sequence[Row] | None = None,
) -> Rendered:
    """The lifecycle with the path of one attempt highlighted, in order.

    ``path`` is an :class:`~fsm.attempt.Attempt` (its ``history``) or any
    sequence of its :class:`~fsm.attempt.Transition` records, e.g. ``steps_from_records(
    journal.for_attempt(attempt_id))``. Each step is numbered from 1 and
    labelled with the evidence that fired it. A step no table row explains
    (a broken law L7, or a journal written by another table) is drawn as a
    dashed violet edge marked "not in TABLE" rather than hidden.
    """
    rows = _current_table(table)
    edges = _edges(rows)
    history: Sequence[Transition]
    attempt_words = ""
    if isinstance(path, Attempt):
        history = path.history
        r = path.request
        attempt_words = (f"attempt `{path.attempt_id}` ({r.side.value} {r.amount:g} "
                         f"{r.symbol})")
    else:
        history = list(path)
    steps = _match(history, edges)
    final = steps[-1].step.dest if steps else None
    if title is None:
        title = "Path of " + (attempt_words.replace("`", "") or "one attempt")
        if final is not None:
            title += f" → {final.value}"

    md_lines = [
        _comment(_GENERATED.format(
            cmd=REGENERATE, extra=" and the recorded path of one attempt")),
        f"# {title}",
        "",
    ]
    if description:
        md_lines += [description, ""]
    md_lines += [
        "Mermaid can style only states, not edges: the states this attempt went "
        "through are orange, the state it ended in has a thick orange border, and "
        "the numbers in brackets on the edge labels give the order of the steps. "
        f"The Graphviz rendering ([{stem}.svg]({stem}.svg)) draws the path's edges "
        "themselves in orange, numbered, with the evidence that fired each one.",
        "",
        "```mermaid",
        *_mermaid(edges, steps=steps),
        "```",
        "",
        "## The path, step by step",
        "",
        *_steps_md(steps),
        "",
    ]
    if final is not None:
        md_lines += ["## Outcome", "", _outcome(final, attempt_words), ""]
    md_lines += _legend_md()
    dot = _dot_source(stem, title, edges, steps=steps)
    return Rendered(stem, "\n".join(md_lines) + "\n", dot)


def render_all(table: Sequence[Row] | None = None) -> list[Rendered]:
    """Everything committed in ``diagrams/``: the lifecycle and the incident paths."""
    out = [render_lifecycle(table)]
    for inc in INCIDENTS:
        out.append(render_path(run_incident(inc), stem=inc.stem, title=inc.title,
                               description=inc.description, table=table))
    return out


# -- writing and checking -------------------------------------------------------------------


def regenerate_command(out_dir: Path | None = None) -> str:
    """The command that regenerates the diagrams in ``out_dir``."""
    if out_dir is None or Path(out_dir) == Path("diagrams"):
        return REGENERATE
    return f"{REGENERATE} --out {out_dir}"


@attrs.frozen
class WriteReport:
    """What :func:`write` did, file by file."""
    written: tuple[Path, ...]
    unchanged: tuple[Path, ...]
    svg_skipped: tuple[Path, ...]  # not rendered: dot is missing
    stale_svgs: tuple[Path, ...]  # left older than their DOT because dot is missing


def write(out_dir: Path, rendered: Sequence[Rendered] | None = None,
          *, dot_binary: str | None = None) -> WriteReport:
    """Write every diagram into ``out_dir``; files already up to date are not touched.

    An SVG is re-rendered only when its DOT source changed (its stamp does not
    match), so running this on a machine with another Graphviz version does not
    churn the committed SVGs. Without ``dot`` the SVGs are skipped (see
    :data:`INSTALL_DOT`); the Markdown and DOT are written regardless.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = list(rendered) if rendered is not None else render_all()
    binary = dot_binary or _dotmod.find_dot()
    written: list[Path] = []
    unchanged: list[Path] = []
    skipped: list[Path] = []
    stale: list[Path] = []
    for r in items:
        for name, text in r.files().items():
            p = out_dir / name
            if p.exists() and p.read_text(encoding="utf-8") == text:
                unchanged.append(p)
            else:
                p.write_text(text, encoding="utf-8", newline="\n")
                written.append(p)
        svg_path = out_dir / f"{r.stem}.svg"
        dot_name = f"{r.stem}.dot"
        if _svg_problem(svg_path, dot_name, r.dot) is None:
            unchanged.append(svg_path)
        elif binary is None:
            skipped.append(svg_path)
            if svg_path.exists():
                stale.append(svg_path)
        else:
            svg_path.write_text(render_svg(r.dot, dot_name, binary), encoding="utf-8",
                                newline="\n")
            written.append(svg_path)
    return WriteReport(tuple(written), tuple(unchanged), tuple(skipped), tuple(stale))


def check(out_dir: Path, rendered: Sequence[Rendered] | None = None,
          *, diff_lines: int = 40) -> list[str]:
    """Compare ``out_dir`` with a fresh rendering, writing nothing.

    Returns one message per problem (empty: up to date). Markdown and DOT are
    compared byte for byte (with a short unified diff); each SVG must carry
    the stamp of the current DOT. Needs no ``dot``.
    """
    out_dir = Path(out_dir)
    items = list(rendered) if rendered is not None else render_all()
    problems: list[str] = []
    for r in items:
        for name, text in r.files().items():
            p = out_dir / name
            if not p.exists():
                problems.append(f"{p}: missing")
                continue
            old = p.read_text(encoding="utf-8")
            if old != text:
                diff = list(difflib.unified_diff(
                    old.splitlines(), text.splitlines(),
                    fromfile=f"{p} (committed)", tofile=f"{p} (rendered from the code)",
                    n=1, lineterm=""))
                if len(diff) > diff_lines:
                    diff = [*diff[:diff_lines], f"... ({len(diff) - diff_lines} more diff lines)"]
                problems.append(f"{p}: differs from the code\n" + "\n".join(diff))
        svg = _svg_problem(out_dir / f"{r.stem}.svg", f"{r.stem}.dot", r.dot)
        if svg is not None:
            problems.append(svg)
    return problems
