"""Thread rows and their dynamic tools: point reads, keyset pages and insert-or-replace writes.

Point reads and pages are the hot path: each statement shape is built once (module level,
`bindparam`s, one bindparam per IN-list element) and compiled once per backend (`Prepared`).
Archive, unarchive and the incremental writer change only what they mean to change: archive is
one targeted `UPDATE`, and the incremental writer reads the row `FOR UPDATE` (PostgreSQL; SQLite
already holds the write lock) before folding new items into it, so a concurrent committed write
is never lost.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from codex_state.arguments import (
    as_path,
    check_anchor,
    check_count,
    check_sort_key,
    check_strings,
    check_thread_metadata,
)
from codex_state.clock import Clock, file_mtime, from_epoch_seconds, to_epoch_seconds
from codex_state.dialect import dialect_insert
from codex_state.errors import InvalidInputError, StateError, ThreadNotFoundError
from codex_state.metrics import METRIC_DB_ERROR, Metrics, count
from codex_state.models import (
    Anchor,
    DynamicToolSpec,
    SortKey,
    ThreadMetadata,
    ThreadMetadataBuilder,
    ThreadsPage,
    parse_thread_id,
    path_text,
)
from codex_state.orm import Int64, thread_dynamic_tools, threads
from codex_state.repositories.base import DEFAULT_PROVIDER, Repository, translated
from codex_state.rollout import RolloutItem, dynamic_tools_from_items
from codex_state.rollout import apply_rollout_items as apply_items
from codex_state.statements import Prepared, in_list, in_list_params

# The seed's 17 selected columns, in its order; `to_metadata` reads them by position.
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

_select_thread = Prepared(select(*_COLUMNS).where(threads.c.id == bindparam("id")))
# FOR UPDATE (PostgreSQL) holds the row until commit, so a read-then-rewrite loses nothing.
_select_thread_for_update = Prepared(
    select(*_COLUMNS).where(threads.c.id == bindparam("id")).with_for_update()
)
_thread_exists = Prepared(select(threads.c.id).where(threads.c.id == bindparam("id")))

_select_rollout_path = {
    archived: Prepared(
        select(threads.c.rollout_path).where(
            threads.c.id == bindparam("id"),
            *(() if archived is None else (threads.c.archived == int(archived),)),
        )
    )
    for archived in (None, True, False)
}

_UPSERT_COLUMNS = (*_COLUMNS, threads.c.archived)


def _build_upsert(dialect: str) -> Any:
    insert = dialect_insert(dialect, threads).values(
        {column.name: bindparam(column.name) for column in _UPSERT_COLUMNS}
    )
    replaced = {
        column.name: insert.excluded[column.name]
        for column in _UPSERT_COLUMNS
        if column.name != "id"
    }
    return insert.on_conflict_do_update(index_elements=["id"], set_=replaced)


_upsert_thread = Prepared(_build_upsert)

_set_archived = Prepared(
    update(threads)
    .where(threads.c.id == bindparam("p_id"))
    .values(
        archived=bindparam("p_archived"),
        archived_at=bindparam("p_archived_at", type_=Int64),
        rollout_path=bindparam("p_rollout_path"),
        updated_at=func.coalesce(bindparam("p_updated_at", type_=Int64), threads.c.updated_at),
    )
)

_select_tools = Prepared(
    select(
        thread_dynamic_tools.c.name,
        thread_dynamic_tools.c.description,
        thread_dynamic_tools.c.input_schema,
    )
    .where(thread_dynamic_tools.c.thread_id == bindparam("thread_id"))
    .order_by(thread_dynamic_tools.c.position)
)

_TOOL_COLUMNS = ("thread_id", "position", "name", "description", "input_schema")
_insert_tools = Prepared(
    lambda dialect: (
        dialect_insert(dialect, thread_dynamic_tools)
        .values({name: bindparam(name) for name in _TOOL_COLUMNS})
        .on_conflict_do_nothing(index_elements=["thread_id", "position"])
    )
)

_SORT_COLUMNS = {SortKey.CREATED_AT: threads.c.created_at, SortKey.UPDATED_AT: threads.c.updated_at}


# One statement per (ids only, sort key, number of sources, of providers, anchor): filter
# lists are short and repeat, so few shapes are live at once.
@lru_cache(maxsize=256)
def _page_statement(
    ids_only: bool, sort_key: SortKey, sources: int, providers: int, anchor: bool
) -> Prepared:
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
    return Prepared(
        select(*((threads.c.id,) if ids_only else _COLUMNS))
        .where(*conditions)
        .order_by(column.desc(), threads.c.id.desc())
        .limit(bindparam("limit"))
    )


def to_metadata(row: Sequence[Any]) -> ThreadMetadata:
    """A `ThreadMetadata` from a row of the seed's 17 thread columns, in the seed's order."""
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


def _thread_params(metadata: ThreadMetadata) -> dict[str, Any]:
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


def _tool_params(thread_id: uuid.UUID, tools: Sequence[DynamicToolSpec]) -> list[dict[str, Any]]:
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


def _coerce_tools(tools: Iterable[DynamicToolSpec | Mapping[str, Any]]) -> list[DynamicToolSpec]:
    """Tool specs from specs or their JSON form (`inputSchema`), rejecting anything else."""
    if isinstance(tools, str | bytes | Mapping) or not isinstance(tools, Iterable):
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


class ThreadRepository(Repository):
    """`threads` and `thread_dynamic_tools` in one Session's transaction.

    Args:
        session: see `Repository`.
        default_provider: the model provider `apply_rollout_items` records for rollouts that
            name none.
        metrics: where `apply_rollout_items` counts `codex.db.error` (by failing `stage`).
    """

    __slots__ = ("_default_provider", "_metrics")

    def __init__(
        self,
        session: Session,
        *,
        clock: Clock | None = None,
        default_provider: str = DEFAULT_PROVIDER,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(session, clock=clock)
        self._default_provider = default_provider
        self._metrics = metrics

    @translated
    def get_thread(self, thread_id: uuid.UUID | str) -> ThreadMetadata | None:
        row = _select_thread.first(self._session, {"id": str(parse_thread_id(thread_id))})
        return None if row is None else to_metadata(row)

    @translated
    def upsert_thread(self, metadata: ThreadMetadata) -> None:
        """Insert the thread, or replace every column of the row with the same id."""
        _upsert_thread.execute(self._session, _thread_params(check_thread_metadata(metadata)))

    @translated
    def upsert_threads(self, items: Sequence[ThreadMetadata]) -> None:
        """`upsert_thread` for many rows in one executemany (the backfill's batches)."""
        rows = [_thread_params(check_thread_metadata(item)) for item in items]
        if rows:
            _upsert_thread.execute_many(self._session, rows)

    @translated
    def list_threads(
        self,
        page_size: int,
        anchor: Anchor | None = None,
        sort_key: SortKey = SortKey.CREATED_AT,
        allowed_sources: Sequence[str] = (),
        model_providers: Sequence[str] | None = None,
        archived_only: bool = False,
    ) -> ThreadsPage:
        """One keyset page, newest first; pass the page's `next_anchor` to get the next one.

        Threads without a first user message are hidden, as in Codex.
        """
        size = check_count("page_size", page_size)
        key = check_sort_key(sort_key)
        rows = self._page(
            size + 1, anchor, key, allowed_sources, model_providers, archived_only, False
        )
        items = [to_metadata(row) for row in rows[:size]]
        next_anchor = None
        if len(rows) > size and items:
            last = items[-1]
            ts = last.created_at if key is SortKey.CREATED_AT else last.updated_at
            next_anchor = Anchor(ts=ts, id=last.id)
        return ThreadsPage(items=items, next_anchor=next_anchor, num_scanned_rows=len(rows))

    @translated
    def list_thread_ids(
        self,
        limit: int,
        anchor: Anchor | None = None,
        sort_key: SortKey = SortKey.CREATED_AT,
        allowed_sources: Sequence[str] = (),
        model_providers: Sequence[str] | None = None,
        archived_only: bool = False,
    ) -> list[uuid.UUID]:
        """Ids of up to `limit` threads, with the filters and order of `list_threads`."""
        size = check_count("limit", limit)
        key = check_sort_key(sort_key)
        rows = self._page(size, anchor, key, allowed_sources, model_providers, archived_only, True)
        return [uuid.UUID(row[0]) for row in rows]

    def _page(
        self,
        limit: int,
        anchor: Anchor | None,
        sort_key: SortKey,
        allowed_sources: Sequence[str],
        model_providers: Sequence[str] | None,
        archived_only: bool,
        ids_only: bool,
    ) -> Sequence[Any]:
        after = check_anchor(anchor)
        sources = check_strings("allowed_sources", allowed_sources)
        providers = check_strings("model_providers", model_providers)
        params: dict[str, Any] = {"archived": int(bool(archived_only)), "limit": limit}
        params.update(in_list_params("source", sources))
        params.update(in_list_params("provider", providers))
        if after is not None:
            params["anchor_ts"] = to_epoch_seconds(after.ts)
            params["anchor_id"] = str(after.id)
        statement = _page_statement(
            ids_only, sort_key, len(sources), len(providers), after is not None
        )
        return statement.all(self._session, params)

    @translated
    def find_rollout_path_by_id(
        self, thread_id: uuid.UUID | str, archived_only: bool | None = None
    ) -> Path | None:
        """The thread's rollout path; `archived_only` True/False also requires that state."""
        key = str(parse_thread_id(thread_id))
        if archived_only is not None and not isinstance(archived_only, bool):
            raise InvalidInputError(f"archived_only must be None or a bool, got {archived_only!r}")
        row = _select_rollout_path[archived_only].first(self._session, {"id": key})
        return None if row is None else Path(row[0])

    @translated
    def mark_archived(
        self,
        thread_id: uuid.UUID | str,
        rollout_path: str | os.PathLike[str],
        archived_at: datetime,
    ) -> None:
        """Record that the thread's rollout moved to `rollout_path` and was archived.

        `updated_at` becomes the file's mtime when the file exists. Unknown threads are ignored.
        """
        if not isinstance(archived_at, datetime):
            raise InvalidInputError(f"archived_at must be a datetime, got {archived_at!r}")
        self._set_archived(thread_id, rollout_path, to_epoch_seconds(archived_at))

    @translated
    def mark_unarchived(
        self, thread_id: uuid.UUID | str, rollout_path: str | os.PathLike[str]
    ) -> None:
        """Record that the thread's rollout moved back to `rollout_path`; see `mark_archived`."""
        self._set_archived(thread_id, rollout_path, None)

    def _set_archived(
        self,
        thread_id: uuid.UUID | str,
        rollout_path: str | os.PathLike[str],
        archived_at: int | None,
    ) -> None:
        key = str(parse_thread_id(thread_id))
        path = as_path("rollout_path", rollout_path)
        mtime = file_mtime(path)
        params = {
            "p_id": key,
            "p_archived": int(archived_at is not None),
            "p_archived_at": archived_at,
            "p_rollout_path": path_text(path),
            "p_updated_at": None if mtime is None else to_epoch_seconds(mtime),
        }
        _set_archived.execute(self._session, params)

    @translated
    def get_dynamic_tools(self, thread_id: uuid.UUID | str) -> list[DynamicToolSpec] | None:
        """The tools declared at thread start, in order; None when none were stored."""
        rows = _select_tools.all(self._session, {"thread_id": str(parse_thread_id(thread_id))})
        if not rows:
            return None
        return [
            DynamicToolSpec(name=name, description=description, input_schema=json.loads(schema))
            for name, description, schema in rows
        ]

    @translated
    def persist_dynamic_tools(
        self,
        thread_id: uuid.UUID | str,
        tools: Sequence[DynamicToolSpec | Mapping[str, Any]] | None,
    ) -> None:
        """Store the thread's dynamic tools unless already stored: the first write wins.

        Raises:
            ThreadNotFoundError: the thread has no row (tools belong to a thread).
        """
        key = parse_thread_id(thread_id)
        if tools is None:
            return
        rows = _tool_params(key, _coerce_tools(tools))
        if not rows:
            return
        if _thread_exists.first(self._session, {"id": str(key)}) is None:
            raise ThreadNotFoundError(key)
        _insert_tools.execute_many(self._session, rows)

    @translated
    def persist_dynamic_tools_many(
        self, tools: Sequence[tuple[uuid.UUID, Sequence[DynamicToolSpec]]]
    ) -> None:
        """Tools of many threads whose rows this transaction wrote, in one executemany."""
        rows = [row for thread_id, specs in tools for row in _tool_params(thread_id, specs)]
        if rows:
            _insert_tools.execute_many(self._session, rows)

    @translated
    def apply_rollout_items(
        self,
        builder: ThreadMetadataBuilder,
        items: Sequence[RolloutItem],
        metrics: Metrics | None = None,
    ) -> None:
        """Fold newly written rollout items into the thread's row (Codex's incremental writer).

        The row is loaded (`FOR UPDATE`), or built from `builder`; it takes the builder's
        rollout path, the items, and the file's mtime as `updated_at`. The row and then (for
        the foreign key) the first session_meta's dynamic tools are written. A failure counts
        `codex.db.error` with the failing `stage` on `metrics` (default: the repository's).
        """
        if not isinstance(builder, ThreadMetadataBuilder):
            raise InvalidInputError(f"expected ThreadMetadataBuilder, got {type(builder).__name__}")
        items = list(items)
        if not items:
            return
        stage = "apply_rollout_items"
        try:
            row = _select_thread_for_update.first(self._session, {"id": str(builder.id)})
            current = builder.build(self._default_provider) if row is None else to_metadata(row)
            current = current.model_copy(update={"rollout_path": builder.rollout_path})
            metadata = apply_items(current, items, self._default_provider)
            mtime = file_mtime(builder.rollout_path)
            if mtime is not None:
                metadata = metadata.model_copy(update={"updated_at": mtime})
            _upsert_thread.execute(self._session, _thread_params(check_thread_metadata(metadata)))
            stage = "persist_dynamic_tools"
            tools = dynamic_tools_from_items(items).tools or []
            if tools:
                _insert_tools.execute_many(self._session, _tool_params(builder.id, tools))
        except StateError:
            raise
        except Exception:
            count(
                metrics if metrics is not None else self._metrics, METRIC_DB_ERROR, {"stage": stage}
            )
            raise
