"""`StateRuntime.apply_rollout_items`: Codex's incremental writer, on every backend."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from codex_state import DynamicToolSpec, InvalidInputError, StateError, ThreadMetadataBuilder
from codex_state.rollout import builder_from_items, load_rollout_items
from tests.conftest import Backend
from tests.rollout_files import START, TOOL_SPECS, rollout_lines, write_rollout


class Counter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, dict[str, str]]] = []

    def counter(self, name: str, value: int, tags: dict[str, str]) -> None:
        self.calls.append((name, value, tags))


def _items_and_builder(path: Path) -> tuple[list[object], ThreadMetadataBuilder]:
    items = load_rollout_items(path).items
    builder = builder_from_items(items, path)
    assert builder is not None
    return list(items), builder


def test_new_thread_is_built_applied_and_takes_file_mtime(
    backend: Backend, codex_home: Path
) -> None:
    runtime = backend.runtime()
    thread_id = uuid.uuid4()
    path = write_rollout(codex_home, thread_id, tokens=77, tools=TOOL_SPECS, mtime=1_800_000_000)
    items, builder = _items_and_builder(path)

    runtime.apply_rollout_items(builder, items)

    thread = runtime.get_thread(thread_id)
    assert thread is not None
    assert thread.rollout_path == path
    assert thread.created_at == START
    assert thread.updated_at == datetime.fromtimestamp(1_800_000_000, UTC)
    assert (thread.tokens_used, thread.title, thread.first_user_message) == (77, "hello", "hello")
    assert thread.sandbox_policy == '{"type":"read-only"}'
    expected = [DynamicToolSpec.model_validate(spec) for spec in TOOL_SPECS]
    assert runtime.get_dynamic_tools(thread_id) == expected


def test_existing_row_is_updated_incrementally_and_tools_first_write_wins(
    backend: Backend, codex_home: Path
) -> None:
    runtime = backend.runtime()
    thread_id = uuid.uuid4()
    path = write_rollout(codex_home, thread_id, message="first", tokens=10, tools=TOOL_SPECS)
    items, builder = _items_and_builder(path)
    runtime.apply_rollout_items(builder, items)

    # Codex appends lines; a later batch holds only the new ones (plus here a second meta).
    later = rollout_lines(
        thread_id,
        START + timedelta(minutes=5),
        message="second",
        tokens=99,
        tools=[{"name": "other", "description": "", "inputSchema": {}}],
    )
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(line) + "\n" for line in later)
    os.utime(path, (1_800_000_100, 1_800_000_100))
    all_items = load_rollout_items(path).items
    new_items = list(all_items[len(items) :])
    runtime.apply_rollout_items(builder, new_items)

    thread = runtime.get_thread(thread_id)
    assert thread is not None
    assert thread.first_user_message == "first" and thread.title == "first"
    assert thread.tokens_used == 99
    assert thread.created_at == START
    assert thread.updated_at == datetime.fromtimestamp(1_800_000_100, UTC)
    tools = runtime.get_dynamic_tools(thread_id)
    assert tools == [DynamicToolSpec.model_validate(spec) for spec in TOOL_SPECS]


def test_no_items_writes_nothing(backend: Backend, codex_home: Path) -> None:
    runtime = backend.runtime()
    path = write_rollout(codex_home)
    _, builder = _items_and_builder(path)
    runtime.apply_rollout_items(builder, [])
    assert runtime.get_thread(builder.id) is None
    with pytest.raises(InvalidInputError):
        runtime.apply_rollout_items("builder", [])  # type: ignore[arg-type]


def test_failure_counts_metric_with_stage_and_rolls_back(
    backend: Backend, codex_home: Path
) -> None:
    sink, own = Counter(), Counter()
    runtime = backend.runtime(metrics=own)
    path = write_rollout(codex_home, tools=TOOL_SPECS)
    items, builder = _items_and_builder(path)
    with runtime.engine.begin() as conn:
        conn.execute(text("DROP TABLE thread_dynamic_tools"))

    with pytest.raises(StateError):
        runtime.apply_rollout_items(builder, items, metrics=sink)
    assert sink.calls == [("codex.db.error", 1, {"stage": "persist_dynamic_tools"})]
    assert runtime.get_thread(builder.id) is None  # the thread row went with the transaction

    own.calls.clear()
    with pytest.raises(StateError):
        runtime.apply_rollout_items(builder, items)
    assert own.calls == [("codex.db.error", 1, {"stage": "persist_dynamic_tools"})]
