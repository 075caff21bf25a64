"""Backfill of a codex home: rows, watermark, batches, failures, the lease, kills and races."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from codex_state import (
    BackfillStats,
    BackfillStatus,
    DynamicToolSpec,
    ManualClock,
    SortKey,
    StateRuntime,
)
from codex_state.backfill import (
    BackfillProgress,
    backfill_codex_home,
    find_rollout_files,
    is_dead_local_owner,
)
from codex_state.errors import BackfillRunningError, DatabaseError, InvalidInputError
from codex_state.repositories import BackfillRepository
from codex_state.repositories.rollout_files import RolloutFileRepository
from codex_state.sync import sync_codex_home
from tests.conftest import Backend
from tests.rollout_files import START, TOOL_SPECS, make_home, write_rollout

REPO = Path(__file__).resolve().parent.parent
REAL_ROLLOUTS = Path("/work/shared/data/codex-rollouts")
NOW = 1_800_000_000
LEASE = 900


class _Lease:
    """The backfill lease methods of `BackfillRepository`, each in its own write unit."""

    def __init__(self, runtime: StateRuntime) -> None:
        self._runtime = runtime

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._runtime.run_in_transaction(
                lambda s: getattr(self._runtime.repository(BackfillRepository, s), name)(
                    *args, **kwargs
                ),
                write=True,
            )

        return call


def _lease(runtime: StateRuntime) -> _Lease:
    return _Lease(runtime)


def stored_ids(runtime: StateRuntime, archived: bool = False) -> set[uuid.UUID]:
    return set(runtime.list_thread_ids(10_000, archived_only=archived))


def test_backfill_indexes_live_and_archived_rollouts(backend: Backend, codex_home: Path) -> None:
    runtime = backend.runtime(clock=ManualClock(NOW))
    live_id, archived_id, tools_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    live = write_rollout(
        codex_home, live_id, message="## My request for Codex:\n fix it ", tokens=42, mtime=NOW - 5
    )
    archived = write_rollout(codex_home, archived_id, archived=True, mtime=NOW - 50)
    write_rollout(
        codex_home, tools_id, created=START + timedelta(days=1), tools=TOOL_SPECS, provider=None
    )
    (codex_home / "sessions" / "notes.txt").write_text("not a rollout")

    stats = backfill_codex_home(runtime, codex_home)

    assert stats == BackfillStats(scanned=3, upserted=3, failed=0)
    thread = runtime.get_thread(live_id)
    assert thread is not None
    assert thread.rollout_path == live
    assert thread.title == "fix it" and thread.first_user_message == "fix it"
    assert thread.tokens_used == 42
    assert thread.created_at == START
    assert thread.updated_at == datetime.fromtimestamp(NOW - 5, UTC)
    assert (thread.source, thread.model_provider, thread.git_sha) == ("cli", "openai", "abc123")
    assert thread.archived_at is None
    gone = runtime.get_thread(archived_id)
    assert gone is not None and gone.rollout_path == archived
    assert gone.archived_at == datetime.fromtimestamp(NOW - 50, UTC)
    assert stored_ids(runtime, archived=True) == {archived_id}
    with_tools = runtime.get_thread(tools_id)
    assert with_tools is not None and with_tools.model_provider == "test-provider"
    assert runtime.get_dynamic_tools(tools_id) == [
        DynamicToolSpec.model_validate(spec) for spec in TOOL_SPECS
    ]
    state = runtime.get_backfill_state()
    assert state.status is BackfillStatus.COMPLETE
    assert state.last_watermark == find_rollout_files(codex_home)[-1].watermark
    assert state.last_watermark.startswith("sessions/2026/02/11/")


def test_watermark_order_is_plain_string_order(codex_home: Path) -> None:
    paths = [*make_home(codex_home, 4), write_rollout(codex_home, archived=True)]
    found = find_rollout_files(codex_home)
    assert [rollout.watermark for rollout in found] == sorted(
        path.relative_to(codex_home).as_posix() for path in paths
    )
    assert found[0].archived and found[0].watermark.startswith("archived_sessions/")


def test_batches_checkpoint_and_report_progress(backend: Backend, codex_home: Path) -> None:
    runtime = backend.runtime()
    make_home(codex_home, 5)
    seen: list[tuple[BackfillProgress, Any]] = []
    stats = backfill_codex_home(
        runtime,
        codex_home,
        batch_size=2,
        progress=lambda p: seen.append((p, runtime.get_backfill_state().last_watermark)),
    )
    assert stats == BackfillStats(scanned=5, upserted=5, failed=0)
    watermarks = [rollout.watermark for rollout in find_rollout_files(codex_home)]
    assert [(p.done, p.total, p.upserted) for p, _ in seen] == [
        (0, 5, 0),
        (2, 5, 2),
        (4, 5, 4),
        (5, 5, 5),
    ]
    assert [mark for _, mark in seen[1:]] == [watermarks[1], watermarks[3], watermarks[4]]


def test_unreadable_rollouts_are_counted_and_skipped(backend: Backend, codex_home: Path) -> None:
    runtime = backend.runtime()
    good = make_home(codex_home, 2)
    day = good[0].parent
    (day / "rollout-2026-02-10T09-30-00-empty.jsonl").write_text("")
    (day / "rollout-2026-02-10T09-31-00-junk.jsonl").write_text("not json\n{]\n")
    stats = backfill_codex_home(runtime, codex_home)
    assert stats == BackfillStats(scanned=4, upserted=2, failed=2)
    assert len(stored_ids(runtime)) == 2
    assert runtime.get_backfill_state().status is BackfillStatus.COMPLETE


def test_resume_skips_files_up_to_the_watermark(backend: Backend, codex_home: Path) -> None:
    clock = ManualClock(NOW)
    runtime = backend.runtime(clock=clock)
    paths = make_home(codex_home, 4)
    watermarks = [rollout.watermark for rollout in find_rollout_files(codex_home)]
    # The seed's checkpoint: running, no lease owner (a Codex that died mid-backfill).
    runtime.checkpoint_backfill(watermarks[1])
    with pytest.raises(BackfillRunningError):
        backfill_codex_home(runtime, codex_home, lease_seconds=LEASE)
    clock.advance(LEASE)
    stats = backfill_codex_home(runtime, codex_home)
    assert stats.scanned == 2 and stats.upserted == 2
    assert {runtime.find_rollout_path_by_id(i) for i in stored_ids(runtime)} == set(paths[2:])
    assert runtime.get_backfill_state().last_watermark == watermarks[-1]


def test_complete_backfill_is_not_repeated_but_reindex_finds_skipped_files(
    backend: Backend, codex_home: Path
) -> None:
    runtime = backend.runtime()
    make_home(codex_home, 3, start=START + timedelta(days=3))
    assert backfill_codex_home(runtime, codex_home).upserted == 3
    # A rollout that sorts below the watermark appears later: a resumed run cannot see it.
    late = write_rollout(codex_home, created=START)
    assert backfill_codex_home(runtime, codex_home) == BackfillStats()
    assert len(stored_ids(runtime)) == 3

    stats = backfill_codex_home(runtime, codex_home, reindex=True)
    assert stats == BackfillStats(scanned=4, upserted=4, failed=0)
    assert len(stored_ids(runtime)) == 4
    state = runtime.get_backfill_state()
    assert state.status is BackfillStatus.COMPLETE
    assert state.last_watermark == find_rollout_files(codex_home)[-1].watermark
    assert late.exists()


def test_backfill_needs_a_home(backend: Backend, tmp_path: Path) -> None:
    runtime = backend.runtime()
    with pytest.raises(InvalidInputError, match="codex_home is required"):
        backfill_codex_home(runtime)
    with pytest.raises(InvalidInputError, match="not a directory"):
        backfill_codex_home(runtime, tmp_path / "missing")
    with pytest.raises(InvalidInputError, match="batch_size"):
        backfill_codex_home(runtime, tmp_path, batch_size=0)
    assert runtime.get_backfill_state().status is BackfillStatus.PENDING


def test_live_lease_blocks_a_second_backfill_until_it_expires(
    backend: Backend, codex_home: Path
) -> None:
    clock = ManualClock(NOW)
    runtime = backend.runtime(clock=clock)
    make_home(codex_home, 3)
    assert _lease(runtime).try_claim_backfill("other-host:1", LEASE) is not None

    with pytest.raises(BackfillRunningError, match="already running"):
        backfill_codex_home(runtime, codex_home, lease_seconds=LEASE)
    clock.advance(LEASE - 1)
    with pytest.raises(BackfillRunningError):
        backfill_codex_home(runtime, codex_home, lease_seconds=LEASE)
    assert stored_ids(runtime) == set()

    clock.advance(1)  # the other owner has been silent for a whole lease: take it over
    stats = backfill_codex_home(runtime, codex_home, lease_seconds=LEASE, owner="me")
    assert stats.upserted == 3
    assert runtime.get_backfill_state().status is BackfillStatus.COMPLETE
    # The dead owner can no longer checkpoint or complete.
    assert not _lease(runtime).checkpoint_backfill_lease("other-host:1", "zzz")
    assert not _lease(runtime).complete_backfill_lease("other-host:1", "zzz")


def test_lease_taken_over_mid_run_stops_with_progress_kept(
    backend: Backend, codex_home: Path
) -> None:
    clock = ManualClock(NOW)
    runtime = backend.runtime(clock=clock)
    make_home(codex_home, 6)

    def stall(update: BackfillProgress) -> None:
        if update.done == 2:  # this process stalls past its lease and another one takes over
            clock.advance(LEASE)
            assert _lease(runtime).try_claim_backfill("thief", LEASE) is not None

    with pytest.raises(BackfillRunningError, match="taken over"):
        backfill_codex_home(runtime, codex_home, batch_size=2, progress=stall, owner="slow")
    assert len(stored_ids(runtime)) == 2
    state = runtime.get_backfill_state()
    assert state.status is BackfillStatus.RUNNING
    assert state.last_watermark == find_rollout_files(codex_home)[1].watermark


def test_interrupted_backfill_releases_and_resumes(backend: Backend, codex_home: Path) -> None:
    runtime = backend.runtime()
    make_home(codex_home, 5)

    def interrupt(update: BackfillProgress) -> None:
        if update.done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        backfill_codex_home(runtime, codex_home, batch_size=2, progress=interrupt)
    state = runtime.get_backfill_state()
    assert state.status is BackfillStatus.PENDING  # released: no lease to wait out
    assert state.last_watermark == find_rollout_files(codex_home)[3].watermark

    stats = backfill_codex_home(runtime, codex_home, batch_size=2)
    assert stats == BackfillStats(scanned=1, upserted=1, failed=0)
    assert len(stored_ids(runtime)) == 5


def test_reindex_claim_restarts_from_the_beginning(backend: Backend, codex_home: Path) -> None:
    runtime = backend.runtime()
    make_home(codex_home, 2)
    backfill_codex_home(runtime, codex_home)
    claimed = _lease(runtime).try_claim_backfill("re", LEASE, reindex=True)
    assert claimed is not None and claimed.last_watermark is None
    assert _lease(runtime).try_claim_backfill("other", LEASE, reindex=True) is None
    assert _lease(runtime).release_backfill_lease("re")


# ------------------------------------------------------------------------------ processes


def _worker(url: str, home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.backfill_worker", url, str(home), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _outcome(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [1, 4, 6])
def test_backfill_killed_mid_batch_is_taken_over_and_completed(
    shared_backend: Backend, codex_home: Path, kill_at: int
) -> None:
    make_home(codex_home, 7)
    killed = _worker(shared_backend.url, codex_home, "kill-at", str(kill_at))
    killed.communicate(timeout=120)
    assert killed.returncode == -9

    # The killed process left its lease behind; a later run takes it over once it expires.
    clock = ManualClock(int(time.time()) + LEASE + 1)
    runtime = shared_backend.runtime(clock=clock)
    before = runtime.get_backfill_state()
    assert before.status is BackfillStatus.RUNNING
    committed = len(stored_ids(runtime))
    assert committed == 2 * ((kill_at - 1) // 2)  # whole batches of two, nothing partial
    stats = backfill_codex_home(runtime, codex_home, batch_size=2, lease_seconds=LEASE)
    assert stats.upserted == 7 - committed
    assert len(stored_ids(runtime)) == 7
    assert runtime.get_backfill_state().status is BackfillStatus.COMPLETE


@pytest.mark.slow
def test_second_process_is_told_a_backfill_is_running(
    shared_backend: Backend, codex_home: Path, tmp_path: Path
) -> None:
    make_home(codex_home, 5)
    shared_backend.runtime()  # migrate once, before two processes open the database
    holder = _worker(shared_backend.url, codex_home, "hold", str(tmp_path))
    deadline = time.monotonic() + 60
    while not (tmp_path / "held").exists():
        assert holder.poll() is None, holder.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)  # waiting for the holder to claim, not ageing a lease
    second = _outcome(_worker(shared_backend.url, codex_home, "run"))
    assert "already running" in second["running"]
    (tmp_path / "go").touch()
    assert _outcome(holder) == BackfillStats(scanned=5, upserted=5).model_dump()


@pytest.mark.slow
def test_racing_backfills_do_the_work_exactly_once(
    shared_backend: Backend, codex_home: Path
) -> None:
    make_home(codex_home, 8)
    runtime = shared_backend.runtime()
    racers = [_worker(shared_backend.url, codex_home, "run") for _ in range(3)]
    outcomes = [_outcome(racer) for racer in racers]
    upserted = [outcome.get("upserted", 0) for outcome in outcomes]
    assert sorted(upserted) == [0, 0, 8], outcomes
    for outcome in outcomes:
        if "upserted" not in outcome:
            assert "already running" in outcome["running"]
    assert len(stored_ids(runtime)) == 8


# ------------------------------------------------------------------------------ real data

REAL_EXPECTED = {
    # id: (created_at, cwd suffix, tokens_used, first message prefix, git sha prefix)
    "019c8a4c-ed82-79a1-aa28-7738fc5ab61a": (
        "11:40:23",
        "fa3f7eaace",
        7_240_100,
        "len=516",
        "1cdfa7b1",
    ),
    "019c8a4d-8f45-7010-8b5d-7fad920aa6f9": (
        "11:41:04",
        "da0ba47443",
        1_766_028,
        "len=115",
        "86b4a8d9",
    ),
    "019c8a53-a0dd-7130-bcd7-95445d84846a": (
        "11:47:42",
        "59b923df4d",
        6_777_923,
        "len=64 ",
        "7078dc6b",
    ),
    "019c8a59-e9dd-71f0-9ae3-4079fe9726a9": (
        "11:54:34",
        "59b923df4d",
        33_944_484,
        "len=32 ",
        "7078dc6b",
    ),
    "019c8a70-dda7-7f33-98ea-f30553347322": (
        "12:19:38",
        "da0ba47443",
        34_900,
        "len=86 ",
        "86b4a8d9",
    ),
    "019c8bfe-ec25-79e0-97d7-bda6a9c575ff": (
        "19:34:25",
        "ea96e59ed9",
        299_496,
        "len=98 ",
        "19f87486",
    ),
}


@pytest.fixture
def real_home(codex_home: Path) -> Path:
    files = sorted(REAL_ROLLOUTS.glob("rollout-*.jsonl")) if REAL_ROLLOUTS.is_dir() else []
    if len(files) != 6:
        pytest.skip(f"the six real rollouts are not in {REAL_ROLLOUTS}")
    day = codex_home / "sessions" / "2026" / "02" / "23"
    day.mkdir(parents=True)
    for path in files:
        shutil.copy2(path, day / path.name)
    return codex_home


def test_backfill_of_the_six_real_rollouts(backend: Backend, real_home: Path) -> None:
    runtime = backend.runtime(default_provider="openai")
    assert backfill_codex_home(runtime, real_home) == BackfillStats(scanned=6, upserted=6, failed=0)
    page = runtime.list_threads(10, sort_key=SortKey.CREATED_AT)
    assert [str(t.id) for t in page.items] == sorted(REAL_EXPECTED, reverse=True)
    for thread in page.items:
        created, cwd, tokens, message, sha = REAL_EXPECTED[str(thread.id)]
        assert thread.created_at == datetime.fromisoformat(f"2026-02-23T{created}+00:00")
        assert str(thread.cwd) == f"/redacted/path/{cwd}"
        assert thread.tokens_used == tokens
        assert thread.first_user_message is not None
        assert thread.first_user_message.startswith(f"[REDACTED_MESSAGE {message}")
        assert thread.title == thread.first_user_message
        assert (thread.git_sha or "").startswith(sha) and thread.git_branch == "main"
        assert (thread.source, thread.model_provider) == ("vscode", "openai")
        assert thread.cli_version == "0.104.0-alpha.1"
        assert thread.approval_mode == "on-request"
        assert thread.sandbox_policy == (
            '{"type":"workspace-write","writable_roots":["/redacted/path/' + cwd + '"],'
            '"network_access":false,"exclude_tmpdir_env_var":false,"exclude_slash_tmp":false}'
        )
        assert thread.rollout_path.parent == real_home / "sessions" / "2026" / "02" / "23"
        assert runtime.get_dynamic_tools(thread.id) is None


# ------------------------------------------------------------ database errors and bad files


@contextmanager
def failing_statements(
    runtime: StateRuntime, pattern: str, *, after: int = 0, times: int = 1, transient: bool = False
) -> Iterator[list[int]]:
    """Make the driver fail statements matching `pattern` (a regex, from the start, case
    ignored) on calls `after+1 .. after+times`, as a full disk or a busy database would."""
    matches = re.compile(pattern, re.IGNORECASE).match
    engine = runtime.engine
    calls = [0]

    def error() -> Exception:
        if engine.dialect.name == "sqlite":
            return sqlite3.OperationalError(
                "database is locked" if transient else "disk I/O error (injected)"
            )
        import psycopg

        if transient:
            return psycopg.errors.SerializationFailure("injected serialization failure")
        return psycopg.errors.DiskFull("could not extend file: No space left (injected)")

    def before(*args: Any) -> None:
        statement: str = args[2]
        if matches(statement.lstrip()):
            calls[0] += 1
            if after < calls[0] <= after + times:
                raise error()

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield calls
    finally:
        event.remove(engine, "before_cursor_execute", before)


def _records(runtime: StateRuntime, home: Path) -> dict[str, Any]:
    return runtime.run_in_transaction(
        lambda s: RolloutFileRepository(s).get_rollout_files(str(home))
    )


def test_database_error_stops_the_backfill_before_the_watermark_passes_unstored_files(
    backend: Backend, codex_home: Path
) -> None:
    runtime = backend.runtime()
    make_home(codex_home, 6)
    watermarks = [rollout.watermark for rollout in find_rollout_files(codex_home)]
    with (
        failing_statements(runtime, "INSERT INTO THREADS", after=1),
        pytest.raises(DatabaseError, match="injected"),
    ):
        backfill_codex_home(runtime, codex_home, batch_size=2)
    state = runtime.get_backfill_state()
    assert state.status is BackfillStatus.PENDING  # released, not complete
    assert state.last_watermark == watermarks[1]  # the first batch only
    assert len(stored_ids(runtime)) == 2
    assert len(_records(runtime, codex_home)) == 2  # the failed batch recorded nothing

    stats = backfill_codex_home(runtime, codex_home, batch_size=2)
    assert stats == BackfillStats(scanned=4, upserted=4)
    assert len(stored_ids(runtime)) == 6
    assert runtime.get_backfill_state().status is BackfillStatus.COMPLETE


def test_transient_database_errors_are_retried_and_lose_nothing(
    backend: Backend, codex_home: Path
) -> None:
    runtime = backend.runtime()
    make_home(codex_home, 6)
    with failing_statements(runtime, "INSERT INTO THREADS", times=3, transient=True) as calls:
        stats = backfill_codex_home(runtime, codex_home, batch_size=2)
    assert calls[0] == 3 + 3  # three failed attempts, then the three batches
    assert stats == BackfillStats(scanned=6, upserted=6)
    assert len(stored_ids(runtime)) == 6
    assert runtime.get_backfill_state().status is BackfillStatus.COMPLETE


def test_a_failed_release_leaves_a_lease_this_host_takes_over_at_once(
    backend: Backend, codex_home: Path
) -> None:
    runtime = backend.runtime()
    make_home(codex_home, 4)
    with (
        failing_statements(runtime, "INSERT INTO THREADS", after=1),
        failing_statements(runtime, _RELEASE, times=9),
        pytest.raises(DatabaseError),
    ):
        # The release fails too (a full disk): the lease stays with this dead owner.
        backfill_codex_home(runtime, codex_home, batch_size=2, owner=_dead_owner())
    assert runtime.get_backfill_state().status is BackfillStatus.RUNNING
    stats = backfill_codex_home(runtime, codex_home, batch_size=2, lease_seconds=LEASE)
    assert stats.upserted == 2
    assert runtime.get_backfill_state().status is BackfillStatus.COMPLETE


# The release: back to pending, only where this owner holds a running lease.
_RELEASE = (
    r"UPDATE backfill_state SET status=\S+, updated_at=\S+, lease_owner=\S+ WHERE .*\.status = "
)


def _dead_owner() -> str:
    done = subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert done.returncode == 0
    pid = subprocess.Popen([sys.executable, "-c", "pass"])
    pid.wait()  # reaped: no process has this pid now
    return f"{socket.gethostname()}:{pid.pid}:deadbeef"


def test_only_a_dead_holder_on_this_host_is_taken_over_early(
    backend: Backend, codex_home: Path
) -> None:
    runtime = backend.runtime()
    make_home(codex_home, 1)
    host = socket.gethostname()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for holder in (
            f"{host}:{alive.pid}:cafe0001",  # alive
            f"{host}:{os.getpid()}:cafe0002",  # this very process
            f"not-{host}:{_dead_owner().split(':')[1]}:cafe0003",  # another host
            "someone",  # not host:pid:random
            f"{host}:x:y",
        ):
            assert is_dead_local_owner(holder) is False
            assert _lease(runtime).try_claim_backfill(holder, LEASE) is not None
            with pytest.raises(BackfillRunningError):
                backfill_codex_home(runtime, codex_home, lease_seconds=LEASE)
            assert _lease(runtime).release_backfill_lease(holder)
    finally:
        alive.kill()
        alive.wait()
    dead = _dead_owner()
    assert is_dead_local_owner(dead)
    assert _lease(runtime).try_claim_backfill(dead, LEASE) is not None
    assert backfill_codex_home(runtime, codex_home, lease_seconds=LEASE).upserted == 1
    assert not _lease(runtime).checkpoint_backfill_lease(dead, None)


@pytest.mark.slow
def test_killed_backfill_is_taken_over_at_once_on_the_same_host(
    shared_backend: Backend, codex_home: Path
) -> None:
    make_home(codex_home, 5)
    killed = _worker(shared_backend.url, codex_home, "kill-at", "4")
    killed.communicate(timeout=120)
    assert killed.returncode == -9
    runtime = shared_backend.runtime()  # the real clock: the lease has not expired
    assert runtime.get_backfill_state().status is BackfillStatus.RUNNING
    stats = backfill_codex_home(runtime, codex_home, batch_size=2, lease_seconds=LEASE)
    assert stats.upserted == 3
    assert runtime.get_backfill_state().status is BackfillStatus.COMPLETE


def test_a_rollout_whose_path_is_not_utf8_fails_alone(
    backend: Backend, codex_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if sys.platform != "linux":
        pytest.skip("needs a file system that takes any bytes in a name")
    runtime = backend.runtime()
    make_home(codex_home, 2)
    folder = os.path.join(os.fsencode(codex_home), b"sessions", b"2026", b"\xff\xfe")
    os.makedirs(folder)
    last = os.path.join(folder, f"rollout-2026-02-10T09-30-00-{uuid.uuid4()}.jsonl".encode())
    with open(last, "wb") as file:
        file.write(Path(make_home(codex_home / "x", 1)[0]).read_bytes())
    # It sorts last: the watermark must still be one the database can store.
    assert find_rollout_files(codex_home)[-1].path == Path(os.fsdecode(last))

    with caplog.at_level(logging.WARNING, logger="codex_state"):
        stats = backfill_codex_home(runtime, codex_home, batch_size=2)
    assert stats == BackfillStats(scanned=3, upserted=2, failed=1)
    assert "not valid UTF-8" in caplog.text and "\\xff\\xfe" in caplog.text
    state = runtime.get_backfill_state()
    assert state.status is BackfillStatus.COMPLETE
    assert state.last_watermark == find_rollout_files(codex_home)[1].watermark
    assert len(stored_ids(runtime)) == 2
    synced = sync_codex_home(runtime, codex_home)  # nothing is read again
    assert synced == BackfillStats(scanned=3, failed=1, unchanged=2)


def test_a_file_whose_values_no_column_holds_fails_alone(
    backend: Backend, codex_home: Path
) -> None:
    runtime = backend.runtime()
    make_home(codex_home, 2)
    huge = write_rollout(codex_home, created=START + timedelta(days=1), tokens=2**64)
    stats = backfill_codex_home(runtime, codex_home)
    assert stats == BackfillStats(scanned=3, upserted=2, failed=1)
    assert _records(runtime, codex_home)[str(huge)].thread_id is None
    assert runtime.get_backfill_state().status is BackfillStatus.COMPLETE


def test_stats_count_unknown_types_skipped_tools_and_replaced_characters(
    backend: Backend, codex_home: Path
) -> None:
    runtime = backend.runtime()
    path = write_rollout(
        codex_home,
        message="hello\u0000world",
        tools=[*TOOL_SPECS, {"type": "from-the-future"}, {"name": "no schema"}],
    )
    with path.open("a") as file:
        file.write(
            '{"timestamp": "2026-02-10T09:40:00.000Z", "type": "world_state", "payload": {}}\n'
        )
        file.write("not json\n")
    stats = backfill_codex_home(runtime, codex_home)
    assert stats == BackfillStats(
        scanned=1,
        upserted=1,
        parse_errors=1,
        unknown_types=1,
        skipped_tools=2,
        replaced_characters=2,  # in the title and in the first user message
    )
