"""Mutation testing of the safety-critical code: does breaking a rule turn
the suite red? Not run in CI (tens of minutes on two cores).

One command runs everything and rewrites ``specs/mutation.json``::

    python -m specs.mutation   # guards (mutmut, 3 suites), table data, stop_* checks
    python -m specs.mutation --only mutmut --suites full \
        --modules fsm/step.py fsm/send.py fsm/observe.py fsm/driver.py

Three kinds of mutant, each against a named killing suite (``SUITES``):

* ``mutmut`` (3.8, ``--max-children``): operator, constant and call mutants
  of the ``--modules`` given (default ``fsm/guards.py``), configured by
  ``[tool.mutmut]`` in ``pyproject.toml`` with the module list and the
  suite substituted;
* ``table``: the transition table's data, which mutmut does not touch (it
  mutates function bodies, not a module-level tuple, and never list order):
  every guard of every row dropped, and every pair of rows that share a
  trigger and a source state swapped;
* ``stop``: ``stop_reduce_only``, ``stop_opposite_side`` and
  ``stop_covers_size`` replaced by ``return True`` (and two more rules in
  ``SPEC_ALONE``), run against the specs alone: the hostile venue must be
  enough to catch them.

Every run happens in a copy of the working tree under ``.mutation/`` (the
repository itself is never modified), with the Hypothesis profile
``mutation`` (100 examples per law, derandomized, no example database). A
surviving mutant must be justified in ``EQUIVALENT`` (keyed by function and
mutated line, so the reason outlives mutmut's numbering); the report lists
every survivor with its diff and reason, or ``"reason": null`` when none is
written yet, which the summary prints as unjustified.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"
REPORT = ROOT / "specs" / "mutation.json"

#: Killing suites: test paths and extra pytest arguments.
#: Left out of every suite: real processes on the wall clock (leases across
#: processes), which time out under the load of a mutation run and test
#: neither the guards nor the table.
_WALL_CLOCK = ["--ignore=tests/test_fleet.py"]
#: Left out of the fast first stage of ``--staged`` only: the PostgreSQL
#: variants (a forked mutant would start a server of its own, seconds each;
#: their SQLite twins run the same engine paths) and the benchmarks' smoke
#: test. The second stage runs the full suite on what survives.
_SLOW = ["-k", "not postgres and not pg_gate and not pg_stall and not benchmarks_quick"]

SUITES: dict[str, tuple[list[str], list[str]]] = {
    "full": (["tests", "specs"], _WALL_CLOCK),
    "specs": (["specs"], []),
    # The diagram drift test compares the rendered table with committed
    # files, so it catches any table change whatever it means.
    "no-diagrams": (["tests", "specs"], ["--ignore=tests/test_diagrams.py", *_WALL_CLOCK]),
    # The per-row rules test by itself (written from DESIGN.md, not TABLE).
    "rules": (["tests/test_table_rules.py"], []),
    # The unit and scenario tests without the specs: the fast first stage of
    # ``--staged`` (whatever it kills, the full suite kills too).
    "tests": (["tests"], [*_WALL_CLOCK, *_SLOW]),
}

STOP_GUARDS = ("stop_reduce_only", "stop_opposite_side", "stop_covers_size")

#: Survivors that are equivalent: "function: mutated line" -> why no test can
#: tell the mutant from the original.
EQUIVALENT: dict[str, str] = {
    # fsm/guards.py
    "close_side_derivable: b is not None and b.size >= 0 and b.side is f.request.side.opens "
    "and order_filled(f)":
        "a PositionSnapshot of size 0 has no side (its own invariant), so 'side is ours' "
        "already implies size > 0",
    "position_flat: if p is None or (p.size >= 0 and p.side is f.request.side.opens) or "
    "f.close_in_flight:":
        "a PositionSnapshot of size 0 has no side (its own invariant), so 'side is ours' "
        "already implies size > 0",
    "position_flat: and (c.filled >= ci.amount or qty_eq(c.filled, ci.amount))":
        "'>' or qty_eq vs '>=' or qty_eq: exact equality is already inside qty_eq",
    "position_flat: and (c.filled >= f.exposure or qty_eq(c.filled, f.exposure))":
        "'>' or qty_eq vs '>=' or qty_eq: exact equality is already inside qty_eq",
    "_price_eq: return math.isclose(a, b, abs_tol=1e-12)":
        "math.isclose's default rel_tol is 1e-9, the value the mutant drops",
    "_price_eq: return math.isclose(a, b, rel_tol=1e-9, )":
        "abs_tol=1e-12 decides only where rel_tol=1e-9 does not, i.e. for prices below "
        "about 1e-3; two such prices 1e-12 apart are one tick of no market a venue lists",
    # fsm/step.py
    "_basis_gate: and p.size >= 0 and p.source in (Source.STREAM, Source.REST):":
        "a flat view has no side, so with it as the basis neither close row can hold "
        "(both need a side) and the decision falls through to the same look-up; the basis "
        "is set afresh by this gate before any row reads it",
    "_basis_gate: return _rollback_default(f, None)":
        "_rollback_default does not read its context",
    "_unattributable_gate: return _rollback_default(f, None)":
        "_rollback_default does not read its context",
    "_close_intent: assert basis is not None or basis.side is not None":
        "the basis gate sets close_basis only to a view of size > 0, which always has a side "
        "(PositionSnapshot's invariant): the assertion cannot tell the two apart",
    "_sending: assert basis is not None or basis.side is not None":
        "the basis gate sets close_basis only to a view of size > 0, which always has a side "
        "(PositionSnapshot's invariant): the assertion cannot tell the two apart",
    "_confirmed: f\"entry filled {f.entry.filled if (f.entry) or True else None:g}\")":
        "position_confirmed needs a terminal entry, so f.entry is never None here",
    "next_step: break":
        "the only gate that skips its row (_stop_refused_gate) guards the last row of "
        "VERIFIED: no row follows it, so 'break' and 'continue' end the walk alike",
    # fsm/send.py
    "entry: a.facts = evolve(before, create_error=said(exc))":
        "a refused create fires REJECT at the next decision, a terminal state: the "
        "deadlines the send started are never read",
    "cancel_wrong_stop: cid = f.stop.client_id or (f.stop_intent.client_id if (f.stop_intent) "
    "or True else None)":
        "f.stop is never set without f.stop_intent (the intent is set on entering VERIFIED, "
        "before any send or read, and fall_back clears both together)",
    "close: a.facts = evolve(a.facts, close_intent=intent, close_order=None, "
    "close_missing=None,":
        "close_missing is only read for truthiness and never journalled: None and False "
        "are alike",
    "close: fills_checked=None)":
        "fills_checked is only read for truthiness and never journalled: None and False "
        "are alike",
    "close: a.facts = evolve(a.facts, close_intent=intent, close_missing=False,":
        "a close is sent only by the close_sending row, whose no_close_in_flight guard "
        "holds only when close_order is already None",
    "fall_back: or (None if (order_id) and False else attached_stop_id(a.attempt_id)))":
        "it only adds the attached stop's client id to a cancel that already names the "
        "venue's order id, and a cancel naming the order id is addressed by it (ccxt "
        "adapter, simulator)",
    "stop: return True, polls":
        "the flag only says whether a further protection try looks the stop up instead of "
        "sending it: after a refusal stop_error makes the next decision protect_failed, and "
        "an accepted reply is judged at once (protected, read back or refused); only a "
        "reply neither accepted nor refused would reach it, and a refused placement raises "
        "OrderRejected in every adapter",
    "stop: lookup = None":
        "the flag is only read for truthiness (ctx.stop_lookup or ...): None and False "
        "are alike",
    "entry: a.facts = evolve(before, **base, ack=streamed, entry_source=Source.STREAM)":
        "the stream's report is in the position cache too: the next decision's look-up of "
        "the entry reads it from there with no request, and the history is the same",
    "entry: a.facts = evolve(before, **base, ack=streamed, entry=None,":
        "the stream's report is in the position cache too: the next decision's look-up of "
        "the entry reads it from there with no request, and the history is the same "
        "(checked: same calls, same steps)",
    "fall_back: stop_error=error, )":
        "the protect deadline is unset while the attached stop is relied on, and entering "
        "VERIFIED again after the fall_back sets a fresh one (the stop intent is cleared, so "
        "the attempt is not 'resumed')",
    # the table's data
    "swap row 4 T.NOT_FILLED ['S.PLACED'] -> S.REJECTED with row 5 T.NOT_FILLED "
    "['S.PLACED', 'S.ROLLING_BACK'] -> S.REJECTED":
        "the two rows cannot both hold (one needs the entry seen, entry_never_arrived "
        "needs it never seen), so their order never decides anything",
}

_SKIP = {".git", ".venv", ".mutation", "mutants", ".hypothesis", ".pytest_cache",
         ".mypy_cache", ".ruff_cache", "__pycache__", "build", "dist"}


# -- workspaces -------------------------------------------------------------------------


def workspace(name: str) -> Path:
    """A fresh copy of the working tree (what is being tested, committed or not)."""
    dst = WORK / name
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    ignore = shutil.ignore_patterns(*_SKIP, "*.egg-info", "*.pyc")
    for entry in sorted(ROOT.iterdir()):
        if entry.name in _SKIP or entry.name.endswith(".egg-info"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, dst / entry.name, ignore=ignore)
        else:
            shutil.copy2(entry, dst / entry.name)
    return dst


def env() -> dict[str, str]:
    """The environment of every run: the mutation profile, no stray path."""
    e = dict(os.environ)
    e["FSM_SPECS_PROFILE"] = "mutation"
    e["PYTHONDONTWRITEBYTECODE"] = "1"
    e.pop("PYTHONPATH", None)
    return e


def pytest_run(ws: Path, suite: str, timeout: float) -> tuple[str, str | None, float]:
    """Run ``suite`` in ``ws``: ("survived" | "killed" | "timeout", first
    failing test, seconds)."""
    paths, extra = SUITES[suite]
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-p", "no:randomly", *extra, *paths]
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=ws, env=env(), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", None, time.monotonic() - start
    took = time.monotonic() - start
    if done.returncode == 0:
        return "survived", None, took
    failed = re.search(r"^(?:FAILED|ERROR) (\S+)", done.stdout, re.M)
    if failed is None and done.returncode != 1:
        # The unmutated code passes (checked first), so a mutant that stops
        # the suite from even collecting (an import that fails) is caught.
        return "killed", f"pytest exit {done.returncode} (collection or import)", took
    return "killed", failed.group(1) if failed else None, took


# -- mutmut -------------------------------------------------------------------------------


def _toml_list(xs: Sequence[str]) -> str:
    return json.dumps(list(xs))


def configure_mutmut(ws: Path, modules: Sequence[str], suite: str) -> None:
    """The repository's ``[tool.mutmut]``, with the modules and suite substituted."""
    text = (ws / "pyproject.toml").read_text()
    base = tomllib.loads(text)["tool"]["mutmut"]
    head = text.split("[tool.mutmut]")[0]
    paths, extra = SUITES[suite]
    cfg = dict(base)
    cfg["only_mutate"] = list(modules)
    cfg["pytest_add_cli_args_test_selection"] = paths
    cfg["pytest_add_cli_args"] = ["-p", "no:cacheprovider", *extra]
    # Everything the suites may import or read, whatever moved since the
    # configuration was written (a new top-level package, say).
    sources = {Path(x).parts[0] for x in cfg["source_paths"]}
    tree = {e.name for e in ws.iterdir()
            if e.name not in sources and e.name not in ("mutants", "pyproject.toml")}
    cfg["also_copy"] = sorted(set(cfg.get("also_copy", [])) | tree)
    lines = ["[tool.mutmut]"]
    for k, v in cfg.items():
        lines.append(f"{k} = {_toml_list(v) if isinstance(v, list) else json.dumps(v)}")
    (ws / "pyproject.toml").write_text(head + "\n".join(lines) + "\n")


_STATUS = {0: "survived", 1: "killed", 3: "killed", 36: "timeout", 24: "timeout",
           -24: "timeout", 152: "timeout", 255: "timeout", 5: "no tests", 33: "no tests",
           None: "not checked"}


def _mutated_line(diff: str) -> str:
    plus = [ln[1:].strip() for ln in diff.splitlines()
            if ln.startswith("+") and not ln.startswith("+++")]
    return " / ".join(plus) if plus else "(line removed)"


def _function(mutant: str) -> str:
    # fsm.guards.x_position_flat__mutmut_12 -> position_flat
    last = mutant.rsplit(".", 1)[-1]
    return re.sub(r"^x_|^xǁ.*ǁ", "", last.split("__mutmut_")[0])


def run_mutmut(modules: Sequence[str], suite: str, children: int,
               reuse: bool = False, sample: Sequence[str] = ()) -> dict[str, Any]:
    """mutmut on ``modules`` against ``suite``: a summary per module. With
    ``sample`` (mutmut name patterns, e.g. ``*__mutmut_*7``), only the
    mutants matching one are run; the rest count as "not checked"."""
    ws = WORK / f"mutmut-{suite}"
    took = float("nan")
    if reuse and all((ws / "mutants" / (m + ".meta")).exists() for m in modules):
        # A run stopped part-way is reported as such: its unchecked mutants
        # count under "other" as "not checked".
        took = float((ws / "wall_seconds").read_text()) if (ws / "wall_seconds").exists() \
            else float("nan")
    else:
        ws = workspace(f"mutmut-{suite}")
        configure_mutmut(ws, modules, suite)
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children",
                               str(children), *sample], cwd=ws, env=env(),
                              capture_output=True, text=True)
        took = time.monotonic() - start
        (ws / "mutmut.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"mutmut failed ({done.returncode}), see {ws / 'mutmut.log'}")
        (ws / "wall_seconds").write_text(f"{took:.0f}\n")
    out: dict[str, Any] = {}
    for module in modules:
        meta = json.loads((ws / "mutants" / (module + ".meta")).read_text())
        codes: dict[str, int | None] = meta["exit_code_by_key"]
        counts: dict[str, int] = {}
        survivors = []
        for name, code in sorted(codes.items()):
            status = _STATUS.get(code, "suspicious")
            counts[status] = counts.get(status, 0) + 1
            if status in ("survived", "no tests", "suspicious"):
                diff = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=ws,
                                      env=env(), capture_output=True, text=True).stdout
                key = f"{_function(name)}: {_mutated_line(diff)}"
                survivors.append({"mutant": name, "status": status, "key": key,
                                  "diff": [ln for ln in diff.splitlines()
                                           if ln[:1] in "+-" and ln[:3] not in ("+++", "---")],
                                  "reason": EQUIVALENT.get(key)})
        out[module] = _summary(len(codes), counts, survivors, took)
        out[module]["complete"] = "not checked" not in counts
    return out


def run_staged(modules: Sequence[str], children: int, reuse: bool = False,
               sample: Sequence[str] = ()) -> dict[str, Any]:
    """The full suite's verdict on every mutant, in two stages: all of them
    against ``tests`` (no specs: minutes, not hours), then only its
    survivors against ``full``. A mutant ``tests`` kills, ``full`` kills too
    (it is a superset), so the result is what ``full`` alone would give."""
    first = run_mutmut(modules, "tests", children, reuse, sample)
    names = [x["mutant"] for m in modules for x in first[m]["survivors"]]
    second = run_mutmut(modules, "full", children, False, names) if names else {}
    out: dict[str, Any] = {}
    for module in modules:
        a = first[module]
        b = second.get(module)
        counts = {"killed": a["killed"], "timeout": a["timeout"], **a["other"]}
        for k in ("survived", "no tests", "suspicious"):
            counts.pop(k, None)
        survivors: list[dict[str, Any]] = []
        if b is not None:
            counts["killed"] += b["killed"]
            counts["timeout"] += b["timeout"]
            counts["survived"] = b["survived"]
            for k, v in b["other"].items():
                if k != "not checked":
                    counts[k] = counts.get(k, 0) + v
            survivors = b["survivors"]
        took = (a["wall_seconds"] or 0) + ((b["wall_seconds"] or 0) if b is not None else 0)
        out[module] = _summary(a["mutants"], counts, survivors, took)
        out[module]["complete"] = a["complete"]
        out[module]["stages"] = {"tests": {k: a[k] for k in ("killed", "survived", "timeout")},
                                 "full, on its survivors": {
                                     k: (b[k] if b is not None else 0)
                                     for k in ("killed", "survived", "timeout")}}
    return out


def _summary(total: int, counts: dict[str, int], survivors: list[dict[str, Any]],
             took: float) -> dict[str, Any]:
    equivalent = sum(1 for s in survivors if s["reason"])
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    relevant = total - equivalent - counts.get("not checked", 0)
    return {
        "mutants": total,
        "killed": counts.get("killed", 0),
        "survived": counts.get("survived", 0),
        "timeout": counts.get("timeout", 0),
        "other": {k: v for k, v in counts.items()
                  if k not in ("killed", "survived", "timeout")},
        "equivalent": equivalent,
        "killed_of_non_equivalent": round(100.0 * killed / relevant, 1) if relevant else 100.0,
        "wall_seconds": round(took) if took == took else None,
        "survivors": survivors,
    }


# -- the table's data ---------------------------------------------------------------------


def _rows(source: bytes) -> list[ast.Call]:
    tree = ast.parse(source)
    for node in tree.body:
        if not isinstance(node, ast.AnnAssign | ast.Assign):
            continue
        target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
        if isinstance(target, ast.Name) and target.id == "TABLE":
            assert isinstance(node.value, ast.Tuple)
            rows = [e for e in node.value.elts if isinstance(e, ast.Call)]
            assert len(rows) == len(node.value.elts)
            return rows
    raise LookupError("no TABLE in fsm/table.py")


def _span(source: bytes, node: ast.AST) -> tuple[int, int]:
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    a = starts[node.lineno - 1] + node.col_offset  # type: ignore[attr-defined]
    b = starts[node.end_lineno - 1] + node.end_col_offset  # type: ignore[attr-defined]
    return a, b


def _states(node: ast.expr) -> set[str]:
    elts = node.elts if isinstance(node, ast.List | ast.Tuple) else [node]
    return {ast.unparse(e) for e in elts}


def table_mutants(source: bytes) -> Iterator[tuple[str, bytes]]:
    """Every row guard dropped; every two rows sharing a trigger and a source swapped."""
    rows = _rows(source)

    def label(i: int) -> str:
        r = rows[i]
        return (f"row {i} {ast.unparse(r.args[0])} {sorted(_states(r.args[1]))} -> "
                f"{ast.unparse(r.args[2])}")

    for i, row in enumerate(rows):
        guards = row.args[3]
        assert isinstance(guards, ast.List)
        names = [ast.literal_eval(g) for g in guards.elts]
        for k, name in enumerate(names):
            a, b = _span(source, guards)
            kept = names[:k] + names[k + 1:]
            yield (f"drop {name} from {label(i)}",
                   source[:a] + json.dumps(kept).encode() + source[b:])
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            ri, rj = rows[i], rows[j]
            if ast.unparse(ri.args[0]) != ast.unparse(rj.args[0]):
                continue
            if not _states(ri.args[1]) & _states(rj.args[1]):
                continue
            (a1, b1), (a2, b2) = _span(source, ri), _span(source, rj)
            text = (source[:a1] + source[a2:b2] + source[b1:a2] + source[a1:b1] + source[b2:])
            yield f"swap {label(i)} with {label(j)}", text


def _patched_runs(kind: str, patches: list[tuple[str, str, bytes]], suite: str,
                  children: int) -> dict[str, Any]:
    """Run each (label, relative path, new text) in one of ``children`` workspaces."""
    spaces = [workspace(f"{kind}-{suite}-{n}") for n in range(children)]
    for ws in spaces:
        status, by, _ = pytest_run(ws, suite, timeout=1800)
        if status != "survived":
            raise RuntimeError(f"the unmutated code fails suite {suite!r}: {by}")
    start = time.monotonic()
    results: list[dict[str, Any]] = []

    def work(n: int) -> None:
        ws = spaces[n]
        for label, rel, text in patches[n::children]:
            original = (ws / rel).read_bytes()
            (ws / rel).write_bytes(text)
            try:
                status, by, took = pytest_run(ws, suite, timeout=900)
            finally:
                (ws / rel).write_bytes(original)
            results.append({"mutant": label, "status": status, "killed_by": by,
                            "seconds": round(took, 1)})

    with concurrent.futures.ThreadPoolExecutor(children) as pool:
        list(pool.map(work, range(children)))
    took = time.monotonic() - start
    order = {label: i for i, (label, _, _) in enumerate(patches)}
    results.sort(key=lambda r: order[r["mutant"]])
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    survivors = [{**r, "key": r["mutant"], "reason": EQUIVALENT.get(r["mutant"])}
                 for r in results if r["status"] == "survived"]
    summary = _summary(len(results), counts, survivors, took)
    summary["mutants_detail"] = results
    return summary


def run_table(suite: str, children: int) -> dict[str, Any]:
    """The table-data mutants against ``suite``."""
    source = (ROOT / "fsm" / "table.py").read_bytes()
    patches = [(label, "fsm/table.py", text) for label, text in table_mutants(source)]
    return _patched_runs("table", patches, suite, children)


def always_true(source: bytes, name: str) -> bytes:
    """``source`` with function ``name`` replaced by ``return True``."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            a, b = _span(source, node)
            return (source[:a] + f"def {name}(f: Facts) -> bool:\n    return True".encode()
                    + source[b:])
    raise LookupError(name)


def replaced(source: bytes, name: str, old: str, new: str) -> bytes:
    """``source`` with ``old`` replaced by ``new`` once, inside function ``name``."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            a, b = _span(source, node)
            body = source[a:b].decode()
            assert body.count(old) == 1, (name, old)
            return source[:a] + body.replace(old, new).encode() + source[b:]
    raise LookupError(name)


#: Rules the hostile venue must defend by itself (the specs alone, no unit
#: test): (label, guard, text, replacement); an empty text: ``return True``.
SPEC_ALONE: tuple[tuple[str, str, str, str], ...] = (
    *((f"{g} always returns True", g, "", "") for g in STOP_GUARDS),
    ("entry_may_exist needs both ids", "entry_may_exist",
     "f.ack.order_id is not None or f.ack.client_id is not None",
     "f.ack.order_id is not None and f.ack.client_id is not None"),
    ("position_flat takes a view stamped the fill's instant", "position_flat",
     "p.as_of > fill_time", "p.as_of >= fill_time"),
)


def run_stop_checks(suite: str, children: int) -> dict[str, Any]:
    """The ``SPEC_ALONE`` mutants against ``suite``."""
    source = (ROOT / "fsm" / "guards.py").read_bytes()
    patches = [(label, "fsm/guards.py",
                always_true(source, g) if not old else replaced(source, g, old, new))
               for label, g, old, new in SPEC_ALONE]
    return _patched_runs("stop", patches, suite, children)


# -- the report ---------------------------------------------------------------------------


def _commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return head + ("+uncommitted" if dirty else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen mutants and rewrite the report."""
    p = argparse.ArgumentParser(prog="python -m specs.mutation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modules", nargs="+", default=["fsm/guards.py"],
                   help="files mutmut mutates (default: fsm/guards.py)")
    p.add_argument("--suites", nargs="+", default=["full", "specs", "no-diagrams"],
                   choices=sorted(SUITES), help="killing suites for the mutmut mutants")
    p.add_argument("--only", nargs="+", choices=["mutmut", "table", "stop"],
                   default=["mutmut", "table", "stop"])
    p.add_argument("--table-suites", nargs="+", default=["no-diagrams", "rules"],
                   choices=["no-diagrams", "rules"],
                   help="killing suites for the table-data mutants ('rules' is a subset of "
                        "'no-diagrams': what it kills, the other kills too)")
    p.add_argument("--max-children", type=int, default=2)
    p.add_argument("--reuse", action="store_true",
                   help="report a finished mutmut run found in .mutation/ instead of re-running")
    p.add_argument("--report", type=Path, default=REPORT)
    p.add_argument("--staged", action="store_true",
                   help="the full suite's verdict in two stages: every mutant against "
                        "'tests', then its survivors against 'full' (replaces --suites)")
    p.add_argument("--sample", nargs="+", default=[], metavar="PATTERN",
                   help="run only the mutmut mutants whose names match a pattern: "
                        "'*__mutmut_*7' is a systematic tenth of every function's mutants")
    args = p.parse_args(argv)

    report: dict[str, Any] = {}
    if args.report.exists():
        report = json.loads(args.report.read_text())
    stamp = {"commit": _commit(),
             "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
             "max_children": args.max_children, "hypothesis_profile": "mutation"}
    if "mutmut" in args.only and args.staged:
        res = run_staged(args.modules, args.max_children, args.reuse, args.sample)
        for module, summary in res.items():
            report.setdefault("mutmut", {}).setdefault("full", {})[module] = {
                **summary, **stamp, "staged": True,
                **({"sample": args.sample} if args.sample else {})}
            _say(f"mutmut {module} [tests, then full on its survivors]", summary)
    elif "mutmut" in args.only:
        for suite in args.suites:
            res = run_mutmut(args.modules, suite, args.max_children, args.reuse, args.sample)
            for module, summary in res.items():
                report.setdefault("mutmut", {}).setdefault(suite, {})[module] = {
                    **summary, **stamp, **({"sample": args.sample} if args.sample else {})}
                _say(f"mutmut {module} [{suite}]", summary)
    if "table" in args.only:
        for suite in args.table_suites:
            summary = run_table(suite, args.max_children)
            report.setdefault("table_data", {})[suite] = {**summary, **stamp}
            _say(f"table data [{suite}]", summary)
    if "stop" in args.only:
        summary = run_stop_checks("specs", args.max_children)
        report["specs_alone"] = {"specs": {**summary, **stamp}}
        _say("rules the specs alone must defend [specs]", summary)
    annotate(report)
    args.report.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 0


def annotate(report: dict[str, Any]) -> None:
    """A survivor of a narrower suite (specs alone, no diagrams) that the full
    suite kills is a hole of that suite, not an equivalent mutant: say so."""
    runs = report.get("mutmut", {})
    for suite, modules in runs.items():
        if suite == "full":
            continue
        for module, summary in modules.items():
            full = runs.get("full", {}).get(module)
            if full is None:
                continue
            survived_full = {x["key"] for x in full["survivors"]}
            for x in summary["survivors"]:
                x["killed_by_full_suite"] = x["key"] not in survived_full
            summary["survived_but_killed_by_full_suite"] = sum(
                1 for x in summary["survivors"] if x["killed_by_full_suite"])


def _say(what: str, s: dict[str, Any]) -> None:
    unjustified = [x["key"] for x in s["survivors"] if not x["reason"]]
    print(f"{what}: {s['mutants']} mutants, {s['killed']} killed, {s['survived']} survived, "
          f"{s['timeout']} timeout; {s['killed_of_non_equivalent']}% of non-equivalent "
          f"killed; {s['wall_seconds']}s", flush=True)
    if s.get("survived_but_killed_by_full_suite"):
        print(f"  of the survivors, {s['survived_but_killed_by_full_suite']} are killed by "
              "the full suite", flush=True)
    for key in unjustified:
        print(f"  unjustified survivor: {key}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
