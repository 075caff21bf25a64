"""The `codex-state` command line: index a codex home and look inside its state database."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from codex_state.cli import logs as logs_cli
from codex_state.cli import threads as threads_cli
from codex_state.errors import StateError
from codex_state.runtime import StateRuntime

DEFAULT_PROVIDER = "openai"


def default_codex_home() -> Path:
    """`$CODEX_HOME`, else `~/.codex`, as Codex itself resolves it."""
    configured = os.environ.get("CODEX_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".codex"


def open_runtime(args: argparse.Namespace) -> StateRuntime:
    """The runtime named by `--db URL` or `--home DIR` (default: the user's codex home)."""
    if args.db:
        url = args.db if "://" in args.db else f"sqlite:///{Path(args.db).expanduser().resolve()}"
        return StateRuntime.from_url(url, args.provider)
    return StateRuntime.init(args.home, args.provider)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codex-state",
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
    with open_runtime(args) as runtime:
        where = args.db or str(runtime.codex_home)
        state = runtime.get_backfill_state()
        print(f"state database ready at {where} (backfill {state.status.value})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `codex-state` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except StateError as err:
        print(f"codex-state: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("codex-state: interrupted", file=sys.stderr)
        return 130
