"""`rollout_files`: what the index last read of each rollout file (ours, revision 0003).

The sync compares each file's `(size, mtime_ns)` with its row and reads only the files that
differ, so one query (`get_rollout_files`) gives it everything it needs to know. Rows are keyed
by the file's absolute path as stored in `threads.rollout_path`; a home's rows are those whose
path starts with the home's path and a separator.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, bindparam, delete, func, select

from codex_state.arguments import check_count, check_int64, check_text
from codex_state.dialect import dialect_insert
from codex_state.errors import InvalidInputError
from codex_state.orm import rollout_files
from codex_state.repositories.base import Repository, translated
from codex_state.statements import Prepared

__all__ = ["RolloutFileRecord", "RolloutFileRepository"]


@dataclass(frozen=True, slots=True)
class RolloutFileRecord:
    """One row of `rollout_files`.

    Attributes:
        path: the file's absolute path (as `threads.rollout_path` stores it).
        size: its size in bytes when it was last read (stat'ed just before the read).
        mtime_ns: its modification time in nanoseconds then.
        indexed_size: the byte offset its lines were applied up to: the end of its last
            complete line (an unfinished last line is read again once finished).
        thread_id: the thread it holds; None when it could not be read or parsed.
        indexed_at: epoch seconds of the write (set by `record_rollout_files`).
    """

    path: str
    size: int
    mtime_ns: int
    indexed_size: int
    thread_id: uuid.UUID | None
    indexed_at: int = 0


_COLUMNS = (
    rollout_files.c.path,
    rollout_files.c.size,
    rollout_files.c.mtime_ns,
    rollout_files.c.indexed_size,
    rollout_files.c.thread_id,
    rollout_files.c.indexed_at,
)
_NAMES = tuple(column.name for column in _COLUMNS)

# `substr(path, 1, n) = prefix` rather than a range or LIKE: it is exact under any collation
# (a PostgreSQL database in en_US.UTF-8 does not order '/' before '0' bytewise) and LIKE is
# case-insensitive on SQLite. It scans the table, which is what loading a home's map does anyway.
_select_under = Prepared(
    select(*_COLUMNS).where(
        func.substr(rollout_files.c.path, 1, bindparam("length", type_=Integer))
        == bindparam("prefix")
    )
)
_select_stats_under = Prepared(
    select(rollout_files.c.path, rollout_files.c.size, rollout_files.c.mtime_ns).where(
        func.substr(rollout_files.c.path, 1, bindparam("length", type_=Integer))
        == bindparam("prefix")
    )
)
_select_one = Prepared(select(*_COLUMNS).where(rollout_files.c.path == bindparam("path")))


def _build_upsert(dialect: str) -> Any:
    insert = dialect_insert(dialect, rollout_files).values(
        {name: bindparam(name) for name in _NAMES}
    )
    return insert.on_conflict_do_update(
        index_elements=["path"],
        set_={name: insert.excluded[name] for name in _NAMES if name != "path"},
    )


_upsert = Prepared(_build_upsert)
_delete = Prepared(delete(rollout_files).where(rollout_files.c.path == bindparam("path")))


def _record(row: Sequence[Any]) -> RolloutFileRecord:
    path, size, mtime_ns, indexed_size, thread_id, indexed_at = row
    return RolloutFileRecord(
        path,
        size,
        mtime_ns,
        indexed_size,
        None if thread_id is None else uuid.UUID(thread_id),
        indexed_at,
    )


def _check_record(record: object) -> RolloutFileRecord:
    if not isinstance(record, RolloutFileRecord):
        raise InvalidInputError(f"expected a RolloutFileRecord, got {type(record).__name__}")
    check_text("path", record.path)
    if not record.path:
        raise InvalidInputError("a rollout file record needs a path")
    check_count("size", record.size)
    check_int64("mtime_ns", record.mtime_ns)
    check_count("indexed_size", record.indexed_size)
    if record.thread_id is not None and not isinstance(record.thread_id, uuid.UUID):
        raise InvalidInputError(f"thread_id must be a UUID or None, got {record.thread_id!r}")
    return record


class RolloutFileRepository(Repository):
    """The per-file records of the rollout index, in one Session's transaction."""

    __slots__ = ()

    @translated
    def get_rollout_files(self, under: str) -> dict[str, RolloutFileRecord]:
        """Every record whose path lies under the directory `under`, by path, in one query."""
        prefix = check_text("under", under).rstrip("/") + "/"
        rows = _select_under.all(self._session, {"length": len(prefix), "prefix": prefix})
        return {row[0]: _record(row) for row in rows}

    @translated
    def get_rollout_file_stats(self, under: str) -> dict[str, tuple[int, int]]:
        """`path -> (size, mtime_ns)` of every record under `under`, in one query: all a sync
        needs to tell which files changed (3 columns, no objects: about 2 ms for 2,000)."""
        prefix = check_text("under", under).rstrip("/") + "/"
        rows = _select_stats_under.all(self._session, {"length": len(prefix), "prefix": prefix})
        return {path: (size, mtime_ns) for path, size, mtime_ns in rows}

    @translated
    def get_rollout_file(self, path: str) -> RolloutFileRecord | None:
        """The record of one file, or None."""
        row = _select_one.first(self._session, {"path": check_text("path", path)})
        return None if row is None else _record(row)

    @translated
    def record_rollout_files(self, records: Iterable[RolloutFileRecord]) -> None:
        """Insert or replace the records, in one executemany; `indexed_at` is set to now."""
        if isinstance(records, RolloutFileRecord) or not isinstance(records, Iterable):
            raise InvalidInputError("records must be an iterable of RolloutFileRecord")
        checked = [_check_record(record) for record in records]
        if not checked:
            return
        now = self._now()
        rows = [
            (
                record.path,
                record.size,
                record.mtime_ns,
                record.indexed_size,
                None if record.thread_id is None else str(record.thread_id),
                now,
            )
            for record in checked
        ]
        _upsert.execute_many_tuples(self._session, _NAMES, rows)

    @translated
    def forget_rollout_files(self, paths: Iterable[str]) -> None:
        """Delete the records of these paths (files that are gone); their threads stay."""
        if isinstance(paths, str) or not isinstance(paths, Iterable):
            raise InvalidInputError("paths must be an iterable of str")
        rows = [{"path": check_text("path", path)} for path in paths]
        if rows:
            _delete.execute_many(self._session, rows)
