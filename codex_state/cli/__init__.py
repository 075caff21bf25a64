"""The `codex-state` command line: index a codex home and look inside its state database.

Every failure is one line on stderr, `codex-state: error: ...`, and a non-zero exit status: 1
for an error, 2 for a usage error, 130 when interrupted. Never a traceback (set
`CODEX_STATE_DEBUG=1` to get one for an unexpected error).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from codex_state.cli import logs as logs_cli
from codex_state.cli import threads as threads_cli
from codex_state.cli.common import PROG, Parser, error_line, printable
from codex_state.cli.database import database_name, open_for_writing
from codex_state.errors import first_line

DEFAULT_PROVIDER = "openai"
DEBUG_ENV = "CODEX_STATE_DEBUG"


def default_codex_home() -> Path:
    """`$CODEX_HOME`, else `~/.codex`, as Codex itself resolves it."""
    configured = os.environ.get("CODEX_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".codex"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Index Codex rollout files and inspect the Codex state database.",
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=default_codex_home(),
        help="codex home directory (default: $CODEX_HOME or ~/.codex)",
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        help="database URL or SQLite file path instead of <home>/state_4.sqlite",
    )
    parser.add_argument(
        "--provider",
        default=DEFAULT_PROVIDER,
        help="model provider recorded when a rollout names none (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init = commands.add_parser("init", help="create or migrate the state database")
    init.set_defaults(handler=_run_init)
    threads_cli.register(commands)
    logs_cli.register(commands)
    return parser


def _run_init(args: argparse.Namespace) -> int:
    with open_for_writing(args) as runtime:
        state = runtime.get_backfill_state()
    where = printable(database_name(args))
    print(f"state database ready at {where} (backfill {state.status.value})")
    return 0


class _WarningFormatter(logging.Formatter):
    """The package's warnings (a skipped rollout file) as one escaped line, no traceback."""

    def format(self, record: logging.LogRecord) -> str:
        kind = "error" if record.levelno >= logging.ERROR else "warning"
        message = first_line(record.getMessage(), "(no message)")
        return f"{PROG}: {kind}: {printable(message)}"


@contextmanager
def _warnings_on_stderr() -> Iterator[None]:
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_WarningFormatter())
    package = logging.getLogger("codex_state")
    package.addHandler(handler)
    try:
        yield
    finally:
        package.removeHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `codex-state` console script."""
    args = build_parser().parse_args(argv)
    with _warnings_on_stderr():
        try:
            return int(args.handler(args))
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except Exception as err:
            if os.environ.get(DEBUG_ENV):
                raise
            print(f"{PROG}: error: {error_line(err)}", file=sys.stderr)
            return 1
