"""The benchmarked part of the API as a plain SQLAlchemy ORM implementation, written from the docs.

This is the baseline "what would the obvious ORM code cost": the package's declarative tables
(`codex_state.orm`), a new `Session` per call, `session.get` for point reads, `select(Model)` for
pages, `session.execute(insert(Model), list_of_dicts)` for batches, the ORM upsert
(`sqlite.insert(Model).on_conflict_do_update`, "ORM Upsert Statements"), ORM-enabled
`update(Model).where(...)` judged by `rowcount` for compare-and-swap writes, `session.get` and
attribute changes for the backfill checkpoint, and `Model.model_validate(row,
from_attributes=True)` for the pydantic results. The engine has the package's SQLite pragmas
(WAL, synchronous NORMAL, busy_timeout, foreign_keys) but keeps pysqlite's default transaction
handling (no `BEGIN IMMEDIATE`).

It is a benchmark baseline, not a second implementation: only the calls the benchmarks make are
here, arguments are not checked, and on SQLite its check-then-write units are only as atomic as
pysqlite's deferred transactions make them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    and_,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from codex_state import (
    Anchor,
    DynamicToolSpec,
    LogEntry,
    LogQuery,
    LogRow,
    Phase1ClaimKind,
    Phase1JobClaimOutcome,
    SortKey,
    ThreadMemory,
    ThreadMetadata,
    ThreadNotFoundError,
    ThreadsPage,
)
from codex_state.orm import (
    BackfillStateRow,
    LogRowRecord,
    Phase1JobRow,
    ThreadDynamicToolRow,
    ThreadMemoryRow,
    ThreadRow,
)

ALEMBIC_SCRIPTS = Path(__file__).resolve().parents[2] / "alembic"


def plain_engine(url: str) -> Engine:
    """`create_engine` plus the package's SQLite pragmas on every new connection."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout = 5000")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.close()

    return engine


@cache
def _script_heads() -> frozenset[str]:
    """The head revisions of the package's Alembic scripts (read once per process)."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory(str(ALEMBIC_SCRIPTS)).get_heads())


def _thread(row: ThreadRow) -> ThreadMetadata:
    metadata = ThreadMetadata.model_validate(row, from_attributes=True)
    if row.first_user_message == "":  # stored '' is "no first message yet"
        metadata = metadata.model_copy(update={"first_user_message": None})
    return metadata


_THREAD_VALUES = (
    "id",
    "rollout_path",
    "created_at",
    "updated_at",
    "source",
    "model_provider",
    "cwd",
    "cli_version",
    "title",
    "sandbox_policy",
    "approval_mode",
    "tokens_used",
    "first_user_message",
    "archived",
    "archived_at",
    "git_sha",
    "git_branch",
    "git_origin_url",
)


def _thread_values(metadata: ThreadMetadata) -> dict[str, Any]:
    """A thread's row as a dict (the seed's storage mapping), for ORM inserts."""
    archived_at = metadata.archived_at
    return {
        "id": str(metadata.id),
        "rollout_path": str(metadata.rollout_path),
        "created_at": int(metadata.created_at.timestamp()),
        "updated_at": int(metadata.updated_at.timestamp()),
        "source": metadata.source,
        "model_provider": metadata.model_provider,
        "cwd": str(metadata.cwd),
        "cli_version": metadata.cli_version,
        "title": metadata.title,
        "sandbox_policy": metadata.sandbox_policy,
        "approval_mode": metadata.approval_mode,
        "tokens_used": metadata.tokens_used,
        "first_user_message": metadata.first_user_message or "",
        "archived": int(archived_at is not None),
        "archived_at": None if archived_at is None else int(archived_at.timestamp()),
        "git_sha": metadata.git_sha,
        "git_branch": metadata.git_branch,
        "git_origin_url": metadata.git_origin_url,
    }


_SORT = {SortKey.CREATED_AT: ThreadRow.created_at, SortKey.UPDATED_AT: ThreadRow.updated_at}


def _job_key(thread_id: uuid.UUID | str, scope_kind: str, scope_key: str) -> ColumnElement[bool]:
    return and_(
        Phase1JobRow.thread_id == str(thread_id),
        Phase1JobRow.scope_kind == scope_kind,
        Phase1JobRow.scope_key == scope_key,
    )


def _owned(
    thread_id: uuid.UUID | str, scope_kind: str, scope_key: str, token: str
) -> ColumnElement[bool]:
    return and_(
        _job_key(thread_id, scope_kind, scope_key),
        Phase1JobRow.status == "running",
        Phase1JobRow.ownership_token == token,
    )


class PlainOrmState:
    """The same calls as `StateRuntime`, one `Session` each."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    @classmethod
    def from_url(cls, url: str) -> PlainOrmState:
        """Open an existing database, checking it is at the scripts' head (Alembic cookbook)."""
        from alembic.migration import MigrationContext

        engine = plain_engine(url)
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
        if current != _script_heads():
            engine.dispose()
            raise RuntimeError(f"database at {current}, not at head {set(_script_heads())}")
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    # --------------------------------------------------------------------------------- threads

    def get_thread(self, thread_id: uuid.UUID | str) -> ThreadMetadata | None:
        """`session.get` by primary key."""
        with Session(self.engine) as session:
            row = session.get(ThreadRow, str(thread_id))
            return None if row is None else _thread(row)

    def _thread_upsert(self) -> Any:
        statement = self._insert(ThreadRow)
        return statement.on_conflict_do_update(
            index_elements=[ThreadRow.id],
            set_={name: statement.excluded[name] for name in _THREAD_VALUES if name != "id"},
        )

    def upsert_thread(self, metadata: ThreadMetadata) -> None:
        """One ORM upsert (INSERT ... ON CONFLICT (id) DO UPDATE) in a new Session."""
        with Session(self.engine) as session, session.begin():
            session.execute(self._thread_upsert(), [_thread_values(metadata)])

    def write_backfill_batch(
        self,
        threads: Sequence[ThreadMetadata],
        tools: Sequence[tuple[uuid.UUID, Sequence[DynamicToolSpec]]],
        watermark: str,
    ) -> None:
        """A backfill batch in one Session: bulk upsert, bulk tool insert, the checkpoint."""
        with Session(self.engine) as session, session.begin():
            session.execute(self._thread_upsert(), [_thread_values(t) for t in threads])
            rows = [
                {
                    "thread_id": str(thread_id),
                    "position": position,
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": json.dumps(tool.input_schema, separators=(",", ":")),
                }
                for thread_id, specs in tools
                for position, tool in enumerate(specs)
            ]
            if rows:
                session.execute(
                    self._insert(ThreadDynamicToolRow).on_conflict_do_nothing(
                        index_elements=[
                            ThreadDynamicToolRow.thread_id,
                            ThreadDynamicToolRow.position,
                        ]
                    ),
                    rows,
                )
            self._set_backfill(session, "running", watermark)

    def mark_backfill_running(self) -> None:
        with Session(self.engine) as session, session.begin():
            self._set_backfill(session, "running", None)

    def mark_backfill_complete(self, last_watermark: str | None) -> None:
        with Session(self.engine) as session, session.begin():
            state = self._set_backfill(session, "complete", last_watermark)
            state.last_success_at = state.updated_at

    @staticmethod
    def _set_backfill(session: Session, status: str, watermark: str | None) -> BackfillStateRow:
        state = session.get(BackfillStateRow, 1)
        assert state is not None  # the migration seeds the singleton row
        state.status = status
        if watermark is not None:
            state.last_watermark = watermark
        state.updated_at = int(time.time())
        return state

    def list_threads(
        self,
        page_size: int,
        anchor: Anchor | None = None,
        sort_key: SortKey = SortKey.CREATED_AT,
        allowed_sources: Sequence[str] = (),
        model_providers: Sequence[str] | None = None,
        archived_only: bool = False,
    ) -> ThreadsPage:
        """`select(ThreadRow)` with the seed's filters and keyset predicate, one row extra."""
        column = _SORT[sort_key]
        statement = select(ThreadRow).where(
            ThreadRow.archived == int(archived_only), ThreadRow.first_user_message != ""
        )
        if allowed_sources:
            statement = statement.where(ThreadRow.source.in_(allowed_sources))
        if model_providers:
            statement = statement.where(ThreadRow.model_provider.in_(model_providers))
        if anchor is not None:
            ts = int(anchor.ts.timestamp())
            # The seed's predicate plus the `column <= ts` bound the package uses too (an index
            # range instead of a walk from the newest row): all three variants send this SQL.
            statement = statement.where(
                column <= ts,
                or_(column < ts, and_(column == ts, ThreadRow.id < str(anchor.id))),
            )
        statement = statement.order_by(column.desc(), ThreadRow.id.desc()).limit(page_size + 1)
        with Session(self.engine) as session:
            rows = session.scalars(statement).all()
            items = [_thread(row) for row in rows[:page_size]]
        next_anchor = None
        if len(rows) > page_size:
            last = items[-1]
            ts_value = last.created_at if sort_key is SortKey.CREATED_AT else last.updated_at
            next_anchor = Anchor(ts=ts_value, id=last.id)
        return ThreadsPage(items=items, next_anchor=next_anchor, num_scanned_rows=len(rows))

    # ------------------------------------------------------------------------------------ logs

    def insert_logs(self, entries: Iterable[LogEntry]) -> None:
        """ORM bulk INSERT: `session.execute(insert(LogRowRecord), list_of_dicts)`."""
        rows = [entry.model_dump() for entry in entries]
        if rows:
            with Session(self.engine) as session, session.begin():
                session.execute(insert(LogRowRecord), rows)

    def query_logs(self, query: LogQuery) -> list[LogRow]:
        """`select(LogRowRecord)` with the seed's filters, ordered by id."""
        statement = select(LogRowRecord)
        if query.level_upper is not None:
            statement = statement.where(func.upper(LogRowRecord.level) == query.level_upper.upper())
        if query.from_ts is not None:
            statement = statement.where(LogRowRecord.ts >= query.from_ts)
        if query.to_ts is not None:
            statement = statement.where(LogRowRecord.ts <= query.to_ts)
        for column, needles in (
            (LogRowRecord.module_path, query.module_like),
            (LogRowRecord.file, query.file_like),
        ):
            if needles:
                statement = statement.where(
                    or_(*(column.icontains(needle, autoescape=True) for needle in needles))
                )
        threads: list[ColumnElement[bool]] = []
        if query.thread_ids:
            threads.append(LogRowRecord.thread_id.in_(query.thread_ids))
        if query.include_threadless:
            threads.append(LogRowRecord.thread_id.is_(None))
        if threads:
            statement = statement.where(or_(*threads))
        if query.after_id is not None:
            statement = statement.where(LogRowRecord.id > query.after_id)
        statement = statement.order_by(
            LogRowRecord.id.desc() if query.descending else LogRowRecord.id
        )
        if query.limit is not None:
            statement = statement.limit(query.limit)
        with Session(self.engine) as session:
            return [
                LogRow.model_validate(row, from_attributes=True)
                for row in session.scalars(statement)
            ]

    # ---------------------------------------------------------------------------- phase-1 jobs

    def try_claim_phase1_job(
        self,
        thread_id: uuid.UUID | str,
        scope_kind: str,
        scope_key: str,
        owner_session_id: uuid.UUID | str,
        source_updated_at: int,
        lease_seconds: int,
    ) -> Phase1JobClaimOutcome:
        """`session.get` the job; insert it, or steal it with a guarded ORM update."""
        now = int(time.time())
        token = str(uuid.uuid4())
        claimed = Phase1JobClaimOutcome(kind=Phase1ClaimKind.CLAIMED, ownership_token=token)
        key = (str(thread_id), scope_kind, scope_key)
        try:
            with Session(self.engine) as session, session.begin():
                job = session.get(Phase1JobRow, key)
                if job is None:
                    session.execute(
                        insert(Phase1JobRow),
                        [
                            {
                                "thread_id": key[0],
                                "scope_kind": scope_kind,
                                "scope_key": scope_key,
                                "status": "running",
                                "owner_session_id": str(owner_session_id),
                                "started_at": now,
                                "source_updated_at": source_updated_at,
                                "ownership_token": token,
                            }
                        ],
                    )
                    return claimed
                if job.status == "failed":
                    return Phase1JobClaimOutcome(kind=Phase1ClaimKind.SKIPPED_TERMINAL_FAILURE)
                if job.status == "succeeded" and job.source_updated_at >= source_updated_at:
                    return Phase1JobClaimOutcome(kind=Phase1ClaimKind.SKIPPED_UP_TO_DATE)
                stale_cutoff = now - max(lease_seconds, 0)
                if (
                    job.status == "running"
                    and job.started_at is not None
                    and job.started_at > stale_cutoff
                ):
                    return Phase1JobClaimOutcome(kind=Phase1ClaimKind.SKIPPED_RUNNING)
                started = (
                    Phase1JobRow.started_at.is_(None)
                    if job.started_at is None
                    else Phase1JobRow.started_at == job.started_at
                )
                result = session.execute(
                    update(Phase1JobRow)
                    .where(
                        _job_key(*key),
                        Phase1JobRow.status == job.status,
                        Phase1JobRow.source_updated_at == job.source_updated_at,
                        started,
                    )
                    .values(
                        status="running",
                        owner_session_id=str(owner_session_id),
                        started_at=now,
                        finished_at=None,
                        failure_reason=None,
                        source_updated_at=source_updated_at,
                        raw_memory_path=None,
                        summary_hash=None,
                        ownership_token=token,
                    )
                )
                if result.rowcount:  # type: ignore[attr-defined]
                    return claimed
                return Phase1JobClaimOutcome(kind=Phase1ClaimKind.SKIPPED_RUNNING)
        except IntegrityError:  # another claimer inserted the job first
            return Phase1JobClaimOutcome(kind=Phase1ClaimKind.SKIPPED_RUNNING)

    def renew_phase1_job_lease(
        self, thread_id: uuid.UUID | str, scope_kind: str, scope_key: str, ownership_token: str
    ) -> bool:
        """ORM-enabled UPDATE guarded by the token, judged by rowcount."""
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                update(Phase1JobRow)
                .where(_owned(thread_id, scope_kind, scope_key, ownership_token))
                .values(started_at=int(time.time()))
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def upsert_thread_memory_for_scope_if_phase1_owner(
        self,
        thread_id: uuid.UUID | str,
        scope_kind: str,
        scope_key: str,
        ownership_token: str,
        raw_memory: str,
        memory_summary: str,
    ) -> ThreadMemory | None:
        """Check the thread and the job's owner, then add or change the memory row."""
        key = (str(thread_id), scope_kind, scope_key)
        now = int(time.time())
        with Session(self.engine) as session, session.begin():
            if session.get(ThreadRow, key[0]) is None:
                raise ThreadNotFoundError(f"thread not found: {thread_id}")
            job = session.get(Phase1JobRow, key)
            if job is None or job.status != "running" or job.ownership_token != ownership_token:
                return None
            memory = session.get(ThreadMemoryRow, key)
            if memory is None:
                memory = ThreadMemoryRow(
                    thread_id=key[0],
                    scope_kind=scope_kind,
                    scope_key=scope_key,
                    raw_memory=raw_memory,
                    memory_summary=memory_summary,
                    updated_at=now,
                )
                session.add(memory)
            else:
                memory.raw_memory = raw_memory
                memory.memory_summary = memory_summary
                memory.updated_at = memory.updated_at + 1 if now <= memory.updated_at else now
            session.flush()
            return ThreadMemory.model_validate(memory, from_attributes=True)

    def mark_phase1_job_succeeded(
        self,
        thread_id: uuid.UUID | str,
        scope_kind: str,
        scope_key: str,
        ownership_token: str,
        raw_memory_path: str,
        summary_hash: str,
    ) -> bool:
        """ORM-enabled UPDATE guarded by the token, judged by rowcount."""
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                update(Phase1JobRow)
                .where(_owned(thread_id, scope_kind, scope_key, ownership_token))
                .values(
                    status="succeeded",
                    finished_at=int(time.time()),
                    failure_reason=None,
                    raw_memory_path=raw_memory_path,
                    summary_hash=summary_hash,
                )
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]
