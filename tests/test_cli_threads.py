"""`codex-state backfill`, `threads` and `thread`: in-process via `main` and as a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from codex_state import BackfillStatus, StateError, StateRuntime
from codex_state import backfill as backfill_module
from codex_state.cli import main
from codex_state.errors import DatabaseError
from codex_state.repositories import BackfillRepository, ThreadRepository
from tests.conftest import Backend
from tests.rollout_files import START, line, tokens, write_rollout

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "codex-home"
TOOLS_THREAD = "019c7d88-5e21-7c03-a1f4-2b9d8e7c6a50"
ARCHIVED_THREAD = "019c4e07-91d2-7a55-b3c8-0e6f1d2a9c47"
# Live example threads, newest first (the demo gives each file its last line's time as mtime).
LIVE = [
    "019c7f02-c4b9-7e6d-9a18-3f2e1d0c9b8a",
    TOOLS_THREAD,
    "019c5b3c-0a6e-7f19-8d2b-c4e5f6a7b8c9",
    "019c2a41-3b7e-7d20-9f4a-51c0e2a8b611",
]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A scratch copy of the example home, with increasing mtimes in creation order."""
    target = tmp_path / "home"
    shutil.copytree(EXAMPLE, target)
    for n, path in enumerate(sorted(target.rglob("rollout-*.jsonl"), key=lambda p: p.name)):
        os.utime(path, (1_771_000_000 + n * 100, 1_771_000_000 + n * 100))
    return target


def run(home: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--home", str(home), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_backfill_then_threads_table(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(home, "threads", capsys=capsys)
    assert code == 1 and out == ""
    assert err == (
        f"codex-state: error: no state database at {home / 'state_4.sqlite'}; "
        f"`codex-state --home {home} backfill` creates it and indexes the rollouts\n"
    )
    assert not (home / "state_4.sqlite").exists()  # a read command created nothing

    code, out, _ = run(home, "backfill", capsys=capsys)
    assert code == 0
    assert out.startswith(f"indexed 5 of 5 rollout files from {home} (0 failed); ")
    assert out.endswith("; backfill complete\n") and len(out.splitlines()) == 1

    code, out, err = run(home, "threads", capsys=capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["UPDATED", "ID", "SOURCE", "PROVIDER", "TITLE"]
    assert [line.split()[2] for line in lines[1:]] == LIVE
    assert "Bump the HTTP client to 0.28 and fix what breaks" in lines[1]
    assert lines[2].split()[3:5] == ["vscode", "azure"]

    code, out, _ = run(home, "backfill", capsys=capsys)  # a sync: nothing changed, nothing read
    assert code == 0 and "indexed 0 of 5 rollout files" in out and "; 5 unchanged, " in out
    code, out, _ = run(home, "backfill", "--reindex", capsys=capsys)
    assert code == 0 and "indexed 5 of 5" in out and "; 0 unchanged, " in out


def test_threads_filters_sort_limit_and_json(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(home, "backfill", capsys=capsys)

    def ids(*args: str) -> list[str]:
        code, out, _ = run(home, "threads", "--json", *args, capsys=capsys)
        assert code == 0
        return [json.loads(line)["id"] for line in out.splitlines()]

    assert ids() == LIVE
    assert ids("--archived") == [ARCHIVED_THREAD]
    assert ids("--source", "cli") == [LIVE[0], LIVE[3]]
    assert ids("--source", "cli", "--source", "exec") == [LIVE[0], LIVE[2], LIVE[3]]
    assert ids("--provider", "azure") == [TOOLS_THREAD]
    assert ids("--limit", "2") == LIVE[:2]
    assert ids("--limit", "0") == LIVE
    assert ids("--sort", "created") == LIVE
    _, out, _ = run(home, "threads", "--json", "--archived", capsys=capsys)
    row = json.loads(out)
    assert row["archived"] is True and row["archived_at"] is not None
    assert row["title"] == "Why do forecasts show the wrong day near midnight?"


def test_thread_shows_metadata_and_dynamic_tools(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(home, "backfill", capsys=capsys)
    code, out, _ = run(home, "thread", TOOLS_THREAD.upper(), capsys=capsys)
    assert code == 0
    assert f"id:                 {TOOLS_THREAD}" in out
    assert "dynamic_tools:      2" in out and "- run_notebook:" in out
    code, out, _ = run(home, "thread", TOOLS_THREAD, "--json", capsys=capsys)
    value = json.loads(out)
    assert value["model_provider"] == "azure"
    assert [tool["name"] for tool in value["dynamic_tools"]] == [
        "open_notebook_cell",
        "run_notebook",
    ]
    assert value["dynamic_tools"][0]["inputSchema"]["required"] == ["cell"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["thread", "not-a-uuid"], "invalid thread id: 'not-a-uuid'"),
        (["thread", "00000000-0000-0000-0000-000000000000"], "thread not found"),
    ],
)
def test_errors_are_one_line(
    home: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert run(home, "init", capsys=capsys)[0] == 0
    code, out, err = run(home, *args, capsys=capsys)
    assert code == 1 and out == ""
    assert err.startswith("codex-state: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_backfill_while_another_runs_is_an_error(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with StateRuntime.init(home, "openai") as runtime:
        claimed = runtime.run_in_transaction(
            lambda s: BackfillRepository(s).try_claim_backfill("elsewhere", 900), write=True
        )
        assert claimed is not None
    code, _, err = run(home, "backfill", capsys=capsys)
    assert code == 1
    assert err.startswith("codex-state: error: a backfill of this database is already running")


def test_cli_with_db_url_on_every_backend(
    backend: Backend, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if backend.name == "sqlite_memory":
        pytest.skip("each CLI run would get its own empty in-memory database")
    # The rollouts come from --home, the rows go to --db.
    code, out, _ = run(home, "--db", backend.url, "backfill", capsys=capsys)
    assert code == 0 and "indexed 5 of 5" in out
    code, out, _ = run(home, "--db", backend.url, "threads", "--json", capsys=capsys)
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == LIVE


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "codex_state.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.mark.slow
def test_cli_as_a_subprocess(home: Path, tmp_path: Path) -> None:
    done = _cli("--home", str(home), "backfill")
    assert done.returncode == 0, done.stderr
    assert "indexed 5 of 5" in done.stdout
    assert "[" not in done.stderr  # no progress bar when stderr is not a terminal
    listed = _cli("--home", str(home), "threads")
    assert listed.returncode == 0
    assert [line.split()[2] for line in listed.stdout.splitlines()[1:]] == LIVE

    bad = _cli("--home", str(home), "thread", "xyz")
    assert bad.returncode == 1
    assert bad.stderr == "codex-state: error: invalid thread id: 'xyz'\n"
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    broken = _cli("--home", str(not_a_dir), "threads")
    assert broken.returncode == 1
    assert "Traceback" not in broken.stderr
    assert broken.stderr.startswith("codex-state: error: cannot use codex home")


# ------------------------------------------------------------------------ sync and failures


def test_backfill_after_new_files_reads_only_those(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(home, "backfill", capsys=capsys)[0] == 0
    read: list[str] = []
    real = backfill_module.extract_metadata_from_rollout

    def extract(path: Any, provider: str) -> Any:
        read.append(str(path))
        return real(path, provider)

    monkeypatch.setattr(backfill_module, "extract_metadata_from_rollout", extract)
    new = write_rollout(home, created=START + timedelta(days=40), message="a new session")
    code, out, _ = run(home, "backfill", capsys=capsys)
    assert code == 0 and read == [str(new)]
    assert out.startswith(f"indexed 1 of 6 rollout files from {home} (0 failed); 5 unchanged, ")
    code, out, _ = run(home, "threads", "--limit", "1", "--sort", "created", capsys=capsys)
    assert "a new session" in out


def test_backfill_reports_unknown_types_skipped_tools_and_replaced_characters(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_rollout(home, message="nul\u0000here", tools=[{"type": "future"}])
    with path.open("a") as file:
        file.write(line("world_state", {}) + "\n" + line("event_msg", {"type": "new_kind"}) + "\n")
    code, out, _ = run(home, "backfill", capsys=capsys)
    assert code == 0
    assert (
        "; 0 broken lines, 2 lines of unknown types, 1 skipped tools, 2 replaced characters; "
        "backfill complete"
    ) in out


def test_database_error_fails_the_backfill_in_one_line(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(*_: object) -> None:
        raise DatabaseError("upsert_threads failed: database or disk is full")

    monkeypatch.setattr(ThreadRepository, "upsert_threads", full_disk)
    code, out, err = run(home, "backfill", capsys=capsys)
    assert code == 1 and out == ""
    assert err == "codex-state: error: upsert_threads failed: database or disk is full\n"
    monkeypatch.undo()
    with StateRuntime.init(home, "openai") as runtime:
        state = runtime.get_backfill_state()
        assert state.status is BackfillStatus.PENDING and state.last_watermark is None
    code, out, _ = run(home, "backfill", capsys=capsys)
    assert code == 0 and "indexed 5 of 5" in out and out.endswith("backfill complete\n")


@pytest.mark.parametrize("damage", ["garbage", "drop threads", "drop rollout_files"])
def test_a_corrupt_database_is_never_reported_complete(
    home: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    assert run(home, "backfill", capsys=capsys)[0] == 0
    database = home / "state_4.sqlite"
    if damage == "garbage":
        for suffix in ("-wal", "-shm"):
            database.with_name(database.name + suffix).unlink(missing_ok=True)
        database.write_bytes(b"this is not a database, " * 200)
    else:
        conn = sqlite3.connect(database)
        conn.execute(f"DROP TABLE {damage.split()[1]}")
        conn.commit()
        conn.close()
    code, out, err = run(home, "backfill", capsys=capsys)  # nothing changed in the home
    assert code == 1 and "complete" not in out
    assert err.startswith("codex-state: error: ") and len(err.splitlines()) == 1


def _watch_process(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "codex_state.cli",
            "--home",
            str(home),
            "backfill",
            "--watch",
            *args,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(condition: Any, what: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # waiting for the watching process, not ageing a lease


def _tokens_of(home: Path, thread_id: str) -> int | None:
    try:
        with StateRuntime.init(home, "openai") as runtime:
            thread = runtime.get_thread(thread_id)
    except StateError:
        return None  # not created yet
    return None if thread is None else thread.tokens_used


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_watch_keeps_the_index_current_until_stopped(home: Path, stop: signal.Signals) -> None:
    path = next(home.rglob(f"rollout-*{LIVE[0]}.jsonl"))
    watcher = _watch_process(home, "--interval", "0.1")
    try:
        _wait(lambda: _tokens_of(home, LIVE[0]) is not None, "the first sync", watcher)
        with path.open("a") as file:  # Codex, another process, appends a token count
            file.write(tokens(123_456_789) + "\n")
        _wait(lambda: _tokens_of(home, LIVE[0]) == 123_456_789, "the appended line", watcher)
        watcher.send_signal(stop)
        out, err = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("indexed 5 of 5 rollout files")
    assert lines[1].startswith("stopped after ") and "1 appended" in lines[1]
    assert lines[1].endswith("backfill complete")
    assert "watching" in err and "Traceback" not in err
    with StateRuntime.init(home, "openai") as runtime:
        assert runtime.get_backfill_state().status is BackfillStatus.COMPLETE
        owner = runtime.run_in_transaction(
            lambda s: s.execute(text("SELECT lease_owner FROM backfill_state")).scalar()
        )
    assert owner is None  # released


def test_interval_is_range_checked(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--home", str(home), "backfill", "--watch", "--interval", "0"])
    assert exited.value.code == 2
    assert "must be from 0.01 to 86400 seconds" in capsys.readouterr().err
