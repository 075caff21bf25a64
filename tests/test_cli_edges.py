"""The command line at its edges: one-line failures, read commands that create nothing,
read-only directories, hostile stored text, and homes that a newer Codex also uses."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from codex_state import LogEntry, StateRuntime, ThreadMetadata
from codex_state.cli import main
from codex_state.cli.common import error_line, printable
from codex_state.codex_files import (
    codex_sqlite_home,
    is_deleted_by_newer_codex,
    is_newer_codex_database_name,
    newer_codex_databases,
)
from codex_state.errors import DatabaseError, StateError
from tests.codex_schema import create_codex_database, create_newer_codex_database

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "codex-home"
LIVE_IDS = 4
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b31m title"
ESCAPED = "\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m title"


@pytest.fixture(autouse=True)
def _no_codex_sqlite_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODEX_SQLITE_HOME", raising=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    target = tmp_path / "home"
    shutil.copytree(EXAMPLE, target)
    return target


def run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit:  # argparse usage errors
        code = int(exit.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("codex-state: error: "), lines
    assert "Traceback" not in err
    return lines[0].removeprefix("codex-state: error: ")


def files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


# ------------------------------------------------------------------------- one-line failures


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["logs", "--backfill", "100000000000000000000"], "argument --backfill: must be from 0"),
        (["logs", "--backfill", "-1"], "argument --backfill: must be from 0"),
        (["logs", "--from", "100000000000000000000"], "argument --from: epoch seconds out of"),
        (["logs", "--to", "-100000000000000000000"], "argument --to: epoch seconds out of"),
        (["logs", "--from", "yesterday"], "argument --from: not RFC 3339 or epoch seconds"),
        (["logs", "--poll-ms", "0"], "argument --poll-ms: must be from 1 to 86400000"),
        (["logs", "--poll-ms", "1e3"], "argument --poll-ms: not an integer: '1e3'"),
        (["threads", "--limit", "99999999999999999999"], "argument --limit: must be from 0"),
        (["threads", "--sort", "title"], "argument --sort: invalid choice"),
        (["frobnicate"], "argument COMMAND: invalid choice"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(
    home: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run("--home", str(home), *args, capsys=capsys)
    assert code == 2 and out == ""
    assert one_error_line(err).startswith(message)
    assert "(see `codex-state" in err


def test_the_reported_traceback_is_one_line_now(home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "codex_state.cli", "--home", str(home), "logs", "--backfill",
         "100000000000000000000"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_error_lines_keep_the_first_line_only() -> None:
    err = DatabaseError(
        "query_logs failed: boom (Background on this error at: https://sqlalche.me/e/21/x)\n"
        "[SQL: SELECT ...]\n[parameters: ('the secret',)]"
    )
    assert error_line(err) == "query_logs failed: boom"
    assert error_line(StateError("")) == "StateError"
    assert error_line(FileNotFoundError(2, "No such file", "/x")) == "No such file: /x"
    assert error_line(KeyError("k")) == "internal error: KeyError: 'k'"
    assert error_line(StateError("bad \x1b[2J name")) == "bad \\x1b[2J name"


def test_an_unexpected_error_is_one_line_too(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("something\nwent wrong")

    monkeypatch.setattr("codex_state.cli.threads.sync_codex_home", broken)
    code, _, err = run("--home", str(home), "backfill", capsys=capsys)
    assert code == 1
    assert one_error_line(err) == "internal error: RuntimeError: something"
    monkeypatch.setenv("CODEX_STATE_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["--home", str(home), "backfill", "--reindex"])


def test_undecodable_filter_bytes_are_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "state_4.sqlite")
    assert run("--db", db, "init", capsys=capsys)[0] == 0
    argument = os.fsdecode(b"mod\xff")  # how Python passes undecodable argv bytes
    code, _, err = run("--db", db, "logs", "--module", argument, capsys=capsys)
    assert code == 1
    assert one_error_line(err) == (
        "invalid log filter module_like: text contains a lone surrogate, which is not valid UTF-8"
    )


def test_warnings_are_one_escaped_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = (
        home
        / "sessions"
        / "2026"
        / "02"
        / "20"
        / f"rollout-2026-02-20T00-00-00-{uuid.uuid4()}.jsonl"
    )
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("not json\x1b[2J\n")
    code, out, err = run("--home", str(home), "backfill", capsys=capsys)
    assert code == 0 and "(1 failed)" in out
    assert err.count("\n") == 1 and err.startswith("codex-state: warning: backfill: ")
    assert "\x1b" not in err


# ----------------------------------------------------------------- read commands create nothing


@pytest.mark.parametrize("command", [["threads"], ["thread", str(uuid.uuid4())], ["logs"]])
def test_a_missing_home_is_an_error_not_a_new_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    missing = tmp_path / "no-such-home"
    code, out, err = run("--home", str(missing), *command, capsys=capsys)
    assert code == 1 and out == ""
    assert one_error_line(err) == f"codex home {missing} does not exist"
    assert not missing.exists()


@pytest.mark.parametrize("form", ["path", "url"])
@pytest.mark.parametrize("command", [["threads"], ["logs"]])
def test_a_mistyped_db_is_an_error_not_a_new_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str, command: list[str]
) -> None:
    typo = tmp_path / "stat_4.sqlite"
    db = str(typo) if form == "path" else f"sqlite:///{typo}"
    code, _, err = run("--db", db, *command, capsys=capsys)
    assert code == 1
    assert one_error_line(err) == f"no database file at {typo}"
    assert files(tmp_path) == []


def test_a_home_without_a_database_is_left_without_one(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = files(home)
    code, _, err = run("--home", str(home), "logs", capsys=capsys)
    assert code == 1
    assert one_error_line(err).startswith(f"no state database at {home / 'state_4.sqlite'}; ")
    assert files(home) == before


def test_an_empty_database_file_is_not_replaced_by_reads(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = home / "state_4.sqlite"
    path.touch()
    for command in (["threads"], ["logs"], ["thread", str(uuid.uuid4())]):
        code, _, err = run("--home", str(home), *command, capsys=capsys)
        assert code == 1
        assert one_error_line(err).startswith(f"{path} is empty (0 bytes), not a state database")
    assert path.stat().st_size == 0
    code, out, err = run("--home", str(home), "init", capsys=capsys)  # init may, and says so
    assert code == 0 and "state database ready" in out
    assert (
        err == f"codex-state: note: {path} is empty (0 bytes); creating the state database in it\n"
    )
    assert path.stat().st_size > 0


@pytest.mark.parametrize("command", [["threads"], ["init"], ["backfill"]])
def test_a_home_that_is_a_file_is_named_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    code, _, err = run("--home", str(not_a_dir), *command, capsys=capsys)
    assert code == 1
    assert one_error_line(err) == f"cannot use codex home {not_a_dir}: it is not a directory"


def test_backfill_needs_the_home_it_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo-home"
    db = tmp_path / "index" / "state_4.sqlite"
    code, _, err = run("--home", str(missing), "--db", str(db), "backfill", capsys=capsys)
    assert code == 1
    assert one_error_line(err) == f"codex home {missing} does not exist"
    assert files(tmp_path) == []


def test_init_may_create_the_home_and_a_db_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("--home", str(tmp_path / "new"), "init", capsys=capsys)[0] == 0
    assert (tmp_path / "new" / "state_4.sqlite").is_file()
    assert run("--db", str(tmp_path / "a" / "b.sqlite"), "init", capsys=capsys)[0] == 0
    assert (tmp_path / "a" / "b.sqlite").is_file()


def test_a_database_needing_adoption_is_not_migrated_by_reads(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = home / "state_4.sqlite"
    create_codex_database(path)
    before = path.read_bytes()
    code, _, err = run("--home", str(home), "threads", capsys=capsys)
    assert code == 1
    assert one_error_line(err) == (
        f"{path}: the database was created by Codex and is adopted on its first read-write "
        f"open, but it was opened read-only; run `codex-state --home {home} init` once"
    )
    assert path.read_bytes() == before
    assert run("--home", str(home), "init", capsys=capsys)[0] == 0
    code, _, err = run("--home", str(home), "threads", capsys=capsys)
    assert code == 0 and "backfill is pending" in err


def test_postgresql_reads_create_no_tables(
    pg_schema_url: str, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run("--db", pg_schema_url, "threads", capsys=capsys)
    assert code == 1
    assert "the database has no codex-state schema yet" in one_error_line(err)
    assert "init` once" in err
    assert run("--home", str(home), "--db", pg_schema_url, "backfill", capsys=capsys)[0] == 0
    code, out, _ = run("--db", pg_schema_url, "threads", "--json", capsys=capsys)
    assert code == 0 and len(out.splitlines()) == LIVE_IDS


# ------------------------------------------------------------------------ read-only directory


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory another (unprivileged) user may enter: tmp_path's parents are private."""
    directory = Path(tempfile.mkdtemp(prefix="codex-state-ro-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        for path in [directory, *directory.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(directory)


def _as_unprivileged(command: list[str]) -> list[str]:
    """Root ignores file modes: run as `nobody` to see what a user would."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a read-only directory cannot be made")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]


@pytest.mark.parametrize("leftover_wal", [False, True])
def test_a_database_in_a_read_only_directory_can_be_listed(
    shared_tmp: Path, leftover_wal: bool
) -> None:
    home = shared_tmp / "home"
    shutil.copytree(EXAMPLE, home)
    assert main(["--home", str(home), "backfill"]) == 0
    path = home / "state_4.sqlite"
    if leftover_wal:  # a writer is still open: SQLite then needs the -wal and -shm files
        writer = sqlite3.connect(path)
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("UPDATE threads SET title = 'from the WAL' WHERE archived = 0")
        writer.commit()
        for name in ("state_4.sqlite-wal", "state_4.sqlite-shm"):
            (home / name).chmod(0o644)
    for path_ in [home, *home.rglob("*")]:
        path_.chmod(0o555 if path_.is_dir() else 0o444)
    before = files(home)
    command = [sys.executable, "-m", "codex_state.cli", "--home", str(home), "threads", "--json"]
    done = subprocess.run(
        _as_unprivileged(command), capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    after = files(home)
    if leftover_wal:
        writer.close()
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == LIVE_IDS
    if leftover_wal:
        assert {row["title"] for row in rows} == {"from the WAL"}
    assert after == before  # nothing created, not even -wal or -shm


# -------------------------------------------------------------------------- hostile stored text


def test_control_characters_are_escaped_in_human_output_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "state_4.sqlite"
    thread_id = uuid.uuid4()
    with StateRuntime.from_url(f"sqlite:///{db}", "openai") as runtime:
        when = datetime(2026, 2, 1, tzinfo=UTC)
        runtime.upsert_thread(
            ThreadMetadata(
                id=thread_id, rollout_path=Path("/r.jsonl"), created_at=when, updated_at=when,
                source="cli\x1b[5m", model_provider="open\x1bai", cwd=Path("/w"),
                title=HOSTILE, first_user_message=HOSTILE,
            )
        )  # fmt: skip
        runtime.insert_log(
            LogEntry(ts=1, level="WA\x1bRN", target="t\x07", message=f"{HOSTILE}\nline\r2\tend")
        )
    outputs = []
    for command in (["threads"], ["thread", str(thread_id)], ["logs"]):
        code, out, _ = run("--db", str(db), *command, capsys=capsys)
        assert code == 0
        assert not any(c in out for c in "\x1b\x07\x9b\r"), out
        outputs.append(out)
    threads, thread, logs = outputs
    assert ESCAPED in threads and "cli\\x1b[5m" in threads and "open\\x1bai" in threads
    assert f"title:              {ESCAPED}" in thread
    assert f"WA\\x1bRN [-] t\\x07 - {ESCAPED}\nline\\x0d2\tend\n" in logs  # lines and tabs kept

    code, out, _ = run("--db", str(db), "threads", "--json", capsys=capsys)
    assert json.loads(out)["title"] == HOSTILE  # JSON keeps the text, as JSON escapes
    assert "\x1b" not in out and "\\u001b" in out
    code, out, _ = run("--db", str(db), "logs", "--json", capsys=capsys)
    assert json.loads(out)["message"].startswith(HOSTILE)


def test_log_times_no_date_can_hold_are_shown_not_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "state_4.sqlite"
    with StateRuntime.from_url(f"sqlite:///{db}", "openai") as runtime:
        runtime.insert_logs(
            [
                LogEntry(ts=2**63 - 1, ts_nanos=5, level="INFO", target="t", message="far"),
                LogEntry(ts=0, ts_nanos=1_500_000_000, level="INFO", target="t", message="leap"),
            ]
        )
    code, out, _ = run("--db", str(db), "logs", capsys=capsys)
    assert code == 0
    assert out.splitlines() == [
        "ts=9223372036854775807,5ns INFO  [-] t - far",
        "1970-01-01T00:00:01.500Z INFO  [-] t - leap",
    ]
    code, out, _ = run("--db", str(db), "logs", "--json", capsys=capsys)
    assert [json.loads(line)["time"] for line in out.splitlines()] == [
        None,
        "1970-01-01T00:00:01.500000Z",
    ]


def test_printable() -> None:
    assert printable("plain text, naïve 日本") == "plain text, naïve 日本"
    assert printable("a\nb\tc") == "a\\x0ab\\x09c"
    assert printable("a\nb\tc\r", multiline=True) == "a\nb\tc\\x0d"
    assert printable("\x00\x7f\x85\udcff") == "\\x00\\x7f\\x85\\udcff"


# ----------------------------------------------------------- homes a newer Codex also uses


def _codex_file(path: Path) -> bytes:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE threads (id TEXT PRIMARY KEY)")
    conn.commit()
    conn.close()
    return path.read_bytes()


def test_codex_file_names() -> None:
    assert is_newer_codex_database_name("state_5.sqlite")
    assert is_newer_codex_database_name("state_12.sqlite")
    assert is_newer_codex_database_name("logs_1.sqlite")
    assert is_newer_codex_database_name("logs_2.sqlite")
    for name in ("state_4.sqlite", "state_3.sqlite", "state.sqlite", "state_5.sqlite-wal",
                 "logs.sqlite", "state_5.sqlite_backup"):  # fmt: skip
        assert not is_newer_codex_database_name(name), name
    assert is_deleted_by_newer_codex("state_4.sqlite")
    assert is_deleted_by_newer_codex("state.sqlite")
    assert not is_deleted_by_newer_codex("index.sqlite")
    assert not is_deleted_by_newer_codex("state_5.sqlite")


def test_codex_sqlite_home_is_resolved_as_codex_does(tmp_path: Path) -> None:
    assert codex_sqlite_home({}) is None
    assert codex_sqlite_home({"CODEX_SQLITE_HOME": "  "}) is None
    assert codex_sqlite_home({"CODEX_SQLITE_HOME": f" {tmp_path} "}) == tmp_path
    assert codex_sqlite_home({"CODEX_SQLITE_HOME": "rel"}) == Path.cwd() / "rel"
    (tmp_path / "state_5.sqlite").touch()
    (tmp_path / "logs_2.sqlite").touch()
    (tmp_path / "state_5.sqlite-wal").touch()
    (tmp_path / "state_4.sqlite").touch()
    assert [p.name for p in newer_codex_databases(tmp_path)] == ["logs_2.sqlite", "state_5.sqlite"]
    assert newer_codex_databases(tmp_path / "missing") == []


def test_reads_in_a_newer_codex_home_say_what_is_there(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_5 = home / "state_5.sqlite"
    before = _codex_file(state_5)
    code, _, err = run("--home", str(home), "threads", capsys=capsys)
    assert code == 1
    assert one_error_line(err) == (
        f"no codex-state database at {home / 'state_4.sqlite'}: {state_5} belongs to a newer "
        "Codex, which codex-state does not read; index the rollouts into a database of its "
        f"own with `codex-state --home {home} --db PATH backfill`"
    )
    assert state_5.read_bytes() == before and files(home).count("state_4.sqlite") == 0


@pytest.mark.parametrize("name", ["state_5.sqlite", "logs_2.sqlite"])
@pytest.mark.parametrize("command", [["threads"], ["logs"], ["init"], ["backfill"]])
def test_codex_own_files_are_never_opened(
    home: Path, capsys: pytest.CaptureFixture[str], name: str, command: list[str]
) -> None:
    path = home / name
    before = _codex_file(path)
    code, _, err = run("--home", str(home), "--db", str(path), *command, capsys=capsys)
    assert code == 1
    assert one_error_line(err) == (
        f"{path} is a newer Codex's own database, which codex-state never opens "
        "(it reads and writes state_4.sqlite only)"
    )
    assert path.read_bytes() == before
    assert not (home / f"{name}-wal").exists() and not (home / f"{name}-shm").exists()


@pytest.mark.parametrize("command", [["init"], ["backfill"]])
def test_writes_stay_out_of_a_newer_codex_home(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    state_5 = home / "state_5.sqlite"
    before = _codex_file(state_5)
    code, _, err = run("--home", str(home), *command, capsys=capsys)
    assert code == 1
    assert one_error_line(err) == (
        f"will not keep state_4.sqlite in {home}: it holds state_5.sqlite of a newer Codex, "
        "which deletes state_4.sqlite there when it starts; keep codex-state's database "
        "elsewhere with --db PATH (e.g. --db ~/.codex-state/state_4.sqlite)"
    )
    assert not (home / "state_4.sqlite").exists() and state_5.read_bytes() == before
    # The way out: the index elsewhere, the rollouts still from the home.
    index = tmp_path / "index" / "state_4.sqlite"
    code, out, _ = run("--home", str(home), "--db", str(index), *command, capsys=capsys)
    assert code == 0, out
    code, out, _ = run("--db", str(index), "threads", "--json", capsys=capsys)
    assert code == 0 and len(out.splitlines()) == (LIVE_IDS if command == ["backfill"] else 0)
    assert state_5.read_bytes() == before


def test_codex_sqlite_home_is_honoured(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_home = tmp_path / "codex-sqlite"
    sqlite_home.mkdir()
    state_5 = sqlite_home / "state_5.sqlite"
    before = _codex_file(state_5)
    monkeypatch.setenv("CODEX_SQLITE_HOME", str(sqlite_home))
    code, _, err = run("--home", str(home), "threads", capsys=capsys)
    assert code == 1 and f": {state_5} belongs to a newer Codex" in one_error_line(err)
    # Codex deletes old state files in its SQLite home only: the codex home is safe.
    assert run("--home", str(home), "backfill", capsys=capsys)[0] == 0
    assert (home / "state_4.sqlite").is_file()
    # ... unless the codex home is the SQLite home, even before Codex made its files there.
    monkeypatch.setenv("CODEX_SQLITE_HOME", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    code, _, err = run("--db", str(tmp_path / "empty" / "state_4.sqlite"), "init", capsys=capsys)
    assert code == 1
    assert "it is Codex's SQLite home ($CODEX_SQLITE_HOME), which deletes state_4.sqlite" in err
    assert files(tmp_path / "empty") == [] and state_5.read_bytes() == before


@pytest.mark.parametrize("command", [["threads"], ["logs"], ["init"], ["backfill"]])
def test_a_february_2026_codex_database_is_named_and_kept(
    home: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    path = home / "state_4.sqlite"
    create_newer_codex_database(path)
    before = path.read_bytes()
    code, _, err = run("--home", str(home), *command, capsys=capsys)
    assert code == 1
    assert one_error_line(err) == (
        f"{path} was made by a Codex build of 10-12 February 2026 (it has that build's memory "
        "tables, stage1_outputs and jobs), which codex-state cannot adopt; it was left as it "
        "is: keep codex-state's database elsewhere with --db PATH, or move this file aside and "
        "run `codex-state backfill`"
    )
    assert path.read_bytes() == before
    assert files(home).count("state_4.sqlite-journal") == 0


def test_read_only_file_mode_is_not_needed_for_listing(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A database file the user may not write (a copy from a backup, say) is still readable.
    assert run("--home", str(home), "backfill", capsys=capsys)[0] == 0
    path = home / "state_4.sqlite"
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    code, out, _ = run("--home", str(home), "threads", "--json", capsys=capsys)
    assert code == 0 and len(out.splitlines()) == LIVE_IDS
