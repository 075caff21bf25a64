"""`codex-state backfill`, `threads` and `thread ID`: index a codex home and browse its threads."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

from codex_state.arguments import INT64_MAX
from codex_state.backfill import BackfillProgress
from codex_state.cli.common import Parser, emit, int_option, printable
from codex_state.cli.database import open_for_reading, open_for_writing, require_home
from codex_state.errors import ThreadNotFoundError
from codex_state.models import BackfillStats, BackfillStatus, SortKey, ThreadMetadata
from codex_state.runtime import StateRuntime
from codex_state.sync import DEFAULT_WATCH_INTERVAL, sync_codex_home, watch_codex_home

_PAGE_SIZE = 200
_TITLE_WIDTH = 60
_BAR_WIDTH = 30


def register(commands: argparse._SubParsersAction[Parser]) -> None:
    """Add the thread commands to the `codex-state` parser."""
    backfill = commands.add_parser(
        "backfill",
        help="index the rollout files of the codex home",
        description="Index sessions/**/rollout-*.jsonl and archived_sessions/ into the database. "
        "The first run reads every file; later runs read only new and changed files (by size "
        "and mtime) and resume an interrupted run. --watch keeps the index current.",
    )
    backfill.add_argument(
        "--reindex",
        action="store_true",
        help="read every rollout file again, changed or not",
    )
    backfill.add_argument(
        "--watch",
        action="store_true",
        help="after indexing, keep polling: apply appended lines and index new files until Ctrl-C",
    )
    backfill.add_argument(
        "--interval",
        type=_seconds,
        default=DEFAULT_WATCH_INTERVAL,
        metavar="SECONDS",
        help="with --watch, seconds between polls (default: %(default)s)",
    )
    backfill.set_defaults(handler=_run_backfill)

    threads = commands.add_parser(
        "threads",
        help="list indexed threads, newest first",
        description="List threads that have a user message, newest first.",
    )
    threads.add_argument("--archived", action="store_true", help="list archived threads instead")
    threads.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="SOURCE",
        help="only this source (cli, vscode, exec, ...); repeatable",
    )
    threads.add_argument(
        "--provider",
        dest="providers",
        action="append",
        default=[],
        metavar="PROVIDER",
        help="only this model provider; repeatable",
    )
    threads.add_argument(
        "--sort",
        choices=["created", "updated"],
        default="updated",
        help="order by creation or last update time (default: %(default)s)",
    )
    threads.add_argument(
        "--limit",
        type=int_option(0, INT64_MAX),
        default=20,
        help="at most this many threads; 0 for all (default: %(default)s)",
    )
    threads.add_argument(
        "--json", action="store_true", help="one JSON object per line (JSON Lines)"
    )
    threads.set_defaults(handler=_run_threads)

    thread = commands.add_parser(
        "thread", help="show one thread and its dynamic tools", description="Show one thread."
    )
    thread.add_argument("thread_id", metavar="ID", help="the thread id (a UUID)")
    thread.add_argument("--json", action="store_true", help="print one JSON object")
    thread.set_defaults(handler=_run_thread)


# ----------------------------------------------------------------------------------- backfill


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0.01 <= seconds <= 86_400:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be from 0.01 to 86400 seconds, got {value!r}")
    return seconds


def _run_backfill(args: argparse.Namespace) -> int:
    home = require_home(args.home)  # the rollouts come from there, even with --db
    with open_for_writing(args) as runtime:
        if args.watch:
            return _watch(runtime, home, args)
        bar = _ProgressBar(sys.stderr) if sys.stderr.isatty() else None
        try:
            stats = sync_codex_home(
                runtime,
                home,
                reindex=args.reindex,
                progress=None if bar is None else bar.update,
            )
        finally:
            if bar is not None:
                bar.close()
        print(_summary("indexed", stats, home, runtime))
    return 0


def _summary(verb: str, stats: BackfillStats, home: Path, runtime: StateRuntime) -> str:
    """One line: what was read, skipped and counted, and the backfill status.

    The status and a thread id are read back from the database, so a broken one (a dropped
    table, a file overwritten) fails here even when the sync had nothing to write, rather
    than being reported complete.
    """
    status = runtime.get_backfill_state().status
    runtime.list_thread_ids(1)
    appended = f", {stats.appended} appended" if stats.appended else ""
    return (
        f"{verb} {stats.upserted} of {stats.scanned} rollout files from "
        f"{printable(str(home))} ({stats.failed} failed); {stats.unchanged} unchanged, "
        f"{stats.removed} removed{appended}; {stats.parse_errors} broken lines, "
        f"{stats.unknown_types} lines of unknown types, {stats.skipped_tools} skipped tools, "
        f"{stats.replaced_characters} replaced characters; backfill {status.value}"
    )


def _watch(runtime: StateRuntime, home: Path, args: argparse.Namespace) -> int:
    def synced(stats: BackfillStats) -> None:
        print(_summary("indexed", stats, home, runtime), flush=True)
        print(
            f"watching {printable(str(home))} every {args.interval:g} s; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )

    started = time.monotonic()
    with _terminate_as_interrupt():
        stats = watch_codex_home(
            runtime, home, interval=args.interval, reindex=args.reindex, on_sync=synced
        )
    elapsed = time.monotonic() - started
    print(_summary(f"stopped after {elapsed:.0f} s: indexed", stats, home, runtime))
    return 0


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (`kill`, a service manager) stops a watch as cleanly as Ctrl-C."""

    def interrupt(_signum: int, _frame: FrameType | None) -> NoReturn:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _ProgressBar:
    """A one-line bar redrawn in place on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._drawn = False

    def update(self, progress: BackfillProgress) -> None:
        filled = _BAR_WIDTH * progress.done // progress.total if progress.total else _BAR_WIDTH
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        failed = f", {progress.failed} failed" if progress.failed else ""
        self._stream.write(f"\rindexing [{bar}] {progress.done}/{progress.total}{failed}")
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()


# ------------------------------------------------------------------------------------ threads


def _run_threads(args: argparse.Namespace) -> int:
    sort_key = SortKey.CREATED_AT if args.sort == "created" else SortKey.UPDATED_AT
    with open_for_reading(args) as runtime:
        found = _each_thread(runtime, args, sort_key)
        if args.json:
            for thread in found:
                emit(json.dumps(_thread_json(thread)))
            return 0
        rows = [_table_row(thread, sort_key) for thread in found]
        status = runtime.get_backfill_state().status
    if status is not BackfillStatus.COMPLETE:
        print(
            f"note: the backfill is {status.value}; run `codex-state backfill` to index the home",
            file=sys.stderr,
        )
    if not rows:
        print("no threads", file=sys.stderr)
        return 0
    header = (
        "UPDATED" if sort_key is SortKey.UPDATED_AT else "CREATED",
        "ID",
        "SOURCE",
        "PROVIDER",
        "TITLE",
    )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        emit("  ".join([*cells, row[4]]).rstrip())
    return 0


def _each_thread(
    runtime: StateRuntime, args: argparse.Namespace, sort_key: SortKey
) -> Iterator[ThreadMetadata]:
    remaining = args.limit or None
    anchor = None
    while True:
        size = _PAGE_SIZE if remaining is None else min(_PAGE_SIZE, remaining)
        page = runtime.list_threads(
            size,
            anchor,
            sort_key=sort_key,
            allowed_sources=args.source,
            model_providers=args.providers,
            archived_only=args.archived,
        )
        yield from page.items
        if remaining is not None:
            remaining -= len(page.items)
        if page.next_anchor is None or remaining == 0:
            return
        anchor = page.next_anchor


def _table_row(thread: ThreadMetadata, sort_key: SortKey) -> tuple[str, ...]:
    when = thread.created_at if sort_key is SortKey.CREATED_AT else thread.updated_at
    title = printable(" ".join((thread.title or thread.first_user_message or "").split()))
    if len(title) > _TITLE_WIDTH:
        title = title[: _TITLE_WIDTH - 1] + "…"
    source = printable(thread.source)
    source = source if len(source) <= 20 else source[:19] + "…"
    return (
        when.strftime("%Y-%m-%d %H:%M"),
        str(thread.id),
        source,
        printable(thread.model_provider),
        title,
    )


# ------------------------------------------------------------------------------------- thread


def _run_thread(args: argparse.Namespace) -> int:
    with open_for_reading(args) as runtime:
        thread = runtime.get_thread(args.thread_id)
        if thread is None:
            raise ThreadNotFoundError(args.thread_id)
        tools = runtime.get_dynamic_tools(thread.id) or []
    if args.json:
        value = _thread_json(thread)
        value["dynamic_tools"] = [tool.model_dump(mode="json", by_alias=True) for tool in tools]
        emit(json.dumps(value, indent=2))
        return 0
    for name, value in _thread_json(thread).items():
        emit(f"{name + ':':<20}{'' if value is None else printable(str(value))}")
    emit(f"{'dynamic_tools:':<20}{len(tools) or 'none'}")
    for tool in tools:
        emit(f"  - {printable(tool.name)}: {printable(tool.description)}")
        emit(f"    input schema: {json.dumps(tool.input_schema)}")
    return 0


def _thread_json(thread: ThreadMetadata) -> dict[str, Any]:
    value = thread.model_dump(mode="json")
    value["archived"] = thread.archived
    return value
