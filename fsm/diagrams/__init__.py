"""Lifecycle diagrams rendered from :data:`fsm.table.TABLE`, and the path of one attempt.

The renderer lives in :mod:`fsm.diagrams.model`; every public name is
importable from ``fsm.diagrams``.
"""

from fsm.diagrams.model import (
    INCIDENTS,
    INSTALL_DOT,
    LIFECYCLE,
    REGENERATE,
    DotFailed,
    DotMissing,
    Incident,
    PathStep,
    Rendered,
    StepLike,
    WriteReport,
    check,
    find_dot,
    regenerate_command,
    render_all,
    render_lifecycle,
    render_path,
    render_svg,
    run_incident,
    steps_from_records,
    transitions_mermaid,
    write,
)

__all__ = [
    "INCIDENTS",
    "INSTALL_DOT",
    "LIFECYCLE",
    "REGENERATE",
    "DotFailed",
    "DotMissing",
    "Incident",
    "PathStep",
    "Rendered",
    "StepLike",
    "WriteReport",
    "check",
    "find_dot",
    "regenerate_command",
    "render_all",
    "render_lifecycle",
    "render_path",
    "render_svg",
    "run_incident",
    "steps_from_records",
    "transitions_mermaid",
    "write",
]
