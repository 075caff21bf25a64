"""Archive, unarchive and the incremental writer change only what they mean to change.

Each test holds an uncommitted write to the same thread row in another transaction (another
connection), starts the call, lets it wait, then commits the other write: the call must keep it.
The old read-then-rewrite of every column lost it on PostgreSQL (tokens_used went back to 0).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import update

from codex_state import StateRuntime
from codex_state.orm import threads
from codex_state.rollout import builder_from_items, load_rollout_items
from tests.conftest import Backend
from tests.rollout_files import write_rollout
from tests.test_threads import make_thread


def _race(
    runtime: StateRuntime, thread_id: uuid.UUID, call: Callable[[], None], **values: object
) -> float:
    """Commit `values` (default `tokens_used = 4242`) to the row while `call` runs and waits."""
    values = values or {"tokens_used": 4242}
    finished = threading.Event()
    errors: list[BaseException] = []
    with runtime.session(write=True) as session:
        session.execute(update(threads).where(threads.c.id == str(thread_id)).values(**values))
        session.flush()
        started = time.monotonic()

        def run() -> None:
            try:
                call()
            except BaseException as err:  # re-raised by the test thread below
                errors.append(err)
            finally:
                finished.set()

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(0.3)
        assert not finished.is_set(), "the call did not wait for the other transaction"
    worker.join(10)
    assert not errors, errors
    return time.monotonic() - started


def test_archive_and_unarchive_keep_a_concurrent_write(shared_backend: Backend) -> None:
    runtime = shared_backend.runtime()
    thread = make_thread()
    runtime.upsert_thread(thread)
    when = datetime(2026, 3, 1, tzinfo=UTC)
    _race(runtime, thread.id, lambda: runtime.mark_archived(thread.id, "/r/archived.jsonl", when))
    archived = runtime.get_thread(thread.id)
    assert archived is not None
    assert (archived.tokens_used, archived.archived_at) == (4242, when)
    assert archived.rollout_path == Path("/r/archived.jsonl")

    with runtime.session(write=True) as session:
        session.execute(update(threads).values(tokens_used=0))
    _race(runtime, thread.id, lambda: runtime.mark_unarchived(thread.id, "/r/live.jsonl"))
    live = runtime.get_thread(thread.id)
    assert live is not None
    assert (live.tokens_used, live.archived_at, live.rollout_path) == (
        4242,
        None,
        Path("/r/live.jsonl"),
    )


def test_the_incremental_writer_keeps_a_concurrent_write(
    shared_backend: Backend, codex_home: Path
) -> None:
    runtime = shared_backend.runtime()
    thread_id = uuid.uuid4()
    path = write_rollout(codex_home, thread_id)
    items = load_rollout_items(path).items
    builder = builder_from_items(items, path)
    assert builder is not None
    runtime.apply_rollout_items(builder, items[:1])  # the row exists, tokens_used 0
    # The later items (not the session_meta) leave git_sha alone and set the token count.
    _race(
        runtime,
        thread_id,
        lambda: runtime.apply_rollout_items(builder, items[1:]),
        git_sha="committed-meanwhile",
    )
    thread = runtime.get_thread(thread_id)
    assert thread is not None
    assert (thread.git_sha, thread.tokens_used) == ("committed-meanwhile", 100)
    assert thread.first_user_message == "hello"
