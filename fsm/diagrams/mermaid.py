"""Markdown with a Mermaid ``stateDiagram-v2``: the legend, the table, the
steps of a path, and ``transitions``' own Mermaid view for the cross-check.

Mermaid can style only nodes (``classDef``), so a path is shown by coloured
states and by step numbers on the edge labels.
"""

from __future__ import annotations

from collections.abc import Sequence

from fsm.diagrams.model import (
    _PATH,
    _PATH_FILL,
    INITIAL,
    _colours,
    _current_table,
    _Edge,
    _meaning,
    _path_states,
    _states,
    _Step,
    _terminal_class,
    _terminals,
)
from fsm.table import TERMINAL, Row, State

__all__ = ["transitions_mermaid"]


def _outcome(final: State, attempt_words: str) -> str:
    who = (attempt_words[0].upper() + attempt_words[1:] if attempt_words
           else "The attempt") + " ended"
    if final in TERMINAL:
        return f"{who} in **{final.value}**: {_meaning(final)}."
    return f"{who} (so far) in **{final.value}**, which is not terminal."


# -- Markdown pieces ------------------------------------------------------------------


def _comment(text: str) -> str:
    return "<!-- " + text.replace("--", "- -") + " -->"


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _legend_md() -> list[str]:
    lines = [
        "## Terminal states: what they mean for the money",
        "",
        "| Terminal state | Colour | What it means for the money |",
        "|---|---|---|",
    ]
    for s in _terminals():
        lines.append(f"| `{s.value}` | {_colours(s)[2]} | {_cell(_meaning(s))} |")
    return lines


def _table_md(rows: Sequence[Row]) -> list[str]:
    lines = [
        "## The transition table",
        "",
        "In table order: when several rows share a trigger and a source, the first "
        "row whose guards all hold wins.",
        "",
        "| # | Trigger | From | To | Guards (all must hold) | Why |",
        "|---|---|---|---|---|---|",
    ]
    for i, row in enumerate(rows, start=1):
        srcs = ", ".join(f"`{s.value}`" for s in _states() if s in row.sources)
        guards = ", ".join(f"`{g}`" for g in row.guards) or "–"
        lines.append(
            f"| {i} | `{row.trigger.value}` | {srcs} | `{row.dest.value}` | {guards} "
            f"| {_cell(row.why)} |"
        )
    return lines


def _steps_md(steps: Sequence[_Step]) -> list[str]:
    if not steps:
        return ["The attempt has no recorded transitions."]
    t0 = steps[0].step.at
    lines = [
        "Times are seconds since the first step. *Evidence* is the source that "
        "decided the step (`ack`, `order`, `stream`, `rest`, `stop`, `close`, "
        "`clock` for a deadline, `journal` for a replay).",
        "",
        "| # | t (s) | From → to | Trigger | Guards that held | Evidence | What was seen |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        st = s.step
        move = f"`{st.source.value}` → `{st.dest.value}`"
        if s.edge_index is None:
            move += " **(not in TABLE)**"
        guards = ", ".join(f"`{g}`" for g in s.guard_names) or "–"
        ev = f"`{st.evidence.value}`" if st.evidence is not None else "–"
        lines.append(
            f"| {s.number} | +{st.at - t0:.3f} | {move} | `{st.trigger.value}` | {guards} "
            f"| {ev} | {_cell(st.detail)} |"
        )
    return lines


# -- Mermaid --------------------------------------------------------------------------


def _mermaid(edges: Sequence[_Edge], steps: Sequence[_Step] | None) -> list[str]:
    visited, final = _path_states(steps)
    return [
        "stateDiagram-v2",
        *_mermaid_class_defs(steps is not None, final),
        f"{_IND}[*] --> {INITIAL.value}",
        *_mermaid_edges(edges, steps or ()),
        *(f"{_IND}{s.value} --> [*]" for s in _terminals()),
        *_mermaid_classes(visited, final),
    ]


_IND = "    "


def _mermaid_class_defs(path_mode: bool, final: State | None) -> list[str]:
    """The styles: one per terminal state, and the path's when drawing one."""
    lines = []
    for s in _terminals():
        fill, stroke, _ = _colours(s)
        lines.append(f"{_IND}classDef {_terminal_class(s)} fill:{fill},stroke:{stroke},"
                     "stroke-width:3px")
    if path_mode:
        lines.append(f"{_IND}classDef visited fill:{_PATH_FILL},stroke:{_PATH},stroke-width:2px")
        if final is not None:
            fill = _colours(final)[0] if final in TERMINAL else _PATH_FILL
            lines.append(f"{_IND}classDef reached fill:{fill},stroke:{_PATH},stroke-width:5px")
    return lines


def _mermaid_edges(edges: Sequence[_Edge], steps: Sequence[_Step]) -> list[str]:
    """Every table edge, numbered by the steps that took it, then the steps no
    row explains."""
    numbers: dict[int, list[int]] = {}
    for sp in steps:
        if sp.edge_index is not None:
            numbers.setdefault(sp.edge_index, []).append(sp.number)
    lines = []
    for k, e in enumerate(edges):
        prefix = "".join(f"({n})" for n in numbers.get(k, ()))
        label = f"{prefix} {e.label}" if prefix else e.label
        lines.append(f"{_IND}{e.source.value} --> {e.row.dest.value}: {label}")
    for sp in steps:
        if sp.edge_index is None:
            lines.append(f"{_IND}{sp.step.source.value} --> {sp.step.dest.value}: "
                         f"({sp.number}) {sp.step.trigger.value} NOT IN TABLE")
    return lines


def _mermaid_classes(visited: set[State], final: State | None) -> list[str]:
    """Which style each state takes: reached, visited, or its terminal colour."""
    lines = []
    for s in _states():
        if s is final:
            cls = "reached"
        elif s in visited:
            cls = "visited"
        elif s in TERMINAL:
            cls = _terminal_class(s)
        else:
            continue
        lines.append(f"{_IND}class {s.value} {cls}")
    return lines


# -- transitions' own view, for the cross-check ------------------------------------------


def transitions_mermaid(table: Sequence[Row] | None = None) -> str:
    """The table as ``transitions`` itself draws it, engine set explicitly.

    ``GraphMachine``'s default engine is ``"pygraphviz"``; without that
    package it silently falls back to ``"graphviz"``, then to Mermaid. Setting
    ``graph_engine="mermaid"`` picks the engine that needs no package and
    cannot fall back. Used by the tests to check that our edges are the
    library's edges.
    """
    from transitions.extensions.diagrams import GraphMachine

    rows = _current_table(table)
    machine = GraphMachine(
        states=list(State),
        initial=INITIAL,
        transitions=[
            {
                "trigger": row.trigger.value,
                "source": [s for s in State if s in row.sources],
                "dest": row.dest,
                "conditions": list(row.guards),
            }
            for row in rows
        ],
        auto_transitions=False,
        graph_engine="mermaid",
        show_conditions=True,
        title="lifecycle",
    )
    return str(machine.get_graph().source)
