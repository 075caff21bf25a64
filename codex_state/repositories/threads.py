"""Thread rows and their dynamic tools: point reads, keyset pages and insert-or-replace writes.

Point reads and pages are the hot path. Each statement shape is built once (module level,
`bindparam`s, one bindparam per IN-list element) as a `FastQuery`, which `ThreadReads` runs on a
raw DBAPI connection: SQLAlchemy's per-execution machinery would cost more than the query (see
`codex_state.fastread`). Reads inside a write transaction run the same statements through the
session.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, exists, or_, select
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session

from codex_state.clock import from_epoch_seconds, to_epoch_seconds
from codex_state.dialect import PerDialect, dialect_insert
from codex_state.errors import InvalidInputError
from codex_state.fastread import FastQuery, in_list, in_list_params
from codex_state.models import (
    Anchor,
    DynamicToolSpec,
    SortKey,
    ThreadMetadata,
    ThreadsPage,
    path_text,
)
from codex_state.orm import thread_dynamic_tools, threads

# The seed's 17 selected columns, in its order; `_to_metadata` reads them by position.
_COLUMNS = (
    threads.c.id,
    threads.c.rollout_path,
    threads.c.created_at,
    threads.c.updated_at,
    threads.c.source,
    threads.c.model_provider,
    threads.c.cwd,
    threads.c.cli_version,
    threads.c.title,
    threads.c.sandbox_policy,
    threads.c.approval_mode,
    threads.c.tokens_used,
    threads.c.first_user_message,
    threads.c.archived_at,
    threads.c.git_sha,
    threads.c.git_branch,
    threads.c.git_origin_url,
)

_select_thread = FastQuery(select(*_COLUMNS).where(threads.c.id == bindparam("id")))
_thread_exists = select(exists().where(threads.c.id == bindparam("id")))

_select_rollout_path = {
    archived: select(threads.c.rollout_path).where(
        threads.c.id == bindparam("id"),
        *(() if archived is None else (threads.c.archived == int(archived),)),
    )
    for archived in (None, True, False)
}


def _build_upsert(dialect: str) -> Any:
    insert = dialect_insert(dialect, threads).values(
        {column.name: bindparam(column.name) for column in (*_COLUMNS, threads.c.archived)}
    )
    replaced = {
        column.name: insert.excluded[column.name]
        for column in (*_COLUMNS, threads.c.archived)
        if column.name != "id"
    }
    return insert.on_conflict_do_update(index_elements=["id"], set_=replaced)


_upsert_thread = PerDialect(_build_upsert)

_select_tools = (
    select(
        thread_dynamic_tools.c.name,
        thread_dynamic_tools.c.description,
        thread_dynamic_tools.c.input_schema,
    )
    .where(thread_dynamic_tools.c.thread_id == bindparam("thread_id"))
    .order_by(thread_dynamic_tools.c.position)
)

_insert_tools = PerDialect(
    lambda dialect: dialect_insert(dialect, thread_dynamic_tools).on_conflict_do_nothing(
        index_elements=["thread_id", "position"]
    )
)

_SORT_COLUMNS = {SortKey.CREATED_AT: threads.c.created_at, SortKey.UPDATED_AT: threads.c.updated_at}


# One statement per (ids only, sort key, number of sources, of providers, anchor): filter
# lists are short and repeat, so few shapes are live at once.
@lru_cache(maxsize=256)
def _page_statement(
    ids_only: bool, sort_key: SortKey, sources: int, providers: int, anchor: bool
) -> FastQuery:
    column = _SORT_COLUMNS[sort_key]
    conditions: list[ColumnElement[bool]] = [
        threads.c.archived == bindparam("archived"),
        threads.c.first_user_message != "",
    ]
    if sources:
        conditions.append(in_list(threads.c.source, "source", sources))
    if providers:
        conditions.append(in_list(threads.c.model_provider, "provider", providers))
    if anchor:
        ts = bindparam("anchor_ts", type_=column.type)
        anchor_id = bindparam("anchor_id", type_=threads.c.id.type)
        # The seed's keyset predicate, plus `column <= ts`: the same rows, but a bound both
        # SQLite and PostgreSQL turn into an index range, so deep pages do not walk the prefix.
        conditions.append(column <= ts)
        conditions.append(or_(column < ts, and_(column == ts, threads.c.id < anchor_id)))
    return FastQuery(
        select(*((threads.c.id,) if ids_only else _COLUMNS))
        .where(*conditions)
        .order_by(column.desc(), threads.c.id.desc())
        .limit(bindparam("limit"))
    )


def _to_metadata(row: Sequence[Any]) -> ThreadMetadata:
    """A `ThreadMetadata` from a row of `_COLUMNS` (also used by the benchmark's baseline)."""
    archived_at = row[13]
    return ThreadMetadata(
        id=uuid.UUID(row[0]),
        rollout_path=Path(row[1]),
        created_at=from_epoch_seconds(row[2]),
        updated_at=from_epoch_seconds(row[3]),
        source=row[4],
        model_provider=row[5],
        cwd=Path(row[6]),
        cli_version=row[7],
        title=row[8],
        sandbox_policy=row[9],
        approval_mode=row[10],
        tokens_used=row[11],
        first_user_message=row[12] or None,
        archived_at=None if archived_at is None else from_epoch_seconds(archived_at),
        git_sha=row[14],
        git_branch=row[15],
        git_origin_url=row[16],
    )


def thread_params(metadata: ThreadMetadata) -> dict[str, Any]:
    """Bind parameters of the upsert: the seed's storage mapping of one `ThreadMetadata`."""
    archived_at = metadata.archived_at
    return {
        "id": str(metadata.id),
        "rollout_path": path_text(metadata.rollout_path),
        "created_at": to_epoch_seconds(metadata.created_at),
        "updated_at": to_epoch_seconds(metadata.updated_at),
        "source": metadata.source,
        "model_provider": metadata.model_provider,
        "cwd": path_text(metadata.cwd),
        "cli_version": metadata.cli_version,
        "title": metadata.title,
        "sandbox_policy": metadata.sandbox_policy,
        "approval_mode": metadata.approval_mode,
        "tokens_used": metadata.tokens_used,
        "first_user_message": metadata.first_user_message or "",
        "archived": int(archived_at is not None),
        "archived_at": None if archived_at is None else to_epoch_seconds(archived_at),
        "git_sha": metadata.git_sha,
        "git_branch": metadata.git_branch,
        "git_origin_url": metadata.git_origin_url,
    }


def tool_params(thread_id: uuid.UUID, tools: Sequence[DynamicToolSpec]) -> list[dict[str, Any]]:
    """Rows of `thread_dynamic_tools`: position is the list index, the schema compact JSON."""
    key = str(thread_id)
    return [
        {
            "thread_id": key,
            "position": position,
            "name": tool.name,
            "description": tool.description,
            "input_schema": json.dumps(tool.input_schema, separators=(",", ":")),
        }
        for position, tool in enumerate(tools)
    ]


def coerce_tools(tools: Iterable[DynamicToolSpec | Mapping[str, Any]]) -> list[DynamicToolSpec]:
    """Tool specs from specs or their JSON form (`inputSchema`), rejecting anything else."""
    if isinstance(tools, str | bytes | Mapping):
        raise InvalidInputError("dynamic tools must be a sequence of tool specs")
    specs: list[DynamicToolSpec] = []
    for tool in tools:
        if isinstance(tool, DynamicToolSpec):
            specs.append(tool)
        elif isinstance(tool, Mapping):
            try:
                specs.append(DynamicToolSpec.model_validate(tool))
            except ValueError as err:
                raise InvalidInputError(f"invalid dynamic tool spec: {err}") from err
        else:
            raise InvalidInputError(f"invalid dynamic tool spec: {tool!r}")
    return specs


class ThreadRepository:
    """Reads and writes of `threads` and `thread_dynamic_tools` within one session."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, thread_id: uuid.UUID) -> ThreadMetadata | None:
        """The thread, read inside this session's transaction (e.g. before a rewrite)."""
        row = (
            self._session.connection()
            .execute(_select_thread.statement, {"id": str(thread_id)})
            .first()
        )
        return None if row is None else _to_metadata(row)

    def exists(self, thread_id: uuid.UUID) -> bool:
        return bool(self._session.execute(_thread_exists, {"id": str(thread_id)}).scalar())

    def upsert(self, metadata: ThreadMetadata) -> None:
        self.upsert_many([metadata])

    def upsert_many(self, items: Sequence[ThreadMetadata]) -> None:
        """Insert or replace every row in one (executemany) statement."""
        if items:
            self._session.connection().execute(
                _upsert_thread(self._session), [thread_params(item) for item in items]
            )

    def find_rollout_path(self, thread_id: uuid.UUID, archived_only: bool | None) -> Path | None:
        value = self._session.execute(
            _select_rollout_path[archived_only], {"id": str(thread_id)}
        ).scalar_one_or_none()
        return None if value is None else Path(value)

    def get_dynamic_tools(self, thread_id: uuid.UUID) -> list[DynamicToolSpec] | None:
        rows = self._session.execute(_select_tools, {"thread_id": str(thread_id)}).all()
        if not rows:
            return None
        return [
            DynamicToolSpec(name=name, description=description, input_schema=json.loads(schema))
            for name, description, schema in rows
        ]

    def insert_dynamic_tools_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert tool rows (from `tool_params`) in one statement; existing positions are kept."""
        if rows:
            self._session.connection().execute(_insert_tools(self._session), list(rows))


class ThreadReads:
    """The hot thread reads, on a checked-out DBAPI connection (`StateRuntime._fast_read`)."""

    def __init__(self, connection: DBAPIConnection, dialect: Dialect) -> None:
        self._connection = connection
        self._dialect = dialect

    def get(self, thread_id: uuid.UUID) -> ThreadMetadata | None:
        row = _select_thread.first(self._connection, self._dialect, {"id": str(thread_id)})
        return None if row is None else _to_metadata(row)

    def page(
        self,
        *,
        limit: int,
        anchor: Anchor | None,
        sort_key: SortKey,
        sources: Sequence[str],
        providers: Sequence[str],
        archived_only: bool,
        ids_only: bool = False,
    ) -> list[tuple[Any, ...]]:
        """Up to `limit` rows of one keyset page, newest first (the seed's filters)."""
        params: dict[str, Any] = {"archived": int(archived_only), "limit": limit}
        params.update(in_list_params("source", sources))
        params.update(in_list_params("provider", providers))
        if anchor is not None:
            params["anchor_ts"] = to_epoch_seconds(anchor.ts)
            params["anchor_id"] = str(anchor.id)
        statement = _page_statement(
            ids_only, sort_key, len(sources), len(providers), anchor is not None
        )
        return statement.all(self._connection, self._dialect, params)

    def list_page(
        self,
        page_size: int,
        anchor: Anchor | None,
        sort_key: SortKey,
        sources: Sequence[str],
        providers: Sequence[str],
        archived_only: bool,
    ) -> ThreadsPage:
        rows = self.page(
            limit=page_size + 1,
            anchor=anchor,
            sort_key=sort_key,
            sources=sources,
            providers=providers,
            archived_only=archived_only,
        )
        scanned = len(rows)
        items = [_to_metadata(row) for row in rows[:page_size]]
        next_anchor = None
        if scanned > page_size and items:
            last = items[-1]
            ts = last.created_at if sort_key is SortKey.CREATED_AT else last.updated_at
            next_anchor = Anchor(ts=ts, id=last.id)
        return ThreadsPage(items=items, next_anchor=next_anchor, num_scanned_rows=scanned)
