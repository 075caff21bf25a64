"""What every command shares: terminal-safe text, stdout lines, error lines, integer options."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from typing import NoReturn

from codex_state.errors import StateError, first_line

PROG = "codex-state"

# C0 controls, DEL and C1 controls (ESC starts cursor moves, colour, title and clipboard
# sequences; C1's CSI does the same on some terminals), plus lone surrogates, which cannot
# even be encoded for a UTF-8 stdout.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROLS_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_BACKGROUND = re.compile(r"\s*\(Background on this error at: [^)]*\)")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str, *, multiline: bool = False) -> str:
    """`text` with terminal control characters shown as escapes (ESC as `\\x1b`).

    Stored text (a title, a log message, a file name) comes from models, users and files:
    sent raw, it could move the cursor, recolour, retitle or clear the user's terminal.
    `multiline` keeps newlines and tabs, for log messages with tracebacks.
    """
    pattern = _CONTROLS_BUT_LINES if multiline else _CONTROLS
    return pattern.sub(_escape, text)


def emit(line: str) -> None:
    """Print to stdout; a closed pipe (`| head`) ends the output quietly."""
    try:
        print(line)
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(0) from None


def error_line(err: BaseException) -> str:
    """One terminal-safe line saying what went wrong, from the error's own first line.

    Only the first line: drivers and SQLAlchemy put the SQL, its bound parameters (users'
    data) and details such as PostgreSQL's `DETAIL: Key (...)=(...)` on the lines after it.
    """
    if isinstance(err, StateError):
        text = first_line(str(err), type(err).__name__)
    elif isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename is not None else ""
        text = f"{err.strerror}{where}"
    else:
        text = f"internal error: {type(err).__name__}: {first_line(str(err))}".rstrip(": ")
    return printable(_BACKGROUND.sub("", text))


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line instead of the usage text and the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {printable(message)} (see `{self.prog} --help`)\n")


def int_option(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse `type` for an integer in `[minimum, maximum]`, refused in one line if not.

    Range-checked at parse time: an out-of-range number would otherwise travel to the
    database and fail there (SQLite's `OverflowError` above 64 bits).
    """

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
        if not minimum <= number <= maximum:
            raise argparse.ArgumentTypeError(
                f"must be from {minimum} to {maximum}, got {printable(value)[:40]}"
            )
        return number

    return parse
