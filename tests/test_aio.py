"""The asyncio facade runs the same runtime without blocking the event loop."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from codex_state import StateError, ThreadMetadata
from codex_state.aio import AsyncStateRuntime
from tests.conftest import Backend


def _thread(n: int) -> ThreadMetadata:
    return ThreadMetadata(
        id=uuid.uuid4(),
        rollout_path=Path(f"/r/{n}.jsonl"),
        created_at=datetime(2026, 2, 1, tzinfo=UTC),
        updated_at=datetime(2026, 2, 1, 0, 0, n, tzinfo=UTC),
        source="cli",
        model_provider="openai",
        cwd=Path("/w"),
        first_user_message=f"message {n}",
    )


def test_calls_run_concurrently_on_every_backend(backend: Backend) -> None:
    async def scenario() -> None:
        async with await AsyncStateRuntime.from_url(backend.url, "openai") as db:
            threads = [_thread(n) for n in range(20)]
            await asyncio.gather(*(db.upsert_thread(t) for t in threads))
            page = await db.list_threads(50)
            assert {t.id for t in page.items} == {t.id for t in threads}
            assert await db.get_thread(threads[0].id) == threads[0]
        with pytest.raises(StateError, match="closed"):
            db.runtime.get_backfill_state()

    asyncio.run(scenario())


def test_init_opens_a_codex_home(tmp_path: Path) -> None:
    async def scenario() -> str:
        async with await AsyncStateRuntime.init(tmp_path, "openai") as db:
            state = await db.get_backfill_state()
            return state.status.value

    assert asyncio.run(scenario()) == "pending"
