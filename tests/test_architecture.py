"""The map holds: which room may import which, and no import cycles.

Imports are read from the source with ``ast`` (nothing is imported), every
``import`` statement anywhere in a module, including the ones inside
functions and under ``if TYPE_CHECKING:``: a lazy or typing-only import is
still a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The packages whose modules make up the graph.
PACKAGES = ("fsm", "adapters", "benchmarks", "specs")

#: The engine may import adapters only where it wires both together for a
#: person at a terminal: the command line, the demo, and the diagrams'
#: replay of the incident on the simulator.
WIRING = frozenset({
    "fsm.__main__",
    "fsm.cli_diagrams",
    "fsm.cli_journal",
    "fsm.cli_parser",
    "fsm.demo",
    "fsm.diagrams.incidents",
})

#: Cycles known today, each to be removed by named work; the test fails when
#: one is gone too, so this list cannot go stale. (The driver and recovery no
#: longer use each other: recovery asks only for what a Resumer offers.)
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


def modules(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Dotted module name → source file, for every module of ``packages``."""
    out: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports(source: str, known: Mapping[str, Path], module: str = "") -> set[str]:
    """The modules of ``known`` that ``source`` imports, wherever the import
    statement is. ``from a import b`` is an import of ``a.b`` when that is a
    module, else of ``a``; relative imports are resolved against ``module``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: -node.level]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {name for name in found if name in known}


def graph(known: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module → the modules it imports."""
    return {m: imports(p.read_text(encoding="utf-8"), known, m) for m, p in known.items()}


def reachable(edges: Mapping[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = list(edges.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, ()))
    return seen


def cycles(edges: Mapping[str, set[str]]) -> set[frozenset[str]]:
    """Every group of modules that import one another, directly or through
    others (a module importing itself is a group of one)."""
    reach = {m: reachable(edges, m) for m in edges}
    return {
        frozenset({m} | {o for o in reach[m] if m in reach[o]})
        for m in edges
        if m in reach[m]
    }


def engine_imports_of_adapters(edges: Mapping[str, set[str]]) -> list[str]:
    """``module -> adapters...`` for every engine module outside the wiring."""
    return sorted(
        f"{m} -> {t}"
        for m, targets in edges.items()
        if m.split(".")[0] == "fsm" and m not in WIRING
        for t in targets
        if t.split(".")[0] == "adapters"
    )


# -- the map ----------------------------------------------------------------------------------


@functools.cache
def _repository() -> dict[str, set[str]]:
    return graph(modules())


def test_the_engine_imports_adapters_only_in_its_wiring() -> None:
    assert engine_imports_of_adapters(_repository()) == []


def test_there_are_no_import_cycles_but_the_known_ones() -> None:
    found = cycles(_repository())
    new = sorted(sorted(c) for c in found - KNOWN_CYCLES)
    gone = sorted(sorted(c) for c in KNOWN_CYCLES - found)
    assert not new, f"import cycles: {new}"
    assert not gone, f"cycles no longer there, remove them from KNOWN_CYCLES: {gone}"


@pytest.mark.parametrize(("importer", "forbidden"), [
    ("benchmarks", "specs"),
    ("specs", "benchmarks"),
    ("adapters", "benchmarks"),
    ("adapters", "specs"),
    ("fsm", "benchmarks"),
    ("fsm", "specs"),
])
def test_rooms_do_not_import_what_they_may_not(importer: str, forbidden: str) -> None:
    edges = _repository()
    bad = sorted(f"{m} -> {t}" for m, targets in edges.items() if m.split(".")[0] == importer
                 for t in targets if t.split(".")[0] == forbidden)
    assert bad == []


# -- the checks can fail ----------------------------------------------------------------------


def _tree(tmp_path: Path, files: Mapping[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return modules(tmp_path, ("fsm", "adapters"))


def test_an_engine_module_importing_an_adapter_is_caught(tmp_path: Path) -> None:
    known = _tree(tmp_path, {
        "fsm/__init__.py": "",
        "fsm/guards.py": "def f() -> None:\n    from adapters.simulated import X\n",
        "fsm/demo.py": "import adapters.simulated\n",
        "adapters/__init__.py": "",
        "adapters/simulated.py": "from fsm import guards\n",
    })
    assert engine_imports_of_adapters(graph(known)) == ["fsm.guards -> adapters.simulated"]


def test_a_cycle_is_caught_wherever_its_imports_are(tmp_path: Path) -> None:
    known = _tree(tmp_path, {
        "fsm/__init__.py": "",
        "fsm/a.py": "from fsm import b\n",
        "fsm/b.py": ("from typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from fsm.c import C\n"),
        "fsm/c.py": "def f() -> None:\n    from . import a\n",
        "fsm/d.py": "from fsm import a\n",
        "adapters/__init__.py": "",
    })
    assert cycles(graph(known)) == {frozenset({"fsm.a", "fsm.b", "fsm.c"})}
