"""Synthetic Codex rollout files and codex homes for parsing, backfill and CLI tests."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from codex_state import ThreadMetadata
from codex_state.rollout import extract_metadata_from_rollout

REPO_ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 2, 10, 9, 30, 0, tzinfo=UTC)
TOOL_SPECS = [
    {"name": "lookup", "description": "Look a term up.", "inputSchema": {"type": "object"}},
    {"name": "open", "description": "Open a file.", "inputSchema": {"type": "string"}},
]


def real_data_dir(name: str) -> Path:
    """`shared/data/<name>`: under `$CODEX_STATE_REAL_DATA`, else the nearest `shared/data` above
    the repository (a git worktree sits deeper than the main checkout). May not exist."""
    root = os.environ.get("CODEX_STATE_REAL_DATA")
    if root:
        return Path(root) / name
    for parent in REPO_ROOT.parents:
        candidate = parent / "shared" / "data" / name
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared" / "data" / name


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def rollout_lines(
    thread_id: uuid.UUID,
    created: datetime,
    *,
    message: str | None = "hello",
    tokens: int = 100,
    source: str = "cli",
    provider: str | None = "openai",
    tools: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """session_meta, turn_context, a user message, token counts and response items."""
    meta: dict[str, Any] = {
        "id": str(thread_id),
        "timestamp": _stamp(created),
        "cwd": "/work/project",
        "originator": "codex_cli_rs",
        "cli_version": "0.99.0",
        "source": source,
        "model_provider": provider,
        "base_instructions": None,
        "git": {"commit_hash": "abc123", "branch": "main"},
    }
    if tools is not None:
        meta["dynamic_tools"] = tools
    payloads: list[tuple[str, dict[str, Any]]] = [
        ("session_meta", meta),
        (
            "turn_context",
            {
                "cwd": "/work/project",
                "approval_policy": "on-request",
                "sandbox_policy": {"type": "read-only"},
                "model": "gpt-5.2-codex",
                "summary": "auto",
            },
        ),
        ("event_msg", {"type": "token_count", "info": None, "rate_limits": None}),
    ]
    if message is not None:
        payloads += [
            (
                "response_item",
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": message}],
                },
            ),
            ("event_msg", {"type": "user_message", "message": message, "local_images": []}),
        ]
    usage = {"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens}
    payloads += [
        (
            "response_item",
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "ok"}],
            },
        ),
        ("event_msg", {"type": "token_count", "info": {"total_token_usage": usage}}),
    ]
    return [
        {"timestamp": _stamp(created + timedelta(seconds=n)), "type": kind, "payload": payload}
        for n, (kind, payload) in enumerate(payloads)
    ]


def write_rollout(
    home: Path,
    thread_id: uuid.UUID | None = None,
    *,
    created: datetime = START,
    archived: bool = False,
    mtime: int | None = None,
    **options: Any,
) -> Path:
    """A rollout file at Codex's path for it; its mtime is `mtime` or the creation time."""
    thread_id = thread_id or uuid.uuid4()
    name = f"rollout-{created.strftime('%Y-%m-%dT%H-%M-%S')}-{thread_id}.jsonl"
    folder = home / (
        "archived_sessions" if archived else f"sessions/{created:%Y}/{created:%m}/{created:%d}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    lines = rollout_lines(thread_id, created, **options)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    stamp = mtime if mtime is not None else int(created.timestamp())
    os.utime(path, (stamp, stamp))
    return path


def make_home(home: Path, count: int, *, start: datetime = START) -> list[Path]:
    """`count` rollouts, one every hour (so across several day folders)."""
    return [write_rollout(home, created=start + timedelta(hours=3 * n)) for n in range(count)]


# --- single lines, for parsing tests -------------------------------------------------------

THREAD = uuid.UUID("019c0000-0000-7000-8000-000000000001")
OTHER = uuid.UUID("019c0000-0000-7000-8000-0000000000ff")
FILE_NAME = f"rollout-2026-02-10T09-15-30-{THREAD}.jsonl"
TS = "2026-02-10T08:15:30.123Z"
WORKSPACE_WRITE = {
    "type": "workspace-write",
    "writable_roots": ["/work/repo"],
    "network_access": False,
    "exclude_tmpdir_env_var": False,
    "exclude_slash_tmp": False,
}
WORKSPACE_WRITE_TEXT = (
    '{"type":"workspace-write","writable_roots":["/work/repo"],"network_access":false,'
    '"exclude_tmpdir_env_var":false,"exclude_slash_tmp":false}'
)


def line(kind: str, payload: object, timestamp: str = TS) -> str:
    return json.dumps({"timestamp": timestamp, "type": kind, "payload": payload})


OMIT = object()
"""A session_meta field left out of the line."""


def meta(thread_id: uuid.UUID = THREAD, **fields: Any) -> str:
    payload: dict[str, Any] = {
        "id": str(thread_id),
        "timestamp": TS,
        "cwd": "/work/repo",
        "originator": "codex_cli_rs",
        "cli_version": "0.99.0",
        "source": "cli",
        "model_provider": "openai",
        "base_instructions": None,
        "git": {"commit_hash": "abc123", "branch": "main", "repository_url": "git@x:y.git"},
    }
    payload.update(fields)
    return line("session_meta", {k: v for k, v in payload.items() if v is not OMIT})


def turn(
    cwd: str = "/work/repo", approval: str = "on-request", sandbox: object = WORKSPACE_WRITE
) -> str:
    payload = {
        "cwd": cwd,
        "approval_policy": approval,
        "sandbox_policy": sandbox,
        "model": "gpt-5",
        "summary": "auto",
    }
    return line("turn_context", payload)


def user(message: str, images: list[str] | None = None, local_images: tuple[str, ...] = ()) -> str:
    payload = {
        "type": "user_message",
        "message": message,
        "images": images,
        "local_images": list(local_images),
        "text_elements": [],
    }
    return line("event_msg", payload)


def usage(total: int) -> dict[str, int]:
    return {
        "input_tokens": total,
        "cached_input_tokens": 0,
        "output_tokens": 0,
        "reasoning_output_tokens": 0,
        "total_tokens": total,
    }


def tokens(total: int | None) -> str:
    info = None
    if total is not None:
        info = {
            "total_token_usage": usage(total),
            "last_token_usage": usage(total),
            "model_context_window": 258400,
        }
    return line("event_msg", {"type": "token_count", "info": info, "rate_limits": None})


def response(text: str = "hello") -> str:
    content = [{"type": "output_text", "text": text}]
    return line("response_item", {"type": "message", "role": "assistant", "content": content})


def agent_message(text: str = "done") -> str:
    return line("event_msg", {"type": "agent_message", "message": text})


def write(tmp_path: Path, lines: list[str], name: str = FILE_NAME, *, end: str = "\n") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + end if lines else "", encoding="utf-8")
    return path


def extract(path: Path, provider: str = "default-provider") -> ThreadMetadata:
    return extract_metadata_from_rollout(path, provider).metadata
