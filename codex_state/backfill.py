"""Backfill: index every rollout file of a codex home into the `threads` table.

The walk follows Codex (seed-notes section 7): `sessions/**/rollout-*.jsonl` (live) and
`archived_sessions/**/rollout-*.jsonl` (archived), ordered by their codex-home-relative paths
compared as plain strings (the *watermark*), in batches with a checkpoint after each. Beyond
Codex:

- A lease (`backfill_state.lease_owner`, heartbeat `updated_at`) lets one process backfill at a
  time; a second one gets `BackfillRunningError`, and a killed one is taken over once its lease
  has expired, or at once by a process on the same host when the holder's pid is gone. There
  is no state stuck at `running`.
- Each batch (its rows, its tools, its per-file records and its checkpoint) is one
  transaction, so a kill at any point loses at most the batch in progress, which the next run
  redoes. A database error stops the run at once: the watermark never passes a file that was
  not stored.
- Every file read is recorded in `rollout_files` (size, mtime, offset, thread), failed ones
  too, so the sync (`codex_state.sync`) reads only what changed since, and a resumed run skips
  files already read.
- `reindex=True` rescans every file whatever the watermark and the records, picking up files
  that a resumed run skipped because they sorted below its watermark.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from codex_state.arguments import check_thread_metadata
from codex_state.errors import (
    BackfillRunningError,
    InvalidInputError,
    RolloutReadError,
    StateError,
)
from codex_state.models import (
    BackfillState,
    BackfillStats,
    BackfillStatus,
    DynamicToolSpec,
    ThreadMetadata,
)
from codex_state.repositories.backfill import BackfillRepository
from codex_state.repositories.rollout_files import RolloutFileRecord, RolloutFileRepository
from codex_state.repositories.threads import ThreadRepository
from codex_state.rollout import extract_metadata_from_rollout
from codex_state.rollout.discovery import ARCHIVED_SESSIONS_SUBDIR as ARCHIVED_SESSIONS_SUBDIR
from codex_state.rollout.discovery import COMPRESSED_ROLLOUT_SUFFIX, RolloutFile, find_rollout_files
from codex_state.rollout.discovery import SESSIONS_SUBDIR as SESSIONS_SUBDIR

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from codex_state.runtime import StateRuntime

logger = logging.getLogger(__name__)

BACKFILL_BATCH_SIZE = 200
BACKFILL_LEASE_SECONDS = 900
"""Codex's lease (#11377). It must outlast one batch: each checkpoint renews it."""


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    """Reported after each committed batch (and once before the first), for progress bars."""

    done: int
    total: int
    upserted: int
    failed: int


ProgressCallback = Callable[[BackfillProgress], None]


def backfill_codex_home(
    runtime: StateRuntime,
    codex_home: str | os.PathLike[str] | None = None,
    *,
    reindex: bool = False,
    batch_size: int = BACKFILL_BATCH_SIZE,
    lease_seconds: int = BACKFILL_LEASE_SECONDS,
    owner: str | None = None,
    progress: ProgressCallback | None = None,
) -> BackfillStats:
    """Index the rollouts of `codex_home` (default: the runtime's) and mark the backfill complete.

    Resumes after the last checkpoint, skipping files whose size and mtime match their record.
    A complete backfill is not run again (all zero stats) unless `reindex` is set, which
    rescans every file from the start; `codex_state.sync.sync_codex_home` is what brings a
    complete index up to date.

    Args:
        runtime: the state database to fill.
        codex_home: the home to scan; required when the runtime was opened with `from_url`.
        reindex: ignore the watermark and the records and read every rollout.
        batch_size: files per transaction and checkpoint.
        lease_seconds: how long a silent backfill keeps its lease before another may take over.
        owner: this backfill's lease-holder name (default: `host:pid:random`).
        progress: called after each committed batch.

    Returns:
        `scanned` files past the watermark: `upserted` rows, `failed` files (unreadable,
        without a thread, or with a path that is not UTF-8; logged and skipped), `unchanged`
        ones not read; plus the parse totals of the files read.

    Raises:
        BackfillRunningError: another live process holds the lease, or took it over while this
            one was stalled (its work up to the last checkpoint is kept).
        DatabaseError: the database failed; the lease is released and the watermark stays at
            the last committed batch.
    """
    home = resolve_home(runtime, codex_home)
    check_batch_size(batch_size)
    owner = owner or new_owner()
    claimed = claim_lease(runtime, owner, lease_seconds, reindex=reindex)
    if claimed is None:
        if runtime.get_backfill_state().status is BackfillStatus.COMPLETE:
            return BackfillStats()
        raise lease_busy(lease_seconds)
    with holding_lease(runtime, owner):
        return _run(runtime, home, owner, claimed.last_watermark, batch_size, progress, reindex)


# ------------------------------------------------------------------------- shared with sync


def resolve_home(runtime: StateRuntime, codex_home: str | os.PathLike[str] | None) -> Path:
    home = runtime.codex_home if codex_home is None else Path(codex_home).expanduser()
    if home is None:
        raise InvalidInputError("codex_home is required for a runtime opened with from_url")
    if not home.is_dir():
        raise InvalidInputError(f"codex home {home} is not a directory")
    # Codex stores absolute rollout paths; a relative home must not leak into the rows.
    return home.absolute()


def check_batch_size(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def new_owner() -> str:
    """A lease owner name, `host:pid:random`: unique, and tells the same host whose it is."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_busy(lease_seconds: int) -> BackfillRunningError:
    return BackfillRunningError(
        "a backfill of this database is already running in another process "
        f"(it is taken over if silent for {lease_seconds} s)"
    )


def claim_lease(
    runtime: StateRuntime, owner: str, lease_seconds: int, *, reindex: bool
) -> BackfillState | None:
    """`try_claim_backfill`, taking over at once a lease whose holder died on this host.

    A holder named `host:pid:random` with this host's name and a pid that no longer exists
    cannot renew its lease (it was killed, or its release failed, e.g. on a full disk): it is
    released with a compare-and-swap on its exact name, so a holder that changed meanwhile is
    left alone, and the claim is tried again in the same transaction.
    """

    def work(session: Session) -> BackfillState | None:
        repository = runtime.repository(BackfillRepository, session)
        claimed = repository.try_claim_backfill(owner, lease_seconds, reindex=reindex)
        if claimed is not None:
            return claimed
        holder = repository.get_backfill_lease_owner()
        if (
            isinstance(holder, str)
            and holder != owner
            and is_dead_local_owner(holder)
            and repository.release_backfill_lease(holder)
        ):
            logger.info("backfill: took over the lease of %s, whose process is gone", holder)
            return repository.try_claim_backfill(owner, lease_seconds, reindex=reindex)
        return None

    return runtime.run_in_transaction(work, write=True)


def is_dead_local_owner(owner: str) -> bool:
    """True when `owner` is `host:pid:random` of this host and no process has that pid.

    Conservative: another host, another format, a pid that exists (even one reused by an
    unrelated process, or one we may not signal) or a platform without `kill(pid, 0)` all
    mean alive, and the lease then expires as usual.
    """
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or os.name != "posix":
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists, as another user
        return False
    return False


@contextmanager
def holding_lease(runtime: StateRuntime, owner: str) -> Iterator[None]:
    """Release `owner`'s lease if the block raises (the lease then need not expire)."""
    try:
        yield
    except BaseException:
        release_quietly(runtime, owner)
        raise


def release_quietly(runtime: StateRuntime, owner: str) -> None:
    try:
        runtime.run_in_transaction(
            lambda s: runtime.repository(BackfillRepository, s).release_backfill_lease(owner),
            write=True,
        )
    except StateError:
        # The original failure matters more. The lease then expires, or is taken over at once
        # by the next run on this host (the pid in its name is gone).
        logger.exception("backfill: could not release the lease")


def lease_lost() -> BackfillRunningError:
    return BackfillRunningError(
        "the backfill lease was taken over by another process; its progress is kept"
    )


@dataclass(slots=True)
class Tally:
    """Running totals, turned into `BackfillStats` at the end."""

    scanned: int = 0
    upserted: int = 0
    failed: int = 0
    unchanged: int = 0
    appended: int = 0
    removed: int = 0
    parse_errors: int = 0
    unknown_types: int = 0
    skipped_tools: int = 0
    replaced_characters: int = 0

    def stats(self) -> BackfillStats:
        return BackfillStats(**{name: getattr(self, name) for name in BackfillStats.model_fields})

    def add(self, stats: BackfillStats) -> None:
        for name in BackfillStats.model_fields:
            setattr(self, name, getattr(self, name) + getattr(stats, name))


@dataclass(slots=True)
class FileRead:
    """A whole rollout file read: its record, and its thread when it has one."""

    record: RolloutFileRecord | None
    metadata: ThreadMetadata | None = None
    tools: Sequence[DynamicToolSpec] | None = None


def storable_path(path: Path | str) -> bool:
    """Whether the database can store the path as text (it is valid UTF-8)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def skip_unstorable(path: Path | str, tally: Tally) -> None:
    # The database stores paths as UTF-8 text; such a file is skipped, not fatal.
    shown = os.fsencode(path).decode("utf-8", "backslashreplace")
    logger.warning("backfill: skipping %s: its path is not valid UTF-8", shown)
    tally.failed += 1


def read_whole(rollout: RolloutFile, default_provider: str, tally: Tally) -> FileRead:
    """Extract one file whole. Only the file can fail here: it is then counted and recorded
    (thread None), so it is not read again until it changes."""
    path = rollout.path
    try:
        stat = os.stat(path)  # before the read: a write during it makes the record stale
    except OSError as err:
        logger.warning("backfill: skipping %s: %s", path, err.strerror or err)
        tally.failed += 1
        return FileRead(None)
    text = str(path)
    try:
        outcome = extract_metadata_from_rollout(path, default_provider)
        metadata = outcome.metadata
        if rollout.archived and metadata.archived_at is None:
            # Extraction set updated_at from the file's mtime: when it was archived.
            metadata = metadata.model_copy(update={"archived_at": metadata.updated_at})
        check_thread_metadata(metadata)  # e.g. a token count beyond 64 bits
    except (RolloutReadError, OSError, ValueError) as err:
        # One bad file must not stop the index; it is counted and named in the log.
        logger.warning("backfill: skipping %s: %s", path, err)
        tally.failed += 1
        return FileRead(RolloutFileRecord(text, stat.st_size, stat.st_mtime_ns, stat.st_size, None))
    tally.parse_errors += outcome.parse_errors
    tally.unknown_types += sum(outcome.unknown_types.values())
    tally.skipped_tools += outcome.skipped_tools
    tally.replaced_characters += outcome.replaced_characters
    compressed = text.endswith(COMPRESSED_ROLLOUT_SUFFIX)
    offset = stat.st_size if compressed else complete_lines_end(path, stat.st_size)
    record = RolloutFileRecord(text, stat.st_size, stat.st_mtime_ns, offset, metadata.id)
    return FileRead(record, metadata, outcome.dynamic_tools)


def complete_lines_end(path: Path | str, size: int) -> int:
    """The offset just past the last newline within the first `size` bytes (0 if none).

    Almost every rollout ends with a newline, which costs one 1-byte read to see; a file
    Codex is writing ends in a partial line, found by reading backwards.
    """
    if size <= 0:
        return 0
    try:
        with open(path, "rb") as file:
            file.seek(size - 1)
            if file.read(1) == b"\n":
                return size
            end, chunk = size - 1, 4096
            while end > 0:
                start = max(0, end - chunk)
                file.seek(start)
                found = file.read(end - start).rfind(b"\n")
                if found >= 0:
                    return start + found + 1
                end, chunk = start, chunk * 2
    except OSError:
        pass
    return 0


def store_reads(session: Session, *, runtime: StateRuntime, reads: Sequence[FileRead]) -> int:
    """Upsert the reads' rows, tools and records in the Session's transaction; rows written."""
    threads = [read.metadata for read in reads if read.metadata is not None]
    tools = [
        (read.metadata.id, read.tools) for read in reads if read.metadata is not None and read.tools
    ]
    repository = runtime.repository(ThreadRepository, session)
    repository.upsert_threads(threads)
    repository.persist_dynamic_tools_many(tools)
    records = [read.record for read in reads if read.record is not None]
    runtime.repository(RolloutFileRepository, session).record_rollout_files(records)
    return len(threads)


def write_unit(
    runtime: StateRuntime,
    owner: str,
    work: Callable[[Session], int],
    *,
    watermark: str | None,
    complete: bool = False,
) -> int:
    """`work` and then a checkpoint at `watermark` (None keeps it), or the completion, in one
    transaction, if `owner` still holds the lease. A database error stops the caller (which
    releases the lease): the watermark never moves past files that were not stored."""

    def unit(session: Session) -> int | None:
        lease = runtime.repository(BackfillRepository, session)
        held = (
            lease.complete_backfill_lease(owner, watermark)
            if complete
            else lease.checkpoint_backfill_lease(owner, watermark)
        )
        # Judged first, in the same transaction: the rows commit only if the lease is ours.
        return work(session) if held else None

    done = runtime.run_in_transaction(unit, write=True)
    if done is None:
        raise lease_lost()
    return done


def last_storable_watermark(files: Sequence[RolloutFile]) -> str | None:
    for rollout in reversed(files):
        if storable_path(rollout.watermark):
            return rollout.watermark
    return None


def load_records(runtime: StateRuntime, home: Path) -> dict[str, RolloutFileRecord]:
    """The recorded files under `home`, in one read."""
    return runtime.run_in_transaction(
        lambda s: runtime.repository(RolloutFileRepository, s).get_rollout_files(str(home))
    )


# ------------------------------------------------------------------------------- the run


def _run(
    runtime: StateRuntime,
    home: Path,
    owner: str,
    watermark: str | None,
    batch_size: int,
    progress: ProgressCallback | None,
    reindex: bool,
) -> BackfillStats:
    found = [
        rollout
        for rollout in find_rollout_files(home)
        if watermark is None or rollout.watermark > watermark
    ]
    tally = Tally(scanned=len(found))
    known = {} if reindex or not found else load_records(runtime, home)
    pending: list[RolloutFile] = []
    for rollout in found:
        if not storable_path(rollout.path):
            skip_unstorable(rollout.path, tally)
        elif known and _unchanged(rollout.path, known):
            tally.unchanged += 1
        else:
            pending.append(rollout)
    if progress is not None:
        progress(BackfillProgress(0, len(pending), 0, tally.failed))
    provider = runtime.default_provider
    for start in range(0, len(pending), batch_size):
        batch = pending[start : start + batch_size]
        reads = [read_whole(rollout, provider, tally) for rollout in batch]
        store = partial(store_reads, runtime=runtime, reads=reads)
        tally.upserted += write_unit(runtime, owner, store, watermark=batch[-1].watermark)
        if progress is not None:
            progress(
                BackfillProgress(start + len(batch), len(pending), tally.upserted, tally.failed)
            )
    write_unit(
        runtime, owner, lambda _s: 0, watermark=last_storable_watermark(found), complete=True
    )
    return tally.stats()


def _unchanged(path: Path, known: dict[str, RolloutFileRecord]) -> bool:
    record = known.get(str(path))
    if record is None:
        return False
    try:
        stat = os.stat(path)
    except OSError:
        return False
    return stat.st_size == record.size and stat.st_mtime_ns == record.mtime_ns
