"""Graphviz: the DOT source of a diagram, and its SVG through the ``dot`` binary.

``dot`` is a *system* package (``apt-get install graphviz``). Graphviz's SVG
depends on its version and fonts, so an SVG is not compared byte for byte:
it carries the SHA-256 of the DOT it was rendered from.
"""

from __future__ import annotations

import hashlib
import html
import re
import shutil
import subprocess
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from fsm.diagrams.model import (
    _DIM,
    _FONT,
    _GENERATED,
    _OFF_TABLE,
    _PATH,
    _PATH_FILL,
    _SPINE_END,
    INITIAL,
    REGENERATE,
    _colours,
    _Edge,
    _meaning,
    _path_states,
    _states,
    _Step,
    _terminals,
)
from fsm.table import TERMINAL, State

__all__ = ["INSTALL_DOT", "DotFailed", "DotMissing", "find_dot", "render_svg"]

#: What to tell someone whose machine has no ``dot``.
INSTALL_DOT = (
    "Graphviz `dot` was not found on PATH, so no SVG was rendered "
    "(the Mermaid Markdown and the DOT source need nothing and were written). "
    "Install Graphviz and run the command again: "
    "`sudo apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS), "
    "`choco install graphviz` (Windows); see https://graphviz.org/download/"
)


# -- DOT ---------------------------------------------------------------------------


def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _h(text: str) -> str:
    """Text for a DOT HTML-like label."""
    return html.escape(text, quote=True)


def _attrs(**kw: str) -> str:
    """DOT attributes; values starting with ``<`` are HTML-like labels."""
    parts = []
    for k, v in kw.items():
        parts.append(f"{k}={v}" if v.startswith("<") else f"{k}={_q(v)}")
    return "[" + ", ".join(parts) + "]"


def _wrap(text: str, width: int = 46) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]


def _guards_html(guards: Sequence[str], colour: str) -> str:
    if not guards:
        return ""
    inner = "<br/>".join(_h(g) for g in guards)
    return f'<br/><font point-size="9" color="{colour}"><i>{inner}</i></font>'


def _spine(edges: Sequence[_Edge]) -> list[_Edge]:
    """The shortest run of edges from the initial state to ``PROTECTED`` (the
    success path), found breadth-first in table order; drawn straight down."""
    best: dict[State, list[_Edge]] = {INITIAL: []}
    frontier = [INITIAL]
    while frontier and _SPINE_END not in best:
        nxt: list[State] = []
        for state in frontier:
            for e in edges:
                if e.source is state and e.row.dest not in best:
                    best[e.row.dest] = [*best[state], e]
                    nxt.append(e.row.dest)
        frontier = nxt
    return best.get(_SPINE_END, [])


def _dot_source(
    stem: str, title: str, edges: Sequence[_Edge], steps: Sequence[_Step] | None
) -> str:
    path_mode = steps is not None
    spine = _spine(edges)
    spine_states = {INITIAL} | {e.row.dest for e in spine}
    spine_edges = {(e.index, e.source) for e in spine}
    visited, final = _path_states(steps)
    out = [
        "// " + _GENERATED.format(cmd=REGENERATE, extra=""),
        f"digraph {_q(stem)} {{",
        "  " + "graph " + _attrs(
            label=f"<<b>{_h(title)}</b>>", labelloc="t", fontsize="18", fontname=_FONT,
            rankdir="TB", nodesep="0.5", ranksep="0.55",
        ) + ";",
        "  node " + _attrs(shape="box", style="rounded,filled", fillcolor="white",
                           color="#37474f", fontname=_FONT, fontsize="12", margin="0.15,0.08")
        + ";",
        "  edge " + _attrs(fontname=_FONT, fontsize="10", color="#37474f",
                           arrowsize="0.8") + ";",
        "",
        "  // states (terminal: double border, coloured by what they mean for the money)",
        "  " + _q("__start__") + " " + _attrs(shape="circle", style="filled", fillcolor="black",
                                              color="black", label="", width="0.18",
                                              fixedsize="true", group="spine") + ";",
    ]
    for s in _states():
        kw = _node_attrs(s, s in spine_states, visited if path_mode else None, final)
        out.append(f"  {_q(s.value)} {_attrs(**kw)};")
    out += [
        "",
        "  // transitions: one edge per (row, source), in table order",
        f"  {_q('__start__')} -> {_q(INITIAL.value)}"
        + (f" {_attrs(color=_PATH, penwidth='2')}" if path_mode and steps else "") + ";",
        *_edge_lines(edges, steps, spine_edges),
        "",
        "  // legend",
        "  " + _q("legend") + " " + _legend_dot(path_mode) + ";",
        # Keep the legend below everything else.
        f"  {{ rank=sink; {_q('legend')}; }}",
        "}",
    ]
    return "\n".join(out) + "\n"


def _node_attrs(
    s: State, on_spine: bool, visited: set[State] | None, final: State | None
) -> dict[str, str]:
    """One state's attributes; ``visited`` is ``None`` when no path is drawn."""
    kw: dict[str, str] = {"group": "spine"} if on_spine else {}
    if s in TERMINAL:
        fill, stroke, _ = _colours(s)
        kw.update(fillcolor=fill, color=stroke, peripheries="2",
                  label=f'<<b>{_h(s.value)}</b><br/><font point-size="9">terminal</font>>')
    else:
        kw.update(label=f"<<b>{_h(s.value)}</b>>")
    if visited is not None:
        if s in visited:
            kw.update(color=_PATH, penwidth="3" if s is final else "2")
            if s not in TERMINAL:
                kw.update(fillcolor=_PATH_FILL)
        else:
            kw.update(fontcolor=_DIM, color=_DIM)
    kw["tooltip"] = _meaning(s) if s in TERMINAL else s.value
    return kw


def _edge_lines(
    edges: Sequence[_Edge], steps: Sequence[_Step] | None,
    spine_edges: set[tuple[int, State]],
) -> list[str]:
    """Every table edge (dimmed when a path is drawn and did not take it, one
    edge per step when it did), then the steps no row explains."""
    path_mode = steps is not None
    by_edge: dict[int, list[_Step]] = {}
    for sp in steps or ():
        if sp.edge_index is not None:
            by_edge.setdefault(sp.edge_index, []).append(sp)
    out = []
    for k, e in enumerate(edges):
        src, dst = _q(e.source.value), _q(e.row.dest.value)
        tip = e.row.why
        weight = {"weight": "8"} if (e.index, e.source) in spine_edges else {}
        taken = by_edge.get(k)
        if not taken:
            colour = _DIM if path_mode else "#37474f"
            gcol = _DIM if path_mode else "#546e7a"
            label = f"<{_h(e.row.trigger.value)}{_guards_html(e.row.guards, gcol)}>"
            extra = {"color": colour, "fontcolor": colour} if path_mode else {}
            out.append(f"  {src} -> {dst} {_attrs(label=label, tooltip=tip, **weight, **extra)};")
            continue
        for sp in taken:
            out.append(f"  {src} -> {dst} {_step_edge_attrs(sp, tip, weight)};")
    for sp in steps or ():
        if sp.edge_index is None:
            out.append(
                f"  {_q(sp.step.source.value)} -> {_q(sp.step.dest.value)} "
                f"{_step_edge_attrs(sp, 'no row of TABLE explains this step')};"
            )
    return out


def _step_edge_attrs(s: _Step, tip: str, extra: Mapping[str, str] | None = None) -> str:
    st = s.step
    off = s.edge_index is None
    colour = _OFF_TABLE if off else _PATH
    head = f"({s.number}) {st.trigger.value}" + (" — NOT IN TABLE" if off else "")
    ev = st.evidence.value if st.evidence is not None else "-"
    detail = "<br/>".join(_h(line) for line in _wrap(f"via {ev}: {st.detail}"))
    label = (f'<<b>{_h(head)}</b>{_guards_html(s.guard_names, colour)}'
             f'<br/><font point-size="9">{detail}</font>>')
    kw = {"label": label, "color": colour, "fontcolor": colour, "penwidth": "2.5",
          "tooltip": tip}
    if off:
        kw["style"] = "dashed"
    kw.update(extra or {})
    return _attrs(**kw)


def _legend_dot(path_mode: bool) -> str:
    rows = ['<tr><td colspan="2" align="left"><b>Terminal states: what they mean for the '
            'money</b></td></tr>']
    for s in _terminals():
        fill, _, _ = _colours(s)
        rows.append(f'<tr><td bgcolor="{fill}"><b>{_h(s.value)}</b></td>'
                    f'<td align="left">{_h(_meaning(s))}</td></tr>')
    how = ("Edges: trigger, then the guards that must all hold (in italics). "
           "Double border: terminal state.")
    rows.append(f'<tr><td colspan="2" align="left"><font point-size="9">{_h(how)}'
                "</font></td></tr>")
    if path_mode:
        p = ("Orange: the path this attempt took, numbered in order, each step with the "
             "evidence that fired it. Grey: transitions not taken.")
        rows.append(f'<tr><td colspan="2" align="left"><font point-size="9" '
                    f'color="{_PATH}">{_h(p)}</font></td></tr>')
    table = ('<<table border="0" cellborder="1" cellspacing="0" cellpadding="6" '
             'color="#90a4ae">' + "".join(rows) + "</table>>")
    return _attrs(shape="plaintext", style="", fillcolor="white", label=table,
                  fontsize="10", tooltip="legend")


# -- SVG through Graphviz -----------------------------------------------------------------


class DotMissing(RuntimeError):
    """The Graphviz ``dot`` binary is not installed."""

    def __init__(self) -> None:
        super().__init__(INSTALL_DOT)


class DotFailed(RuntimeError):
    """``dot`` ran and failed."""


def find_dot() -> str | None:
    """The path of the Graphviz ``dot`` binary, or ``None``."""
    return shutil.which("dot")


_STAMP = re.compile(r"<!-- fsm\.diagrams: rendered from (\S+) sha256=([0-9a-f]{64}) -->")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def render_svg(dot_source: str, dot_name: str, dot_binary: str | None = None) -> str:
    """SVG rendered by ``dot``, stamped with the SHA-256 of its DOT source.

    Raises :class:`DotMissing` (with the install command) when ``dot`` is
    absent and :class:`DotFailed` when it fails.
    """
    binary = dot_binary or find_dot()
    if binary is None:
        raise DotMissing()
    proc = subprocess.run(
        [binary, "-Tsvg"], input=dot_source.encode("utf-8"), capture_output=True,
        check=False, timeout=60,
    )
    if proc.returncode != 0:
        raise DotFailed(f"dot -Tsvg failed on {dot_name} ({proc.returncode}): "
                        f"{proc.stderr.decode('utf-8', 'replace').strip()}")
    svg = proc.stdout.decode("utf-8")
    stamp = f"<!-- fsm.diagrams: rendered from {dot_name} sha256={_sha(dot_source)} -->"
    head, _, rest = svg.partition("\n")
    if head.startswith("<?xml"):
        return f"{head}\n{stamp}\n{rest}"
    return f"{stamp}\n{svg}"


def _svg_problem(svg_path: Path, dot_name: str, dot_source: str) -> str | None:
    if not svg_path.exists():
        return f"{svg_path}: missing"
    m = _STAMP.search(svg_path.read_text(encoding="utf-8"))
    if m is None:
        return f"{svg_path}: not rendered by fsm.diagrams (no source stamp)"
    if m.group(2) != _sha(dot_source):
        return f"{svg_path}: rendered from an older {dot_name}"
    return None
