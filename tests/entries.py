"""Ways into the package that the behaviour suite runs through (LangGraph-conformance style).

- `runtime`: `StateRuntime`'s facade methods.
- `repositories`: the public repositories on a Session the caller makes on `runtime.engine`
  (a write Session for writes, as documented), committed by the caller; on in-memory SQLite
  (one shared connection) on `runtime.session()`, which takes turns with the runtime's units.

`Entry` looks like a `StateRuntime`: operation names go through the chosen entry, everything
else (engine, run_in_transaction, close, ...) to the runtime underneath.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from codex_state import StateError, StateRuntime
from codex_state.engine import is_sqlite_memory, write_session
from codex_state.operations import operations

ENTRIES = ["runtime", "repositories"]

_OPERATIONS = operations()


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
