"""Issue 11, reproductions 4 and 7: read-only tools are read-only, and every
CLI error is one clear line on stderr with a non-zero exit, never a traceback.

``journal show`` used to chmod whatever it was pointed at to 0600 and switch
a foreign SQLite database to WAL before checking that it was a journal, then
print a traceback. Each case here proves the target's bytes, mode and
journal mode unchanged.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from fsm.__main__ import main
from fsm.journal import Journal
from tests.helpers import request


def _foreign_db(tmp_path: Path) -> Path:
    path = tmp_path / "other-app.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('not a journal')")
    conn.commit()
    conn.close()
    return path


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("hello, I am not a database\n" * 200)
    return path


def _directory(tmp_path: Path) -> Path:
    path = tmp_path / "a-directory"
    path.mkdir()
    return path


def _fingerprint(path: Path) -> tuple[int, str | None, str | None, list[str]]:
    mode = stat.S_IMODE(path.stat().st_mode)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    journal_mode = None
    if path.suffix == ".sqlite3":
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        journal_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        conn.close()
    return mode, digest, journal_mode, sorted(os.listdir(path.parent))


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


TARGETS: list[Callable[[Path], Path]] = [_foreign_db, _text_file, _directory]


@pytest.mark.parametrize("make", TARGETS, ids=["foreign-sqlite", "text-file", "directory"])
@pytest.mark.parametrize("command", [
    ["journal", "show", "--db", "{}"],
    ["diagrams", "--journal", "{}", "--attempt", "abc", "--out", "{out}"],
])
def test_read_only_tools_leave_what_they_read_unchanged(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Callable[[Path], Path],
        command: list[str]) -> None:
    target = make(tmp_path)
    if target.is_file():
        target.chmod(0o644)
    before = _fingerprint(target)
    argv = [a.format(target, out=tmp_path / "out") for a in command]
    code = main(argv)
    assert code != 0
    line = _one_error_line(capsys)
    assert line.startswith("error: ") and str(target) in line and "not a journal" in line
    assert _fingerprint(target) == before


def test_journal_show_reads_a_journal_without_changing_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal(path) as j:
        j.begin("a1b2c3", request(), "e1", 0.0)
    path.chmod(0o640)  # the operator's choice: left alone by a reader
    mode, digest, journal_mode, _ = _fingerprint(path)
    assert main(["journal", "show", "--db", str(path)]) == 0
    assert "attempt a1b2c3" in capsys.readouterr().out
    assert _fingerprint(path)[:3] == (mode, digest, journal_mode)


def test_journal_show_of_a_missing_file_creates_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.sqlite3"
    assert main(["journal", "show", "--db", str(missing)]) == 2
    assert "no journal at" in _one_error_line(capsys)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("settle", ["-5", "nan", "inf", "soon"])
def test_reconcile_refuses_a_bad_settle_time_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        settle: str) -> None:
    monkeypatch.setenv("BYBIT_API_KEY", "k")
    monkeypatch.setenv("BYBIT_API_SECRET", "s")
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    with pytest.raises(SystemExit) as exit_:
        main(["reconcile", "--exchange", "bybit", "--db", str(path), "--settle", settle])
    assert exit_.value.code == 2
    line = _one_error_line(capsys)
    assert "--settle" in line and settle in line


def test_reconcile_refuses_a_bad_settle_time_from_a_library_caller(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``run_reconcile`` called with a namespace that argparse did not check."""
    import argparse

    from fsm.cli_journal import run_reconcile

    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    args = argparse.Namespace(exchange="bybit", demo=False, testnet=False, db=path,
                              settle=float("nan"), record=False)

    def factory(*_: object) -> object:
        raise AssertionError("no exchange is built for a refused command")

    assert run_reconcile(args, exchange_factory=factory) == 2
    assert "settle_time" in _one_error_line(capsys)


def test_reconcile_with_a_directory_as_db_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BYBIT_API_KEY", "k")
    monkeypatch.setenv("BYBIT_API_SECRET", "s")
    target = _directory(tmp_path)
    before = _fingerprint(target)
    for extra in ([], ["--record"]):
        code = main(["reconcile", "--exchange", "bybit", "--db", str(target), *extra])
        assert code == 2
        line = _one_error_line(capsys)
        assert line.startswith("error: ") and str(target) in line
    assert _fingerprint(target) == before


def test_an_unexpected_error_in_a_command_is_one_line(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import fsm.demo

    def boom() -> int:
        raise RuntimeError("boom at GET /x?signature=abcdef")

    monkeypatch.setattr(fsm.demo, "main", boom)
    assert main(["demo"]) == 2
    line = _one_error_line(capsys)
    assert line == "error: RuntimeError: boom at GET /x?signature=<redacted>"


def test_a_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["journal", "show", "--bogus"])
    assert exit_.value.code == 2
    assert "--bogus" in _one_error_line(capsys)
