"""The unprotected-window benchmark measures ground truth: a few worlds,
checked for what the window means, never for how fast anything is."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks import protection as P


def test_an_attached_stop_armed_at_the_fill_leaves_no_window() -> None:
    samples = P.run_cell("calm", "bybit", "auto", 5)
    assert samples and all(s.filled and s.window == 0.0 and s.limit == 0.0 for s in samples)


def test_a_separate_stop_leaves_a_window_no_shorter_than_its_own_trip() -> None:
    for s in P.run_cell("calm", "binance", "separate", 5):
        assert s.filled and 0 < s.trip <= s.window < math.inf
        assert s.limit == s.observable + s.trip


def test_an_attached_stop_refused_at_the_fill_falls_back_and_still_ends_the_window() -> None:
    for s in P.run_cell("calm", "bybit, refused at the fill", "auto", 5):
        assert s.filled and 0 < s.window < math.inf


def test_the_report_is_written(tmp_path: Path) -> None:
    P.main(["--n", "2", "--out", str(tmp_path)])
    text = (tmp_path / "protection.md").read_text()
    assert "| calm | okx | auto |" in text and "requests/attempt" in text
    assert (tmp_path / "protection.json").read_text().startswith("[")
