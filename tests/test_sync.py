"""Incremental sync and watch: only new and changed rollouts are read, appends are applied."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from codex_state import BackfillStats, BackfillStatus, StateRuntime
from codex_state import backfill as backfill_module
from codex_state.backfill import BackfillProgress, backfill_codex_home, find_rollout_files
from codex_state.errors import BackfillRunningError, InvalidInputError
from codex_state.repositories.backfill import BackfillRepository
from codex_state.repositories.rollout_files import RolloutFileRecord, RolloutFileRepository
from codex_state.sync import scan_rollout_files, sync_codex_home, watch_codex_home
from tests.conftest import Backend
from tests.rollout_files import START, make_home, tokens, user, write_rollout

INTERVAL = 0.02
WAIT = 30.0


@pytest.fixture
def entry() -> str:
    """Sync composes repositories itself: one entry (the runtime) is enough here."""
    return "runtime"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every rollout file read whole (extracted), in order."""
    real = backfill_module.extract_metadata_from_rollout
    seen: list[Path] = []

    def extract(path: Any, provider: str) -> Any:
        seen.append(Path(path))
        return real(path, provider)

    monkeypatch.setattr(backfill_module, "extract_metadata_from_rollout", extract)
    return seen


def records(runtime: StateRuntime, home: Path) -> dict[str, RolloutFileRecord]:
    return runtime.run_in_transaction(
        lambda s: RolloutFileRepository(s).get_rollout_files(str(home))
    )


def lease_owner(runtime: StateRuntime) -> str | None:
    owner: str | None = runtime.run_in_transaction(
        lambda s: s.execute(text("SELECT lease_owner FROM backfill_state")).scalar()
    )
    return owner


def append(path: Path, *lines: str, end: str = "\n") -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write("\n".join(lines) + end)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(INTERVAL)  # polling for another thread's write, not ageing a lease


# ------------------------------------------------------------------------------ discovery


def test_scan_lists_what_find_rollout_files_lists(codex_home: Path, tmp_path: Path) -> None:
    plain = make_home(codex_home, 3)
    write_rollout(codex_home, archived=True)
    twin = plain[0].with_name(plain[0].name + ".zst")
    twin.write_bytes(b"compressed copy")  # dropped: the plain file is the live one
    alone = plain[1].parent / "rollout-2026-02-10T00-00-00-alone.jsonl.zst"
    alone.write_bytes(b"")
    (codex_home / "sessions" / "rollout-dir.jsonl").mkdir()  # a directory, not a rollout
    (codex_home / "sessions" / "notes.txt").write_text("")
    outside = tmp_path / "outside"
    write_rollout(outside, created=START + timedelta(days=9))
    (codex_home / "sessions" / "linked").symlink_to(outside / "sessions")  # not followed
    (codex_home / "sessions" / "rollout-link.jsonl").symlink_to(plain[2])  # a file: listed

    scanned = scan_rollout_files(codex_home)
    expected = find_rollout_files(codex_home)
    assert [(Path(f.path), f.watermark, f.archived) for f in scanned] == [
        (r.path, r.watermark, r.archived) for r in expected
    ]
    assert all(f.size == os.stat(f.path).st_size for f in scanned)
    assert alone.name in {Path(f.path).name for f in scanned}


# ----------------------------------------------------------------------------------- sync


def test_first_sync_after_a_backfill_reads_nothing_and_writes_nothing(
    backend: Backend, codex_home: Path, reads: list[Path]
) -> None:
    runtime = backend.runtime()
    make_home(codex_home, 4)
    assert backfill_codex_home(runtime, codex_home).upserted == 4
    before = runtime.get_backfill_state()
    assert len(records(runtime, codex_home)) == 4
    reads.clear()

    stats = sync_codex_home(runtime, codex_home)

    assert stats == BackfillStats(scanned=4, unchanged=4)
    assert reads == []
    assert runtime.get_backfill_state() == before  # no lease taken, nothing written


def test_sync_reads_only_new_and_changed_files(
    backend: Backend, codex_home: Path, reads: list[Path]
) -> None:
    runtime = backend.runtime()
    paths = make_home(codex_home, 4)
    sync_codex_home(runtime, codex_home)
    reads.clear()
    new = [write_rollout(codex_home, created=START + timedelta(days=d)) for d in (5, 6)]
    append(paths[1], tokens(4242))  # Codex appends to a live session

    stats = sync_codex_home(runtime, codex_home)

    assert sorted(reads) == sorted([*new, paths[1]])
    assert stats == BackfillStats(scanned=6, upserted=3, unchanged=3)
    changed = runtime.get_thread(uuid.UUID(paths[1].stem[-36:]))
    assert changed is not None and changed.tokens_used == 4242
    assert len(runtime.list_thread_ids(100)) == 6
    state = runtime.get_backfill_state()
    assert state.status is BackfillStatus.COMPLETE
    assert state.last_watermark == find_rollout_files(codex_home)[-1].watermark
    assert lease_owner(runtime) is None
    reads.clear()
    assert sync_codex_home(runtime, codex_home) == BackfillStats(scanned=6, unchanged=6)
    assert reads == []


def test_a_failed_file_is_recorded_and_read_again_only_once_changed(
    backend: Backend, codex_home: Path, reads: list[Path]
) -> None:
    runtime = backend.runtime()
    make_home(codex_home, 2)
    junk = codex_home / "sessions" / "2026" / "02" / "10" / "rollout-junk.jsonl"
    junk.write_text("not json\n")
    assert sync_codex_home(runtime, codex_home) == BackfillStats(
        scanned=3, upserted=2, failed=1, parse_errors=0
    )
    record = records(runtime, codex_home)[str(junk)]
    assert record.thread_id is None and record.size == junk.stat().st_size
    reads.clear()
    assert sync_codex_home(runtime, codex_home).unchanged == 3
    assert reads == []
    append(junk, "still not json")
    assert sync_codex_home(runtime, codex_home).failed == 1
    assert reads == [junk]


def test_deleted_file_keeps_its_thread_and_loses_its_record(
    backend: Backend, codex_home: Path
) -> None:
    runtime = backend.runtime()
    paths = make_home(codex_home, 3)
    sync_codex_home(runtime, codex_home)
    paths[0].unlink()
    assert sync_codex_home(runtime, codex_home) == BackfillStats(scanned=2, unchanged=2, removed=1)
    assert str(paths[0]) not in records(runtime, codex_home)
    assert len(runtime.list_thread_ids(10)) == 3  # Codex keeps threads whose file is gone
    assert runtime.get_backfill_state().status is BackfillStatus.COMPLETE


def test_archiving_moves_the_record_and_marks_the_thread(
    backend: Backend, codex_home: Path, reads: list[Path]
) -> None:
    runtime = backend.runtime()
    path = write_rollout(codex_home)
    sync_codex_home(runtime, codex_home)
    archived = codex_home / "archived_sessions" / path.name
    archived.parent.mkdir()
    path.rename(archived)  # what Codex does to archive a thread
    reads.clear()
    stats = sync_codex_home(runtime, codex_home)
    assert (stats.upserted, stats.removed, reads) == (1, 1, [archived])
    thread = runtime.get_thread(uuid.UUID(path.stem[-36:]))
    assert thread is not None and thread.archived_at is not None
    assert thread.rollout_path == archived
    assert set(records(runtime, codex_home)) == {str(archived)}


def test_records_of_another_home_are_left_alone(backend: Backend, tmp_path: Path) -> None:
    runtime = backend.runtime()
    first, second = tmp_path / "one", tmp_path / "one-more"  # a prefix of each other's name
    make_home(first, 2)
    make_home(second, 1, start=START + timedelta(days=30))
    sync_codex_home(runtime, first)
    sync_codex_home(runtime, second)
    assert len(records(runtime, first)) == 2 and len(records(runtime, second)) == 1
    assert sync_codex_home(runtime, first).removed == 0
    assert len(records(runtime, second)) == 1


def test_sync_of_a_fresh_database_is_the_backfill(backend: Backend, codex_home: Path) -> None:
    runtime = backend.runtime()
    make_home(codex_home, 5)
    seen: list[BackfillProgress] = []
    stats = sync_codex_home(runtime, codex_home, batch_size=2, progress=seen.append)
    assert stats == BackfillStats(scanned=5, upserted=5)
    assert [(p.done, p.total) for p in seen] == [(0, 5), (2, 5), (4, 5), (5, 5)]
    state = runtime.get_backfill_state()
    assert state.status is BackfillStatus.COMPLETE and state.last_success_at is not None
    assert state.last_watermark == find_rollout_files(codex_home)[-1].watermark


def test_sync_finds_files_below_an_interrupted_runs_watermark(
    backend: Backend, codex_home: Path, reads: list[Path]
) -> None:
    runtime = backend.runtime()
    make_home(codex_home, 4, start=START + timedelta(days=3))

    def interrupt(update: BackfillProgress) -> None:
        if update.done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        backfill_codex_home(runtime, codex_home, batch_size=2, progress=interrupt)
    assert runtime.get_backfill_state().status is BackfillStatus.PENDING
    early = write_rollout(codex_home, created=START)  # sorts below the watermark
    reads.clear()
    stats = sync_codex_home(runtime, codex_home, batch_size=2)
    assert stats == BackfillStats(scanned=5, upserted=3, unchanged=2)
    assert early in reads and len(reads) == 3
    assert len(runtime.list_thread_ids(10)) == 5
    assert runtime.get_backfill_state().status is BackfillStatus.COMPLETE


def test_interrupted_sync_releases_the_lease_and_the_next_one_finishes(
    backend: Backend, codex_home: Path, reads: list[Path]
) -> None:
    runtime = backend.runtime()
    make_home(codex_home, 1)
    sync_codex_home(runtime, codex_home)
    make_home(codex_home, 4, start=START + timedelta(days=10))

    def interrupt(update: BackfillProgress) -> None:
        if update.done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sync_codex_home(runtime, codex_home, batch_size=2, progress=interrupt)
    assert lease_owner(runtime) is None
    assert runtime.get_backfill_state().status is BackfillStatus.PENDING
    reads.clear()
    assert sync_codex_home(runtime, codex_home, batch_size=2) == BackfillStats(
        scanned=5, upserted=2, unchanged=3
    )
    assert len(reads) == 2
    assert runtime.get_backfill_state().status is BackfillStatus.COMPLETE


def test_reindex_reads_every_file(backend: Backend, codex_home: Path, reads: list[Path]) -> None:
    runtime = backend.runtime()
    make_home(codex_home, 3)
    sync_codex_home(runtime, codex_home)
    reads.clear()
    assert sync_codex_home(runtime, codex_home, reindex=True) == BackfillStats(
        scanned=3, upserted=3
    )
    assert len(reads) == 3
    assert runtime.get_backfill_state().status is BackfillStatus.COMPLETE


def test_sync_with_changes_waits_for_a_live_lease(backend: Backend, codex_home: Path) -> None:
    runtime = backend.runtime()
    make_home(codex_home, 1)
    sync_codex_home(runtime, codex_home)
    write_rollout(codex_home, created=START + timedelta(days=2))
    other = "other-host:1:abcd"
    assert runtime.run_in_transaction(
        lambda s: BackfillRepository(s).try_claim_backfill(other, 900, reindex=True), write=True
    )
    with pytest.raises(BackfillRunningError, match="already running"):
        sync_codex_home(runtime, codex_home)
    assert lease_owner(runtime) == other


def test_sync_checks_its_arguments(backend: Backend, codex_home: Path) -> None:
    runtime = backend.runtime()
    with pytest.raises(InvalidInputError, match="batch_size"):
        sync_codex_home(runtime, codex_home, batch_size=0)
    with pytest.raises(InvalidInputError, match="codex_home is required"):
        sync_codex_home(runtime)
    with pytest.raises(InvalidInputError, match="interval"):
        watch_codex_home(runtime, codex_home, interval=0)


def test_rollout_file_repository_checks_its_arguments(backend: Backend) -> None:
    runtime = backend.runtime()

    def record(*args: Any) -> None:
        runtime.run_in_transaction(
            lambda s: RolloutFileRepository(s).record_rollout_files(*args), write=True
        )

    with pytest.raises(InvalidInputError):
        record(RolloutFileRecord("/a", 1, 1, 1, None))  # one record, not an iterable
    with pytest.raises(InvalidInputError, match="size"):
        record([RolloutFileRecord("/a", -1, 1, 1, None)])
    with pytest.raises(InvalidInputError, match="path"):
        record([RolloutFileRecord("/a\udcff", 1, 1, 1, None)])
    with pytest.raises(InvalidInputError, match="mtime_ns"):
        record([RolloutFileRecord("/a", 1, 2**64, 1, None)])
    record([RolloutFileRecord("/h/a", 3, -5, 2, uuid.UUID(int=7))])
    stored = runtime.run_in_transaction(lambda s: RolloutFileRepository(s).get_rollout_file("/h/a"))
    assert stored is not None and (stored.size, stored.mtime_ns, stored.indexed_size) == (3, -5, 2)
    assert stored.thread_id == uuid.UUID(int=7) and stored.indexed_at > 0


# ---------------------------------------------------------------------------------- watch


class Watch:
    """`watch_codex_home` in a thread, stopped by an event."""

    def __init__(self, runtime: StateRuntime, home: Path) -> None:
        self.stop = threading.Event()
        self.synced = threading.Event()
        self.result: dict[str, Any] = {}

        def run() -> None:
            try:
                self.result["stats"] = watch_codex_home(
                    runtime,
                    home,
                    interval=INTERVAL,
                    stop=self.stop,
                    on_sync=lambda _: self.synced.set(),
                )
            except BaseException as err:  # reported by finish()
                self.result["error"] = err
                self.synced.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert self.synced.wait(WAIT)

    def finish(self) -> BackfillStats:
        self.stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        if "error" in self.result:
            raise self.result["error"]
        stats: BackfillStats = self.result["stats"]
        return stats


@pytest.fixture
def watching() -> Iterator[list[Watch]]:
    started: list[Watch] = []
    yield started
    for watch in started:
        watch.stop.set()
        watch.thread.join(WAIT)


def test_watch_applies_appended_lines_and_indexes_new_files(
    backend: Backend, codex_home: Path, reads: list[Path], watching: list[Watch]
) -> None:
    runtime = backend.runtime()
    path = write_rollout(codex_home, message=None, tokens=5)
    thread_id = uuid.UUID(path.stem[-36:])
    watch = Watch(runtime, codex_home)
    watching.append(watch)
    assert reads == [path]
    reads.clear()

    def row() -> Any:
        return runtime.get_thread(thread_id)

    append(path, user("watch this"), tokens(777))  # "another process" (Codex) appends
    wait_until(lambda: row().tokens_used == 777, "the appended token count")
    assert row().title == "watch this" and row().first_user_message == "watch this"
    assert reads == []  # only the appended lines were read
    record = records(runtime, codex_home)[str(path)]
    assert record.indexed_size == record.size == path.stat().st_size

    append(path, tokens(888), end="")  # a line still being written
    wait_until(
        lambda: records(runtime, codex_home)[str(path)].size == path.stat().st_size,
        "the poll that sees the unfinished line",
    )
    assert row().tokens_used == 777
    assert records(runtime, codex_home)[str(path)].indexed_size == record.size
    append(path, "")  # its newline arrives
    wait_until(lambda: row().tokens_used == 888, "the finished line")

    new = write_rollout(codex_home, created=START + timedelta(days=1), tokens=9)
    wait_until(lambda: runtime.get_thread(uuid.UUID(new.stem[-36:])) is not None, "a new file")
    assert reads == [new]
    path.unlink()
    wait_until(lambda: str(path) not in records(runtime, codex_home), "the deleted file")

    stats = watch.finish()
    assert stats.appended >= 2 and stats.removed == 1 and stats.failed == 0
    assert stats.upserted >= 4  # the first sync, two appends applied, the new file
    assert lease_owner(runtime) is None
    assert runtime.get_backfill_state().status is BackfillStatus.COMPLETE
    assert row() is not None  # the thread of the deleted file stays


def test_watch_reads_a_rewritten_file_whole(
    backend: Backend, codex_home: Path, reads: list[Path], watching: list[Watch]
) -> None:
    runtime = backend.runtime()
    path = write_rollout(codex_home, tokens=5)
    watch = Watch(runtime, codex_home)
    watching.append(watch)
    reads.clear()
    lines = path.read_text().splitlines()
    lines[-1] = tokens(31337)
    path.write_text("\n".join(lines) + "\n" + tokens(31338)[:-1] + "\n")  # same start, edited
    wait_until(lambda: reads == [path], "the whole read")
    thread = runtime.get_thread(uuid.UUID(path.stem[-36:]))
    assert thread is not None and thread.tokens_used == 31337  # the edited line; then a broken one
    watch.finish()


def test_watch_reads_a_changed_compressed_file_whole(
    backend: Backend, codex_home: Path, reads: list[Path], watching: list[Watch]
) -> None:
    zstandard = pytest.importorskip("zstandard")
    runtime = backend.runtime()
    plain = write_rollout(codex_home, tokens=5)
    compressed = plain.with_name(plain.name + ".zst")
    compressed.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
    plain.unlink()
    watch = Watch(runtime, codex_home)
    watching.append(watch)
    assert reads == [compressed]
    reads.clear()
    data = plain_text = (
        zstandard.ZstdDecompressor().decompressobj().decompress(compressed.read_bytes())
    )
    data = plain_text + (tokens(99) + "\n").encode()
    compressed.write_bytes(zstandard.ZstdCompressor().compress(data))
    thread_id = uuid.UUID(plain.stem[-36:])
    wait_until(lambda: runtime.get_thread(thread_id).tokens_used == 99, "the new count")
    assert reads == [compressed]
    assert watch.finish().appended == 0


def test_watch_skips_a_poll_while_another_process_holds_the_lease(
    backend: Backend, codex_home: Path, watching: list[Watch]
) -> None:
    runtime = backend.runtime()
    path = write_rollout(codex_home, tokens=5)
    watch = Watch(runtime, codex_home)
    watching.append(watch)
    other = "other-host:1:abcd"
    assert runtime.run_in_transaction(
        lambda s: BackfillRepository(s).try_claim_backfill(other, 900, reindex=True), write=True
    )
    append(path, tokens(6))
    time.sleep(10 * INTERVAL)  # several polls find the lease held (no clock is being aged)
    thread_id = uuid.UUID(path.stem[-36:])
    assert runtime.get_thread(thread_id).tokens_used == 5
    assert runtime.run_in_transaction(
        lambda s: BackfillRepository(s).complete_backfill_lease(other, None), write=True
    )
    wait_until(lambda: runtime.get_thread(thread_id).tokens_used == 6, "the next free poll")
    watch.finish()


def test_records_hold_the_offset_of_the_last_complete_line(
    backend: Backend, codex_home: Path
) -> None:
    runtime = backend.runtime()
    path = write_rollout(codex_home)
    complete = path.stat().st_size
    append(path, json.dumps({"timestamp": "2026-02-10T09:30:00.000Z", "type": "event_msg"}))
    append(path, '{"timestamp": "2026-02-10T09:31', end="")  # unfinished
    sync_codex_home(runtime, codex_home)
    record = records(runtime, codex_home)[str(path)]
    assert record.size == path.stat().st_size
    assert record.indexed_size == path.stat().st_size - len('{"timestamp": "2026-02-10T09:31')
    assert record.indexed_size > complete
