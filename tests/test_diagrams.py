"""The diagrams: rendered from the table, committed, and impossible to let drift.

* the committed files in diagrams/ match a fresh rendering (the drift test),
  and adding a transition without regenerating is reported as drift;
* the path of an attempt is drawn in order, with its evidence, on both of the
  incident's paths;
* the edges drawn are the edges of the runtime machine and of ``transitions``'
  own (explicitly chosen) Mermaid engine;
* SVG through Graphviz ``dot`` when it is installed, and a clear message when not.
"""

from __future__ import annotations

import argparse
import html
import logging
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import fsm.table
from adapters.port import Source
from fsm import MemoryJournal, OpenRequest, PositionOpener, State, Trigger
from fsm import diagrams as dg
from fsm.attempt import Attempt, Recorder, Transition
from fsm.cli_diagrams import run as cli_run
from fsm.diagrams import dot as dg_svg  # where find_dot is looked up
from fsm.diagrams.dot import _svg_problem
from fsm.diagrams.model import _DIM, _PATH
from fsm.table import TABLE, Row

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "diagrams"

NO_DOT = "Graphviz `dot` is not installed (a system package: `sudo apt-get install graphviz`)"

EXPECTED_PATHS = {
    "incident-protected": (
        State.PROTECTED,
        ["submit", "fetched", "verified", "protected"],
    ),
    "incident-rolled-back": (
        State.CLOSE_VERIFIED,
        ["submit", "fetched", "verified", "protect_failed", "close_sending", "close_verified"],
    ),
}


def _args(out: Path, check: bool) -> argparse.Namespace:
    return argparse.Namespace(out=out, check=check)


def _extra_row() -> Row:
    # A transition someone might add to the table without regenerating.
    return Row(Trigger.REJECT, frozenset({State.PLACED}), State.REJECTED,
               ("entry_refused",), "a late refusal of the create")


# -- the drift test -----------------------------------------------------------------


def test_committed_diagrams_match_the_code() -> None:
    problems = dg.check(COMMITTED)
    if problems:
        pytest.fail(
            "diagrams/ is out of date with fsm/table.py (or the driver's incident paths):\n"
            + "\n".join(f"- {p}" for p in problems)
            + f"\n\nRegenerate them from the repository root with:\n    {dg.REGENERATE}\n"
            "and commit the result.",
            pytrace=False,
        )


def test_drift_is_reported_when_a_transition_is_added_without_regenerating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fsm.table, "TABLE", (*TABLE, _extra_row()))
    problems = dg.check(COMMITTED, [dg.render_lifecycle()])
    joined = "\n".join(problems)
    assert any(p.startswith(f"{COMMITTED / 'lifecycle.md'}: differs") for p in problems), joined
    assert any(p.startswith(f"{COMMITTED / 'lifecycle.dot'}: differs") for p in problems), joined
    assert f"{COMMITTED / 'lifecycle.svg'}: rendered from an older lifecycle.dot" in problems
    # The diff names the new edge.
    assert "+    PLACED --> REJECTED: reject [entry_refused]" in joined
    assert '+  "PLACED" -> "REJECTED" [label=<reject' in joined


def test_check_command_fails_with_the_regenerate_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(COMMITTED, tmp_path / "diagrams")
    monkeypatch.chdir(tmp_path)
    assert cli_run(_args(Path("diagrams"), check=True)) == 0
    assert "match the code" in capsys.readouterr().out

    monkeypatch.setattr(fsm.table, "TABLE", (*TABLE, _extra_row()))
    before = {p.name: p.read_bytes() for p in (tmp_path / "diagrams").iterdir()}
    assert cli_run(_args(Path("diagrams"), check=True)) == 1
    err = capsys.readouterr().err
    assert "diagrams/lifecycle.md: differs from the code" in err
    assert err.rstrip().endswith("Regenerate them with: python -m fsm diagrams")
    # --check writes nothing.
    assert {p.name: p.read_bytes() for p in (tmp_path / "diagrams").iterdir()} == before


def test_regenerating_fixes_the_drift(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(fsm.table, "TABLE", (*TABLE, _extra_row()))
    monkeypatch.setattr(dg_svg, "find_dot", lambda: None)  # no SVG needed for the text files
    rendered = [dg.render_lifecycle()]
    dg.write(tmp_path, rendered)
    assert [p for p in dg.check(tmp_path, rendered) if not p.endswith(".svg: missing")] == []


def test_rendering_is_deterministic() -> None:
    assert dg.render_all() == dg.render_all()


# -- the table's edges, three ways --------------------------------------------------


def _our_edges() -> list[tuple[str, str, str]]:
    md = dg.render_lifecycle().markdown
    return sorted(
        (m[1], m[2], m[3])
        for m in re.finditer(r"^    (\w+) --> (\w+): (.+)$", md, re.M)
    )


def test_edges_are_those_of_transitions_mermaid_engine(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="transitions"):
        source = dg.transitions_mermaid()
    # The engine was chosen, not fallen back to.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    theirs = sorted(
        (m[1], m[2], label)
        for m in re.finditer(r"^\s*(\w+) --> (\w+): (.+)$", source, re.M)
        for label in m[3].split(" | ")
    )
    assert theirs == _our_edges()


def _name(func: object) -> str:
    """A condition's name: ``transitions`` keeps a callable or its name."""
    return func if isinstance(func, str) else str(getattr(func, "__name__", func))


def test_edges_are_those_of_the_runtime_machine() -> None:
    machine = Recorder()._machine
    runtime = sorted(
        (src, t.dest, f"{trigger} [{' & '.join(_name(c.func) for c in t.conditions)}]")
        for trigger, event in machine.events.items()
        for src, ts in event.transitions.items()
        for t in ts
    )
    assert runtime == _our_edges()
    assert len(runtime) == sum(len(r.sources) for r in TABLE)


def test_lifecycle_marks_every_terminal_state_and_its_meaning() -> None:
    r = dg.render_lifecycle()
    for s in fsm.table.TERMINAL:
        assert f"    {s.value} --> [*]" in r.markdown
        assert f"| `{s.value}` |" in r.markdown
        assert fsm.table.TERMINAL_MEANING[s] in r.markdown
        assert html.escape(fsm.table.TERMINAL_MEANING[s]) in r.dot
        assert re.search(rf'^  "{s.value}" \[.*peripheries="2"', r.dot, re.M)
    for s in State:
        if s not in fsm.table.TERMINAL:
            assert f"    {s.value} --> [*]" not in r.markdown
    for row in TABLE:
        for g in row.guards:
            assert f"<i>{g}" in r.dot or f"<br/>{g}" in r.dot


# -- the path of an attempt ---------------------------------------------------------


def _dot_path(dot: str) -> list[tuple[int, str, str, str, str]]:
    """(number, source, dest, trigger, label text) of the highlighted edges."""
    found = []
    for m in re.finditer(r'^  "(\w+)" -> "(\w+)" \[label=<<b>\((\d+)\) (\w+)</b>(.*?)>, ',
                         dot, re.M):
        text = html.unescape(re.sub(r"<[^>]+>", " ", m[5].replace("<br/>", " ")))
        found.append((int(m[3]), m[1], m[2], m[4], " ".join(text.split())))
    return sorted(found)


def _mermaid_path(md: str) -> list[tuple[int, str, str, str]]:
    found = []
    for m in re.finditer(r"^    (\w+) --> (\w+): ((?:\(\d+\))+) (\w+) ", md, re.M):
        for n in re.findall(r"\((\d+)\)", m[3]):
            found.append((int(n), m[1], m[2], m[4]))
    return sorted(found)


def _expected(history: tuple[Transition, ...]) -> list[tuple[int, str, str, str]]:
    return [(i, h.source.value, h.dest.value, h.trigger.value)
            for i, h in enumerate(history, start=1)]


@pytest.mark.parametrize("incident", dg.INCIDENTS, ids=lambda i: i.stem)
def test_incident_path_is_highlighted_in_order_with_its_evidence(incident: dg.Incident) -> None:
    attempt = dg.run_incident(incident)
    final, triggers = EXPECTED_PATHS[incident.stem]
    assert attempt.state is final
    assert [h.trigger.value for h in attempt.history] == triggers

    r = dg.render_path(attempt, stem=incident.stem)
    expected = _expected(attempt.history)

    dot_steps = _dot_path(r.dot)
    assert [s[:4] for s in dot_steps] == expected
    for (_, _, _, _, text), h in zip(dot_steps, attempt.history, strict=True):
        ev = h.evidence.value if h.evidence else "-"
        assert f"via {ev}: {h.detail}" in text
        for g, _ok in h.guards:
            assert g in text
    # Only the path's edges are highlighted; every other row is drawn dimmed.
    assert r.dot.count(f'color="{_PATH}", fontcolor="{_PATH}"') == len(attempt.history)
    assert r.dot.count(f'color="{_DIM}", fontcolor="{_DIM}"') == (
        sum(len(row.sources) for row in TABLE) - len(attempt.history))

    assert _mermaid_path(r.markdown) == expected
    assert f"    class {final.value} reached" in r.markdown
    for h in attempt.history[:-1]:
        assert f"    class {h.dest.value} visited" in r.markdown
    # The step table, in order, with the evidence.
    rows = re.findall(r"^\| (\d+) \| \+[\d.]+ \| `(\w+)` → `(\w+)` \| `(\w+)` \| .* \| `(\w+)` \| "
                      r"(.*) \|$", r.markdown, re.M)
    assert [(int(n), s, d, t) for n, s, d, t, _, _ in rows] == expected
    assert [(ev, det) for *_, ev, det in rows] == [
        (h.evidence.value if h.evidence else "-", h.detail) for h in attempt.history]
    assert f"ended in **{final.value}**" in r.markdown


def test_rolled_back_path_sends_the_close_through_the_self_loop() -> None:
    attempt = dg.run_incident(dg.INCIDENTS[1])
    r = dg.render_path(attempt)
    assert ("    ROLLING_BACK --> ROLLING_BACK: (5) close_sending [close_side_derivable & "
            "exposure_attributable & no_close_in_flight]") in r.markdown
    loop = [s for s in _dot_path(r.dot) if s[1] == s[2]]
    assert [s[:4] for s in loop] == [(5, "ROLLING_BACK", "ROLLING_BACK", "close_sending")]
    assert "sell 43" in loop[0][4]


def test_journalled_path_renders_like_the_attempt() -> None:
    from adapters.simulated import AckStyle, SimConfig, SimulatedExchange, StreamMode
    from adapters.virtual_time import run_virtual

    journal = MemoryJournal()

    async def go() -> Attempt:
        ex = SimulatedExchange(SimConfig(ack=AckStyle.MINIMAL, rest_position_lag=4.0,
                                         stream=StreamMode.PRESENT, stop_rejected=True))
        opener = PositionOpener(ex, journal=journal, ids=lambda: "journalled")
        return await opener.open(OpenRequest(symbol="AVL/USDT:USDT", side="buy", amount=43,
                                             stop_loss=0.1290))

    attempt = run_virtual(go())
    steps = dg.steps_from_records(journal.for_attempt("journalled"))
    assert steps == list(attempt.history)  # the records decode back to the transitions
    title = "Attempt journalled"
    from_journal = dg.render_path(steps, title=title)
    from_attempt = dg.render_path(attempt, title=title)
    assert from_journal.dot == from_attempt.dot
    # Identical up to the outcome line, which names the attempt when it has one.
    assert from_journal.markdown.split("## Outcome")[0] == (
        from_attempt.markdown.split("## Outcome")[0])


def test_a_step_outside_the_table_is_drawn_not_hidden() -> None:
    steps = [
        Transition(0.0, Trigger.SUBMIT, State.NEW, State.PLACED, (("entry_may_exist", True),),
                   Source.ACK, "acknowledged"),
        Transition(1.0, Trigger.PROTECTED, State.PLACED, State.PROTECTED, (),
                   None, "skipped verification"),
    ]
    r = dg.render_path(steps)
    assert "    PLACED --> PROTECTED: (2) protected NOT IN TABLE" in r.markdown
    assert re.search(r'"PLACED" -> "PROTECTED" \[label=<<b>\(2\) protected — NOT IN TABLE</b>'
                     r'.*style="dashed"', r.dot)
    assert "**(not in TABLE)**" in r.markdown


# -- SVG ----------------------------------------------------------------------------


@pytest.mark.skipif(dg.find_dot() is None, reason=NO_DOT)
def test_svg_renders_with_graphviz(tmp_path: Path) -> None:
    r = dg.render_lifecycle()
    svg = dg.render_svg(r.dot, "lifecycle.dot")
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    text = " ".join(t for t in root.itertext())
    for s in State:
        assert s.value in text
    for row in TABLE:
        assert row.trigger.value in text
    # The stamp ties the SVG to its DOT, so --check works without `dot`.
    (tmp_path / "lifecycle.svg").write_text(svg, encoding="utf-8")
    assert _svg_problem(tmp_path / "lifecycle.svg", "lifecycle.dot", r.dot) is None
    assert _svg_problem(tmp_path / "lifecycle.svg", "lifecycle.dot", r.dot + " ") is not None


def test_without_dot_text_is_written_and_the_install_command_is_printed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(dg_svg, "find_dot", lambda: None)
    with pytest.raises(dg.DotMissing, match="apt-get install graphviz"):
        dg.render_svg("digraph {}", "x.dot")
    out = tmp_path / "diagrams"
    assert cli_run(_args(out, check=False)) == 0
    err = capsys.readouterr().err
    assert "Graphviz `dot` was not found" in err
    assert "sudo apt-get install graphviz" in err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        f"{stem}.{ext}" for stem in ("lifecycle", *EXPECTED_PATHS) for ext in ("md", "dot"))
    # The text outputs written without `dot` are exactly the committed ones.
    for name in names:
        assert (out / name).read_bytes() == (COMMITTED / name).read_bytes(), name


def test_path_of_a_journalled_attempt_is_rendered_from_the_journal_alone(
        tmp_path: Path) -> None:
    """`python -m fsm diagrams --journal PATH --attempt ID`: the path is read
    back from the SQLite journal, not from the live Attempt."""
    import asyncio

    from adapters.simulated import AckStyle, SimConfig, SimulatedExchange
    from adapters.virtual_time import run_virtual
    from fsm import Journal
    from fsm.__main__ import main as cli

    db = tmp_path / "journal.sqlite3"
    journal = Journal(db)

    async def go() -> str:
        opener = PositionOpener(SimulatedExchange(SimConfig(ack=AckStyle.MINIMAL,
                                                            stop_rejected=True)),
                                journal=journal)
        a = await opener.open(OpenRequest(symbol="AVL/USDT:USDT", side="buy", amount=43,
                                          stop_loss=0.129, reference_price=0.1358))
        await asyncio.sleep(0)
        assert a.state is State.CLOSE_VERIFIED
        return a.attempt_id

    attempt_id = run_virtual(go())
    journal.close()
    out = tmp_path / "out"
    assert cli(["diagrams", "--journal", str(db), "--attempt", attempt_id[:8],
                "--out", str(out)]) == 0
    md = (out / f"attempt-{attempt_id}.md").read_text()
    dot = (out / f"attempt-{attempt_id}.dot").read_text()
    order = [md.index(f"| {n} |") for n in range(1, 7)]
    assert order == sorted(order)  # six numbered steps, in order
    assert "close_sending" in md and "CLOSE_VERIFIED" in md
    assert "(6) close_verified" in html.unescape(dot)
    assert cli(["diagrams", "--journal", str(db), "--attempt", "zz",
                "--out", str(out)]) == 2
