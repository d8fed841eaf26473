"""The benchmark command runs from a clean checkout and writes its results.

Checks the quick mode end to end (as CI runs it): the JSON exists, has
exactly the documented keys and sane types. Never the timings themselves:
machines are noisy, and the targets are judged on the full run.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CELL_KEYS = {"p50_ms", "p99_ms", "max_ms", "false_rollbacks", "doubled", "requests_per_attempt",
             "false_alarms", "foreign_touched", "false_alarms_answering"}
ENGINE_KEYS = {"cpu_us_per_attempt", "overhead_ratio", "bytes_per_attempt_10k",
               "sim_attempts_per_s"}
DRIVERS = {"engine", "seed_plan", "legacy", "limit"}


def _number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def test_quick_mode_writes_the_json_table_and_plot(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    data = json.loads((tmp_path / "latest.json").read_text())
    assert set(data) == {"profiles", "engine"}
    assert {"calm", "loaded", "incident", "faulty"} <= set(data["profiles"])
    for profile, cells in data["profiles"].items():
        assert set(cells) == DRIVERS, profile
        for driver, cell in cells.items():
            where = f"{profile}.{driver}"
            assert set(cell) == CELL_KEYS, where
            for k in ("p50_ms", "p99_ms", "max_ms"):
                # null: the percentile falls among attempts never protected
                assert cell[k] is None or (_number(cell[k]) and cell[k] >= 0), where
            if cell["p50_ms"] is not None and cell["p99_ms"] is not None:
                assert cell["p50_ms"] <= cell["p99_ms"], where
            for k in ("false_rollbacks", "doubled", "false_alarms", "foreign_touched"):
                assert isinstance(cell[k], int) and not isinstance(cell[k], bool), where
                assert cell[k] >= 0, where
            assert _number(cell["requests_per_attempt"]), where
            assert cell["requests_per_attempt"] >= 1, where
        # the physical bound never rolls back, and is protected unless faults refuse it
        if profile != "faulty":
            assert cells["limit"]["p99_ms"] is not None
        assert cells["limit"]["false_rollbacks"] == 0
    assert set(data["engine"]) == ENGINE_KEYS
    for k, v in data["engine"].items():
        assert _number(v) and v > 0, k

    table = (tmp_path / "latest.md").read_text()
    assert "| profile | driver |" in table and "**engine**" in table
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "time_to_protection.png").stat().st_size > 0
