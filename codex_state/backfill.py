"""Backfill: index every rollout file of a codex home into the `threads` table.

The walk follows Codex (seed-notes section 7): `sessions/**/rollout-*.jsonl` (live) and
`archived_sessions/**/rollout-*.jsonl` (archived), ordered by their codex-home-relative paths
compared as plain strings (the *watermark*), in batches with a checkpoint after each. Beyond
Codex:

- A lease (`backfill_state.lease_owner`, heartbeat `updated_at`) lets one process backfill at a
  time; a second one gets `BackfillRunningError`, and a killed one is taken over once its lease
  has expired. There is no state stuck at `running`.
- Each batch (its rows, its tools and its checkpoint) is one transaction, so a kill at any point
  loses at most the batch in progress, which the next run redoes.
- `reindex=True` rescans every file whatever the watermark, picking up files that a resumed run
  skipped because they sorted below its watermark.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from codex_state.errors import BackfillRunningError, InvalidInputError, StateError
from codex_state.models import BackfillStats, BackfillStatus, DynamicToolSpec, ThreadMetadata
from codex_state.repositories.backfill import BackfillRepository
from codex_state.repositories.threads import ThreadRepository
from codex_state.rollout import extract_metadata_from_rollout
from codex_state.rollout.discovery import ARCHIVED_SESSIONS_SUBDIR as ARCHIVED_SESSIONS_SUBDIR
from codex_state.rollout.discovery import SESSIONS_SUBDIR as SESSIONS_SUBDIR
from codex_state.rollout.discovery import RolloutFile, find_rollout_files

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

    Resumes after the last checkpoint. A complete backfill is not run again (all zero stats)
    unless `reindex` is set, which rescans every file from the start.

    Args:
        runtime: the state database to fill.
        codex_home: the home to scan; required when the runtime was opened with `from_url`.
        reindex: ignore the watermark and rescan every rollout.
        batch_size: files per transaction and checkpoint.
        lease_seconds: how long a silent backfill keeps its lease before another may take over.
        owner: this backfill's lease-holder name (default: host, pid and a random suffix).
        progress: called after each committed batch.

    Returns:
        `scanned` files past the watermark, `upserted` rows, `failed` files (unreadable or
        without a thread; logged and skipped).

    Raises:
        BackfillRunningError: another live process holds the lease, or took it over while this
            one was stalled (its work up to the last checkpoint is kept).
    """
    home = _resolve_home(runtime, codex_home)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    claimed = runtime.run_in_transaction(
        lambda s: runtime.repository(BackfillRepository, s).try_claim_backfill(
            owner, lease_seconds, reindex=reindex
        ),
        write=True,
    )
    if claimed is None:
        if runtime.get_backfill_state().status is BackfillStatus.COMPLETE:
            return BackfillStats()
        raise BackfillRunningError(
            "a backfill of this database is already running in another process "
            f"(it is taken over if silent for {lease_seconds} s)"
        )
    finished = False
    try:
        stats = _run(runtime, home, owner, claimed.last_watermark, batch_size, progress)
        finished = True
        return stats
    finally:
        if not finished:
            _release_quietly(runtime, owner)


def _resolve_home(runtime: StateRuntime, codex_home: str | os.PathLike[str] | None) -> Path:
    home = runtime.codex_home if codex_home is None else Path(codex_home).expanduser()
    if home is None:
        raise InvalidInputError("codex_home is required for a runtime opened with from_url")
    if not home.is_dir():
        raise InvalidInputError(f"codex home {home} is not a directory")
    # Codex stores absolute rollout paths; a relative home must not leak into the rows.
    return home.absolute()


def _run(
    runtime: StateRuntime,
    home: Path,
    owner: str,
    watermark: str | None,
    batch_size: int,
    progress: ProgressCallback | None,
) -> BackfillStats:
    pending = [
        rollout
        for rollout in find_rollout_files(home)
        if watermark is None or rollout.watermark > watermark
    ]
    upserted = failed = 0
    if progress is not None:
        progress(BackfillProgress(0, len(pending), 0, 0))
    for start in range(0, len(pending), batch_size):
        batch = pending[start : start + batch_size]
        threads, tools, batch_failed = _extract_batch(batch, runtime.default_provider)
        upserted += _write_batch(runtime, owner, threads, tools, batch[-1].watermark)
        failed += batch_failed
        if progress is not None:
            progress(BackfillProgress(start + len(batch), len(pending), upserted, failed))
    last = pending[-1].watermark if pending else None
    completed = runtime.run_in_transaction(
        lambda s: runtime.repository(BackfillRepository, s).complete_backfill_lease(owner, last),
        write=True,
    )
    if not completed:
        raise _lease_lost()
    return BackfillStats(scanned=len(pending), upserted=upserted, failed=failed)


ToolsOf = tuple[uuid.UUID, Sequence[DynamicToolSpec]]


def _extract_batch(
    batch: Sequence[RolloutFile], default_provider: str
) -> tuple[list[ThreadMetadata], list[ToolsOf], int]:
    threads: list[ThreadMetadata] = []
    tools: list[ToolsOf] = []
    failed = 0
    for rollout in batch:
        if not _storable(rollout.path):
            # The database stores paths as UTF-8 text; such a file is skipped, not fatal.
            logger.warning("backfill: skipping %r: its path is not valid UTF-8", rollout.path)
            failed += 1
            continue
        try:
            outcome = extract_metadata_from_rollout(rollout.path, default_provider)
        except (StateError, OSError, ValueError) as err:
            # One bad file must not stop the index; it is counted and named in the log.
            logger.warning("backfill: skipping %s: %s", rollout.path, err)
            failed += 1
            continue
        metadata = outcome.metadata
        if rollout.archived and metadata.archived_at is None:
            # Extraction set updated_at from the file's mtime: when it was archived.
            metadata = metadata.model_copy(update={"archived_at": metadata.updated_at})
        threads.append(metadata)
        if outcome.dynamic_tools:
            tools.append((metadata.id, outcome.dynamic_tools))
    return threads, tools, failed


def _write_batch(
    runtime: StateRuntime,
    owner: str,
    threads: list[ThreadMetadata],
    tools: list[ToolsOf],
    watermark: str,
) -> int:
    """Upsert a batch's rows and tools and checkpoint, in one transaction, if `owner` still
    holds the lease. A database error stops the backfill (the caller releases the lease): the
    watermark never moves past files that were not stored."""

    def work(session: Session) -> bool:
        if not runtime.repository(BackfillRepository, session).checkpoint_backfill_lease(
            owner, watermark
        ):
            return False
        repository = runtime.repository(ThreadRepository, session)
        repository.upsert_threads(threads)
        repository.persist_dynamic_tools_many(tools)
        return True

    if not runtime.run_in_transaction(work, write=True):
        raise _lease_lost()
    return len(threads)


def _storable(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _lease_lost() -> BackfillRunningError:
    return BackfillRunningError(
        "the backfill lease was taken over by another process; its progress is kept"
    )


def _release_quietly(runtime: StateRuntime, owner: str) -> None:
    try:
        runtime.run_in_transaction(
            lambda s: runtime.repository(BackfillRepository, s).release_backfill_lease(owner),
            write=True,
        )
    except StateError:
        # The original failure matters more; the lease then simply expires.
        logger.exception("backfill: could not release the lease")
