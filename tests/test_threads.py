"""Thread rows, keyset pages and dynamic tools: the seed's semantics on every backend."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from codex_state import (
    Anchor,
    DynamicToolSpec,
    InvalidInputError,
    InvalidThreadIdError,
    SortKey,
    StateRuntime,
    ThreadMetadata,
    ThreadMetadataBuilder,
    ThreadNotFoundError,
)
from tests.conftest import Backend

BASE = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)  # epoch 1_700_000_000


def make_thread(
    thread_id: uuid.UUID | None = None, *, offset: int = 0, **fields: Any
) -> ThreadMetadata:
    """The seed's `test_thread_metadata`, with overrides."""
    thread_id = thread_id or uuid.uuid4()
    values: dict[str, Any] = {
        "id": thread_id,
        "rollout_path": Path(f"/home/codex/rollout-{thread_id}.jsonl"),
        "created_at": BASE + timedelta(seconds=offset),
        "updated_at": BASE + timedelta(seconds=offset),
        "source": "cli",
        "model_provider": "test-provider",
        "cwd": Path("/work/project"),
        "cli_version": "0.0.0",
        "first_user_message": "hello",
    }
    values.update(fields)
    return ThreadMetadata(**values)


def walk(runtime: StateRuntime, page_size: int, **filters: Any) -> list[list[ThreadMetadata]]:
    pages, anchor = [], None
    while True:
        page = runtime.list_threads(page_size, anchor, **filters)
        pages.append(page.items)
        assert page.num_scanned_rows == len(page.items) + (page.next_anchor is not None)
        if page.next_anchor is None:
            return pages
        anchor = page.next_anchor


def test_upsert_and_get_round_trip(runtime: StateRuntime) -> None:
    thread = make_thread(
        title="Fix the build",
        tokens_used=1234,
        git_sha="abc",
        git_branch="main",
        git_origin_url="https://example.com/r.git",
        sandbox_policy='{"type":"workspace-write","network_access":false}',
        approval_mode="never",
    )
    runtime.upsert_thread(thread)
    assert runtime.get_thread(thread.id) == thread
    assert runtime.get_thread(str(thread.id).upper()) == thread
    assert runtime.get_thread(uuid.uuid4()) is None


def test_upsert_replaces_every_column(runtime: StateRuntime) -> None:
    first = make_thread(title="one", git_sha="abc", tokens_used=5)
    runtime.upsert_thread(first)
    second = make_thread(
        first.id, offset=60, title="two", git_sha=None, tokens_used=9, source="exec"
    )
    runtime.upsert_thread(second)
    assert runtime.get_thread(first.id) == second


def test_first_user_message_none_is_stored_empty(backend: Backend) -> None:
    runtime = backend.runtime()
    thread = make_thread(first_user_message=None)
    runtime.upsert_thread(thread)
    with runtime.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT first_user_message, archived FROM threads WHERE id = :id"),
            {"id": str(thread.id)},
        ).one()
    assert tuple(stored) == ("", 0)
    assert runtime.get_thread(thread.id) == thread


def test_archived_flag_follows_archived_at(backend: Backend) -> None:
    runtime = backend.runtime()
    thread = make_thread(archived_at=BASE + timedelta(seconds=5))
    runtime.upsert_thread(thread)
    with runtime.engine.connect() as conn:
        archived = conn.execute(
            text("SELECT archived, archived_at FROM threads WHERE id = :id"), {"id": str(thread.id)}
        ).one()
    assert tuple(archived) == (1, 1_700_000_005)
    loaded = runtime.get_thread(thread.id)
    assert loaded is not None and loaded.archived


def test_datetimes_are_truncated_to_whole_seconds(runtime: StateRuntime) -> None:
    thread = make_thread(created_at=BASE + timedelta(microseconds=999_999))
    runtime.upsert_thread(thread)
    loaded = runtime.get_thread(thread.id)
    assert loaded is not None and loaded.created_at == BASE


def test_pagination_walks_every_thread_once_with_timestamp_ties(runtime: StateRuntime) -> None:
    # Seven threads share each timestamp, so most page boundaries fall inside a tie.
    threads = [make_thread(offset=(n // 7) * 10) for n in range(40)]
    for thread in threads:
        runtime.upsert_thread(thread)
    expected = sorted(threads, key=lambda t: (t.created_at, str(t.id)), reverse=True)
    for size in (1, 3, 7, 40, 100):
        pages = walk(runtime, size)
        assert [t for page in pages for t in page] == expected
        assert all(len(page) == size for page in pages[:-1])


def test_next_anchor_is_last_item_and_scanned_counts_extra_row(runtime: StateRuntime) -> None:
    threads = [make_thread(offset=n) for n in range(3)]
    for thread in threads:
        runtime.upsert_thread(thread)
    page = runtime.list_threads(2)
    assert [t.id for t in page.items] == [threads[2].id, threads[1].id]
    assert page.next_anchor == Anchor(ts=threads[1].created_at, id=threads[1].id)
    assert page.num_scanned_rows == 3
    last = runtime.list_threads(2, page.next_anchor)
    assert [t.id for t in last.items] == [threads[0].id]
    assert last.next_anchor is None and last.num_scanned_rows == 1
    exact = runtime.list_threads(3)
    assert exact.next_anchor is None and exact.num_scanned_rows == 3
    empty = runtime.list_threads(0)
    assert empty.items == [] and empty.num_scanned_rows == 1 and empty.next_anchor is None


def test_sort_by_updated_at_uses_updated_anchor(runtime: StateRuntime) -> None:
    older = make_thread(offset=0, updated_at=BASE + timedelta(seconds=100))
    newer = make_thread(offset=50, updated_at=BASE + timedelta(seconds=60))
    for thread in (older, newer):
        runtime.upsert_thread(thread)
    by_created = runtime.list_threads(5)
    assert [t.id for t in by_created.items] == [newer.id, older.id]
    page = runtime.list_threads(1, sort_key=SortKey.UPDATED_AT)
    assert [t.id for t in page.items] == [older.id]
    assert page.next_anchor == Anchor(ts=older.updated_at, id=older.id)
    rest = runtime.list_threads(1, page.next_anchor, sort_key="updated_at")
    assert [t.id for t in rest.items] == [newer.id]


def test_filters_hide_threads_without_user_message_and_match_sources(
    runtime: StateRuntime,
) -> None:
    cli = make_thread(offset=1, source="cli", model_provider="openai")
    vscode = make_thread(offset=2, source="vscode", model_provider="azure")
    exec_ = make_thread(offset=3, source="exec", model_provider="openai")
    silent = make_thread(offset=4, first_user_message=None)
    archived = make_thread(offset=5, archived_at=BASE)
    for thread in (cli, vscode, exec_, silent, archived):
        runtime.upsert_thread(thread)

    def ids(**filters: Any) -> list[uuid.UUID]:
        return [t.id for t in runtime.list_threads(10, **filters).items]

    assert ids() == [exec_.id, vscode.id, cli.id]
    assert ids(allowed_sources=["cli", "vscode"]) == [vscode.id, cli.id]
    assert ids(model_providers=["openai"]) == [exec_.id, cli.id]
    assert ids(model_providers=[]) == [exec_.id, vscode.id, cli.id]
    assert ids(allowed_sources=("exec",), model_providers=("azure",)) == []
    assert ids(archived_only=True) == [archived.id]
    assert runtime.list_thread_ids(10) == [exec_.id, vscode.id, cli.id]
    assert runtime.list_thread_ids(2, allowed_sources=["cli", "exec"]) == [exec_.id, cli.id]
    anchor = Anchor(ts=vscode.created_at, id=vscode.id)
    assert runtime.list_thread_ids(10, anchor) == [cli.id]
    assert runtime.list_thread_ids(10, archived_only=True) == [archived.id]


def test_find_rollout_path_by_id_with_archive_filter(runtime: StateRuntime) -> None:
    live = make_thread()
    gone = make_thread(archived_at=BASE)
    for thread in (live, gone):
        runtime.upsert_thread(thread)
    assert runtime.find_rollout_path_by_id(live.id) == live.rollout_path
    assert runtime.find_rollout_path_by_id(live.id, archived_only=False) == live.rollout_path
    assert runtime.find_rollout_path_by_id(live.id, archived_only=True) is None
    assert runtime.find_rollout_path_by_id(gone.id, archived_only=True) == gone.rollout_path
    assert runtime.find_rollout_path_by_id(gone.id, archived_only=False) is None
    assert runtime.find_rollout_path_by_id(uuid.uuid4()) is None


def test_mark_archived_and_unarchived_move_path_and_take_file_mtime(
    runtime: StateRuntime, tmp_path: Path
) -> None:
    thread = make_thread()
    runtime.upsert_thread(thread)
    archived_file = tmp_path / "archived.jsonl"
    archived_file.write_text("{}\n")
    os.utime(archived_file, (1_700_000_500, 1_700_000_500))
    runtime.mark_archived(thread.id, archived_file, BASE + timedelta(seconds=7, microseconds=5))
    loaded = runtime.get_thread(thread.id)
    assert loaded is not None
    assert loaded.archived_at == BASE + timedelta(seconds=7)
    assert loaded.rollout_path == archived_file
    assert loaded.updated_at == BASE + timedelta(seconds=500)
    assert runtime.list_threads(5).items == []
    assert runtime.list_threads(5, archived_only=True).items == [loaded]

    missing = tmp_path / "does-not-exist.jsonl"
    runtime.mark_unarchived(str(thread.id), missing)
    restored = runtime.get_thread(thread.id)
    assert restored == loaded.model_copy(update={"archived_at": None, "rollout_path": missing})


def test_mark_archived_ignores_unknown_thread(runtime: StateRuntime) -> None:
    unknown = uuid.uuid4()
    runtime.mark_archived(unknown, "/tmp/x.jsonl", BASE)
    runtime.mark_unarchived(unknown, "/tmp/x.jsonl")
    assert runtime.get_thread(unknown) is None


TOOLS = [
    DynamicToolSpec(name="b_tool", description="second", input_schema={"type": "object"}),
    DynamicToolSpec(
        name="a_tool",
        description="first",
        input_schema={"type": "object", "properties": {"q": {"type": "string"}}},
    ),
]


def test_dynamic_tools_keep_order_and_first_write_wins(backend: Backend) -> None:
    runtime = backend.runtime()
    thread = make_thread()
    runtime.upsert_thread(thread)
    assert runtime.get_dynamic_tools(thread.id) is None
    runtime.persist_dynamic_tools(thread.id, None)
    runtime.persist_dynamic_tools(thread.id, [])
    assert runtime.get_dynamic_tools(thread.id) is None
    runtime.persist_dynamic_tools(thread.id, TOOLS)
    assert runtime.get_dynamic_tools(thread.id) == TOOLS
    replacement = [{"name": "z", "description": "", "inputSchema": {}}] * 3
    runtime.persist_dynamic_tools(thread.id, replacement)
    # Positions 0 and 1 are kept; only the new position 2 is added (ON CONFLICT DO NOTHING).
    assert runtime.get_dynamic_tools(thread.id) == [*TOOLS, DynamicToolSpec(**replacement[0])]
    with runtime.engine.connect() as conn:
        schema = conn.execute(
            text("SELECT input_schema FROM thread_dynamic_tools WHERE position = 1")
        ).scalar_one()
    assert schema == '{"type":"object","properties":{"q":{"type":"string"}}}'


def test_persist_dynamic_tools_for_unknown_thread_writes_nothing(runtime: StateRuntime) -> None:
    unknown = uuid.uuid4()
    with pytest.raises(ThreadNotFoundError, match=f"thread not found: {unknown}"):
        runtime.persist_dynamic_tools(unknown, TOOLS)
    assert runtime.get_dynamic_tools(unknown) is None


def test_deleting_thread_cascades_dynamic_tools(backend: Backend) -> None:
    runtime = backend.runtime()
    thread = make_thread()
    runtime.upsert_thread(thread)
    runtime.persist_dynamic_tools(thread.id, TOOLS)
    with runtime.engine.begin() as conn:
        conn.execute(text("DELETE FROM threads WHERE id = :id"), {"id": str(thread.id)})
    assert runtime.get_dynamic_tools(thread.id) is None


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda r: r.list_threads(-1), InvalidInputError),
        (lambda r: r.list_threads(1.5), InvalidInputError),
        (lambda r: r.list_threads(True), InvalidInputError),
        (lambda r: r.list_threads(5, sort_key="title"), InvalidInputError),
        (lambda r: r.list_threads(5, anchor="x"), InvalidInputError),
        (lambda r: r.list_threads(5, allowed_sources="cli"), InvalidInputError),
        (lambda r: r.list_threads(5, model_providers=[1]), InvalidInputError),
        (lambda r: r.list_thread_ids(-2), InvalidInputError),
        (lambda r: r.get_thread("not-a-uuid"), InvalidThreadIdError),
        (lambda r: r.get_thread(42), InvalidThreadIdError),
        (lambda r: r.upsert_thread({"id": "x"}), InvalidInputError),
        (lambda r: r.find_rollout_path_by_id(uuid.uuid4(), archived_only="yes"), InvalidInputError),
        (lambda r: r.mark_archived(uuid.uuid4(), "/x", "yesterday"), InvalidInputError),
        (lambda r: r.mark_unarchived(uuid.uuid4(), 17), InvalidInputError),
        (lambda r: r.persist_dynamic_tools(uuid.uuid4(), "tools"), InvalidInputError),
        (lambda r: r.persist_dynamic_tools(uuid.uuid4(), [{"name": 1}]), InvalidInputError),
        (lambda r: r.get_dynamic_tools("zz"), InvalidThreadIdError),
    ],
)
def test_bad_input_raises_package_errors(runtime: StateRuntime, call: Any, error: type) -> None:
    runtime.upsert_thread(make_thread())
    with pytest.raises(error):
        call(runtime)
    assert len(runtime.list_threads(10).items) == 1


def test_empty_cwd_is_stored_as_empty_text(runtime: StateRuntime) -> None:
    """Rust stores `PathBuf::new()` as ''; pathlib would write '.'."""
    builder = ThreadMetadataBuilder(
        id=uuid.uuid4(), rollout_path=Path("/r.jsonl"), created_at=datetime.now(UTC)
    )
    metadata = builder.build("openai")
    runtime.upsert_thread(metadata)
    with runtime.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT cwd FROM threads WHERE id = :id"), {"id": str(metadata.id)}
        ).scalar()
    assert stored == ""
