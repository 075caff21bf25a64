"""`codex-state logs`: backfill, filters, JSON lines, and follow mode against a live database."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from codex_state import LogEntry, StateRuntime
from codex_state.cli import main
from codex_state.cli.logs import timestamp
from tests.conftest import Backend

T1 = "0193c5a0-0000-7000-8000-0000000000c1"
REPO = Path(__file__).resolve().parents[1]


def entry(i: int, **fields: object) -> LogEntry:
    values: dict[str, object] = {
        "ts": 1_770_000_000 + i,
        "ts_nanos": 5_000_000,
        "level": "INFO",
        "target": "codex_core::codex",
        "message": f"message {i}",
        "module_path": "codex_core::codex",
        "file": "core/src/codex.rs",
        "line": i,
    }
    values.update(fields)
    return LogEntry.model_validate(values)


def run_cli(url: str, *args: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["--db", url, "logs", *args]) == 0
    return capsys.readouterr().out.splitlines()


@pytest.fixture
def db(shared_backend: Backend) -> tuple[StateRuntime, str]:
    return shared_backend.runtime(), shared_backend.url


def test_backfill_prints_the_last_rows_oldest_first(
    db: tuple[StateRuntime, str], capsys: pytest.CaptureFixture[str]
) -> None:
    runtime, url = db
    runtime.insert_logs([entry(i) for i in range(5)])
    lines = run_cli(url, "--backfill", "2", capsys=capsys)
    assert lines == [
        "2026-02-02T02:40:03.005Z INFO  [-] codex_core::codex - message 3",
        "2026-02-02T02:40:04.005Z INFO  [-] codex_core::codex - message 4",
    ]
    assert "\x1b[" not in "".join(lines)  # no colour when stdout is not a terminal


def test_filters_and_json_lines(
    db: tuple[StateRuntime, str], capsys: pytest.CaptureFixture[str]
) -> None:
    runtime, url = db
    runtime.insert_logs(
        [
            entry(0, level="ERROR", thread_id=T1),
            entry(1, level="error", module_path="tui::app"),
            entry(2, level="ERROR", file="50%_done.rs"),
            entry(3, level="INFO", thread_id=T1),
        ]
    )
    rows = [json.loads(line) for line in run_cli(url, "--json", "--level", "eRRor", capsys=capsys)]
    assert [r["message"] for r in rows] == ["message 0", "message 1", "message 2"]
    assert rows[0]["thread_id"] == T1
    assert rows[0]["time"] == "2026-02-02T02:40:00.005000Z"
    assert set(rows[0]) == {
        "time", "id", "ts", "ts_nanos", "level", "target", "message", "thread_id", "file", "line",
    }  # fmt: skip

    def messages(*args: str) -> list[str]:
        return [
            json.loads(line)["message"] for line in run_cli(url, "--json", *args, capsys=capsys)
        ]

    assert messages("--module", "tui", "--module", "nothing") == ["message 1"]
    assert messages("--file", "%_") == ["message 2"]
    assert messages("--thread-id", T1.upper()) == ["message 0", "message 3"]
    assert messages("--thread-id", T1, "--threadless", "--level", "info") == ["message 3"]
    assert messages("--from", "1770000002") == ["message 2", "message 3"]
    assert messages("--to", "2026-02-02T02:40:01Z") == ["message 0", "message 1"]
    assert messages("--from", "2026-02-02T03:40:01+01:00", "--to", "1770000001") == ["message 1"]


def test_timestamps() -> None:
    assert timestamp("1770000000") == 1_770_000_000
    assert timestamp("2026-02-02T02:40:00Z") == 1_770_000_000
    assert timestamp("2026-02-02T02:40:00") == 1_770_000_000  # naive means UTC
    with pytest.raises(Exception, match="RFC 3339"):
        timestamp("yesterday")


def _lines(stream: IO[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _next_json(lines: queue.Queue[str], timeout: float = 20.0) -> dict[str, object]:
    line = lines.get(timeout=timeout)
    value: dict[str, object] = json.loads(line)
    return value


def test_follow_sees_rows_written_after_it_started(db: tuple[StateRuntime, str]) -> None:
    runtime, url = db
    runtime.insert_logs([entry(i) for i in range(3)])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "codex_state.cli", "--db", url, "logs", "--json"]
    process = subprocess.Popen(
        [*command, "--follow", "--poll-ms", "20", "--backfill", "1", "--level", "warn"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = _lines(process.stdout)  # type: ignore[arg-type]
        runtime.insert_logs([entry(10, level="WARN"), entry(11, level="INFO")])
        assert _next_json(lines)["message"] == "message 10"
        # Rows written while it follows, in several batches, arrive in order and filtered.
        for batch in range(3):
            runtime.insert_logs([entry(20 + batch, level="WARN"), entry(30, level="DEBUG")])
        assert [_next_json(lines)["message"] for _ in range(3)] == [
            "message 20",
            "message 21",
            "message 22",
        ]
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode in (0, 130)
    assert "Traceback" not in stderr
    assert lines.empty()


def test_follow_starts_from_the_last_matching_row_when_backfill_is_empty(
    db: tuple[StateRuntime, str],
) -> None:
    runtime, url = db
    runtime.insert_logs([entry(i) for i in range(3)])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "codex_state.cli", "--db", url, "logs", "--json", "--follow",
         "--poll-ms", "20", "--backfill", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        lines = _lines(process.stdout)  # type: ignore[arg-type]
        deadline = time.monotonic() + 20
        # Keep writing until the follower shows something: the first row it prints must be
        # newer than everything that existed before it started.
        i = 100
        while lines.empty():
            assert time.monotonic() < deadline
            runtime.insert_log(entry(i))
            i += 1
            time.sleep(0.05)
        first = _next_json(lines)
        assert first["message"] != "message 2"
        assert int(str(first["line"])) >= 100
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)
