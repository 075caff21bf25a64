"""Ways into the package that the behaviour suite runs through (LangGraph-conformance style).

- `runtime`: `StateRuntime`'s facade methods.
- `repositories`: the public repositories on a Session the caller makes on `runtime.engine`
  (a write Session for writes, as documented), committed by the caller; on in-memory SQLite
  (one shared connection) on `runtime.session()`, which takes turns with the runtime's units.
- `async`: `AsyncStateRuntime`, each call awaited on an event loop in a background thread.

`Entry` and `AsyncEntry` look like a `StateRuntime`: operation names go through the chosen
entry, everything else (engine, run_in_transaction, close, ...) to the runtime underneath.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session

from codex_state import StateError, StateRuntime
from codex_state.aio import AsyncStateRuntime
from codex_state.engine import is_sqlite_memory, write_session
from codex_state.operations import operations

ENTRIES = ["runtime", "repositories", "async"]

_OPERATIONS = operations()

T = TypeVar("T")


def open_entry(name: str, url: str, default_provider: str, **kwargs: Any) -> Any:
    """A runtime on `url` that is called through entry `name`; close it with `close()`."""
    if name == "async":
        return AsyncEntry(url, default_provider, **kwargs)
    runtime = StateRuntime.from_url(url, default_provider, **kwargs)
    return runtime if name == "runtime" else Entry(runtime, name)


class Entry:
    def __init__(self, runtime: StateRuntime, name: str) -> None:
        self.runtime = runtime
        self.entry = name

    def __getattr__(self, name: str) -> Any:
        operation = _OPERATIONS.get(name)
        if operation is None or self.entry == "runtime":
            return getattr(self.runtime, name)
        runtime = self.runtime

        def call(*args: Any, **kwargs: Any) -> Any:
            if runtime.closed:  # a caller stops using the engine of a closed runtime
                raise StateError("the StateRuntime is closed")
            engine = runtime.engine
            if is_sqlite_memory(engine.url):
                # One shared connection: only the runtime's sessions take turns on it (the
                # log handler's thread writes through the runtime meanwhile).
                with runtime.session(write=operation.write) as session:
                    repository = runtime.repository(operation.repository, session)
                    return operation.method(repository, *args, **kwargs)
            with write_session(engine) if operation.write else Session(engine) as session:
                repository = runtime.repository(operation.repository, session)
                result = operation.method(repository, *args, **kwargs)
                session.commit()
                return result

        return call


class _LoopThread:
    """One event loop for the whole test run, in a daemon thread; `run` waits for a coroutine."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="async-entry", daemon=True).start()
                self._loop = loop
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop()).result()


LOOP = _LoopThread()

# What the async entry takes from the AsyncStateRuntime itself; the rest (engine, session) is the
# StateRuntime on the same database that `sync_runtime()` gives (in-memory: the same connection).
_ASYNC_AWAITED = frozenset({*_OPERATIONS, "run_in_transaction"})
_ASYNC_OWN = frozenset({"closed", "codex_home", "default_provider", "metrics", "repository"})


class AsyncEntry:
    """Looks like a `StateRuntime`; the data methods and `run_in_transaction` are awaited."""

    def __init__(self, url: str, default_provider: str, **kwargs: Any) -> None:
        self.db = LOOP.run(AsyncStateRuntime.from_url(url, default_provider, **kwargs))
        # Tests listen on `runtime.engine` for the statements a call sends: pass the async
        # engine's cursor events on to the listeners of the engine they are given.
        events = self.db.sync_runtime().engine.dispatch

        @event.listens_for(self.db.engine.sync_engine, "before_cursor_execute")
        def _forward(*args: Any) -> None:
            events.before_cursor_execute(*args)

    def __getattr__(self, name: str) -> Any:
        if name in _ASYNC_AWAITED:
            method = getattr(self.db, name)

            def call(*args: Any, **kwargs: Any) -> Any:
                return LOOP.run(method(*args, **kwargs))

            return call
        if name in _ASYNC_OWN:
            return getattr(self.db, name)
        return getattr(self.db.sync_runtime(), name)

    def close(self) -> None:
        LOOP.run(self.db.aclose())
