"""An asyncio facade: the same `StateRuntime`, its blocking calls run in worker threads.

SQLite has no asynchronous driver worth the name, and the runtime is already safe to share
between threads, so the facade hands each call to `asyncio.to_thread` instead of keeping a
second, async copy of every repository. `run` is typed from the method it is given, so
`await db.run(StateRuntime.list_threads, 50)` is checked like the synchronous call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Concatenate, ParamSpec, Self, TypeVar

from codex_state.clock import Clock
from codex_state.runtime import Metrics, StateRuntime

P = ParamSpec("P")
T = TypeVar("T")


class AsyncStateRuntime:
    """Awaitable access to a `StateRuntime`; the event loop never waits on the database."""

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

    async def run(
        self,
        method: Callable[Concatenate[StateRuntime, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Call `method` (an unbound `StateRuntime` method) on the runtime in a worker thread."""
        return await asyncio.to_thread(method, self._runtime, *args, **kwargs)

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
