"""Lifecycle diagrams rendered from :data:`fsm.table.TABLE`, and the path of one attempt.

Reviewers read state diagrams, not code, so the diagrams are built from the
same table the runtime recorder is built from, and a test compares the
committed files with a fresh rendering byte for byte (``--check``).

Outputs, for the lifecycle and for any attempt's path:

* Markdown with a Mermaid ``stateDiagram-v2`` (code hosts render it), a
  legend of what each terminal state means for the money, and a table;
* Graphviz DOT source;
* SVG, rendered from the DOT by the Graphviz ``dot`` binary, a *system*
  package (``apt-get install graphviz``). When ``dot`` is absent the SVG step
  is skipped with a message saying how to install it; Markdown and DOT need
  nothing. Graphviz's SVG depends on its version and fonts, so the SVG is not
  compared byte for byte: it carries the SHA-256 of the DOT it was rendered
  from, and the check compares that.

How the ``transitions`` library fits: the text is rendered from the table
directly, not through ``transitions.extensions.GraphMachine``. Its default
graph engine is ``"pygraphviz"``, which, when that package is missing, falls
back to ``"graphviz"`` and then to Mermaid with only a log warning; both
Graphviz engines need Python packages we do not want as runtime dependencies,
and none of its engines draws a legend, terminal marks or a numbered path.
:func:`transitions_mermaid` does build a ``GraphMachine`` from the same table,
with the engine set explicitly to ``"mermaid"`` (no dependency, no fallback),
and the tests check that its edges are exactly the edges drawn here.

Path rendering (:func:`render_path`) takes an :class:`~fsm.attempt.Attempt`
or any sequence of its :class:`~fsm.attempt.Transition` records, so a
journalled attempt renders the same way once its records are decoded back
(:func:`steps_from_records`). Mermaid can style only nodes (``classDef``), so
in the Markdown the path is shown by coloured states and by step numbers on
the edge labels; the DOT/SVG draws the path's edges themselves, numbered and
coloured, with the evidence that fired each one.

Output is deterministic: states in :class:`~fsm.table.State` order, rows in
table order, no timestamps; the incident paths come from the simulator on a
virtual-time loop with fixed attempt ids.

The package, one room per concern:

* :mod:`fsm.diagrams.model`: the table as edges, a path's steps, the palette;
* :mod:`fsm.diagrams.mermaid`: Markdown with Mermaid, and ``transitions``' view;
* :mod:`fsm.diagrams.dot`: Graphviz DOT, and SVG through ``dot``;
* :mod:`fsm.diagrams.writer`: the rendered files, written or checked;
* :mod:`fsm.diagrams.incidents`: the incident's two paths (from
  :mod:`adapters.simulated.incident`).
"""

from fsm.diagrams.dot import INSTALL_DOT, DotFailed, DotMissing, find_dot, render_svg
from fsm.diagrams.incidents import INCIDENTS, Incident, run_incident
from fsm.diagrams.mermaid import transitions_mermaid
from fsm.diagrams.model import LIFECYCLE, REGENERATE, steps_from_records
from fsm.diagrams.writer import (
    Rendered,
    WriteReport,
    check,
    regenerate_command,
    render_all,
    render_lifecycle,
    render_path,
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
    "Rendered",
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
