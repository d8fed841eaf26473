"""The PostgreSQL cases skip locally without a server, with the reason, and
fail under CI instead: a CI run cannot pass having skipped them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASE = "tests/test_journal_stores.py::test_note_kinds_are_checked[postgres]"


def _run(ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PG_BIN"] = str(ROOT / "no-such-postgresql")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           CASE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_without_a_server_the_postgres_cases_skip_locally_with_the_reason() -> None:
    done = _run(None)
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout
    assert "PostgreSQL server binaries not found" in done.stdout


def test_without_a_server_the_postgres_cases_fail_under_ci() -> None:
    done = _run("true")
    assert done.returncode != 0, done.stdout
    assert "CI must run the PostgreSQL tests" in done.stdout
