"""An asyncio facade: the same operations as `StateRuntime`, awaitable.

Each call runs the synchronous runtime's unit of work in a worker thread, so the event loop
never waits on the database. The method list is `codex_state.operations`, shared with
`StateRuntime`, so the two surfaces cannot drift apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from codex_state.clock import Clock
from codex_state.metrics import Metrics
from codex_state.operations import Operation, Operations
from codex_state.runtime import StateRuntime


class AsyncStateRuntime(Operations):
    """Awaitable access to a state database: `await db.list_threads(50)`."""

    def __init__(self, runtime: StateRuntime) -> None:
        self._runtime = runtime

    @classmethod
    async def init(
        cls,
        codex_home: str | Path,
        default_provider: str,
        *,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
    ) -> Self:
        """`StateRuntime.init` off the event loop."""
        runtime = await asyncio.to_thread(
            StateRuntime.init, codex_home, default_provider, metrics=metrics, clock=clock
        )
        return cls(runtime)

    @classmethod
    async def from_url(
        cls,
        url: str,
        default_provider: str,
        *,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
    ) -> Self:
        """`StateRuntime.from_url` off the event loop."""
        runtime = await asyncio.to_thread(
            StateRuntime.from_url, url, default_provider, metrics=metrics, clock=clock
        )
        return cls(runtime)

    @property
    def runtime(self) -> StateRuntime:
        """The synchronous runtime underneath, for code that runs in its own threads."""
        return self._runtime

    def _bind(self, operation: Operation[Any, Any, Any]) -> Callable[..., Any]:
        sync_call = getattr(self._runtime, operation.name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(sync_call, *args, **kwargs)

        return call

    async def aclose(self) -> None:
        await asyncio.to_thread(self._runtime.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
