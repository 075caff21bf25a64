"""`codex-state logs`: print matching log rows, then follow new ones (the seed's `logs_client`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import TextIO

from pydantic import ValidationError

from codex_state.arguments import INT64_MAX, INT64_MIN
from codex_state.cli.common import Parser, int_option, printable
from codex_state.cli.database import open_for_reading
from codex_state.errors import InvalidInputError
from codex_state.models import LogQuery, LogRow
from codex_state.runtime import StateRuntime

DEFAULT_BACKFILL = 200
DEFAULT_POLL_MS = 500
MAX_POLL_MS = 86_400_000  # a day; time.sleep refuses far larger numbers
_FOLLOW_PAGE = 1000

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_BOLD = "\x1b[1m"
_BLUE_DIM = "\x1b[2;34m"
_LEVEL_COLOURS = {
    "ERROR": "\x1b[31m",
    "WARN": "\x1b[33m",
    "INFO": "\x1b[32m",
    "DEBUG": "\x1b[34m",
    "TRACE": "\x1b[35m",
}
_PATCH_PREFIX = "ToolCall: apply_patch"


def register(commands: argparse._SubParsersAction[Parser]) -> None:
    """Add `logs` to the `codex-state` parser."""
    parser = commands.add_parser(
        "logs",
        help="show log rows, optionally following new ones",
        description="Print the last --backfill matching log rows, then with --follow poll for "
        "new rows until interrupted. Every filter narrows the rows; repeated --module, --file "
        "and --thread-id values widen their own filter.",
    )
    parser.add_argument("--level", help="exact level, any case (TRACE, DEBUG, INFO, WARN, ERROR)")
    parser.add_argument(
        "--from", dest="from_ts", type=timestamp, help="earliest time: RFC 3339 or epoch seconds"
    )
    parser.add_argument(
        "--to", dest="to_ts", type=timestamp, help="latest time: RFC 3339 or epoch seconds"
    )
    parser.add_argument(
        "--module", action="append", default=[], help="module path substring (repeatable)"
    )
    parser.add_argument("--file", action="append", default=[], help="file substring (repeatable)")
    parser.add_argument(
        "--thread-id", action="append", default=[], help="thread id to include (repeatable)"
    )
    parser.add_argument(
        "--threadless", action="store_true", help="include rows that have no thread id"
    )
    parser.add_argument(
        "--backfill",
        type=int_option(0, INT64_MAX),
        default=DEFAULT_BACKFILL,
        metavar="N",
        help="print the last N matching rows first (default: %(default)s)",
    )
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new rows")
    parser.add_argument(
        "--poll-ms",
        type=int_option(1, MAX_POLL_MS),
        default=DEFAULT_POLL_MS,
        help="follow poll interval in milliseconds (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(handler=run_logs)


def timestamp(value: str) -> int:
    """Epoch seconds from `value`: an integer, or an RFC 3339 time (naive means UTC)."""
    try:
        number = int(value)
    except ValueError:
        pass
    else:
        if not INT64_MIN <= number <= INT64_MAX:
            raise argparse.ArgumentTypeError(f"epoch seconds out of 64-bit range: {value}")
        return number
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not RFC 3339 or epoch seconds: {printable(value)!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def _filters(args: argparse.Namespace) -> LogQuery:
    try:
        return LogQuery(
            level_upper=args.level,
            from_ts=args.from_ts,
            to_ts=args.to_ts,
            module_like=tuple(args.module),
            file_like=tuple(args.file),
            thread_ids=tuple(args.thread_id),
            include_threadless=args.threadless,
        )
    except ValidationError as err:  # e.g. undecodable bytes in an argument
        problem = err.errors()[0]
        field = str(problem["loc"][0])
        reason = str(problem["msg"]).removeprefix("Value error, ")
        raise InvalidInputError(f"invalid log filter {field}: {reason}") from None


def run_logs(args: argparse.Namespace) -> int:
    filters = _filters(args)
    printer = _Printer(sys.stdout, json_lines=args.json)
    try:
        with open_for_reading(args) as runtime:
            last_id = _backfill(runtime, filters, args.backfill, printer)
            if args.follow:
                _follow(runtime, filters, last_id, args.poll_ms / 1000, printer)
    except BrokenPipeError:
        # The reader went away (`| head`); stop quietly, as other Unix tools do.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's final flush quiet
    return 0


def _backfill(runtime: StateRuntime, filters: LogQuery, count: int, printer: _Printer) -> int:
    """Print the last `count` matching rows; returns the id to follow from."""
    rows = []
    if count:
        rows = runtime.query_logs(filters.model_copy(update={"limit": count, "descending": True}))
    for row in reversed(rows):
        printer.print(row)
    printer.flush()
    return rows[0].id if rows else runtime.max_log_id(filters)


def _follow(
    runtime: StateRuntime, filters: LogQuery, last_id: int, interval: float, printer: _Printer
) -> None:
    """Poll for rows after `last_id` until interrupted; each poll is one short read."""
    while True:
        rows = runtime.query_logs(
            filters.model_copy(update={"after_id": last_id, "limit": _FOLLOW_PAGE})
        )
        for row in rows:
            printer.print(row)
        if rows:
            last_id = rows[-1].id
            printer.flush()
        if len(rows) < _FOLLOW_PAGE:
            time.sleep(interval)


class _Printer:
    """Human lines (coloured only on a terminal) or JSON lines."""

    def __init__(self, out: TextIO, *, json_lines: bool) -> None:
        self._out = out
        self._json = json_lines
        self._colour = not json_lines and out.isatty() and "NO_COLOR" not in os.environ

    def print(self, row: LogRow) -> None:
        when = _time(row)
        if self._json:
            time_text = None if when is None else when.isoformat().replace("+00:00", "Z")
            self._out.write(json.dumps({"time": time_text, **row.model_dump()}) + "\n")
            return
        if when is None:  # a row no datetime can hold; show what is stored
            stamp = f"ts={row.ts},{row.ts_nanos}ns"
        else:
            stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        # Stored text is shown escaped: a message must not drive the user's terminal.
        thread = printable(row.thread_id or "-")
        target = printable(row.target)
        level_text = printable(row.level)
        message = printable(row.message or "", multiline=True)
        if not self._colour:
            self._out.write(f"{stamp} {level_text:<5} [{thread}] {target} - {message}\n")
            return
        level = f"{_LEVEL_COLOURS.get(row.level.upper(), '')}{level_text:<5}{_RESET}"
        head = (
            f"{_DIM}{stamp}{_RESET} {level} [{_BLUE_DIM}{thread}{_RESET}] {_DIM}{target}{_RESET} - "
        )
        self._out.write(head + _colour_message(message) + "\n")

    def flush(self) -> None:
        self._out.flush()


def _time(row: LogRow) -> datetime | None:
    try:
        seconds = datetime.fromtimestamp(row.ts, tz=UTC)
        return seconds + timedelta(microseconds=row.ts_nanos // 1000)
    except (OverflowError, ValueError, OSError):
        return None


def _colour_message(message: str) -> str:
    if not message.startswith(_PATCH_PREFIX):
        return f"{_BOLD}{message}{_RESET}"
    lines = []
    for line in message.split("\n"):
        if line.startswith("+"):
            lines.append(f"\x1b[32m{line}{_RESET}")
        elif line.startswith("-"):
            lines.append(f"\x1b[31m{line}{_RESET}")
        else:
            lines.append(f"{_BOLD}{line}{_RESET}")
    return "\n".join(lines)
