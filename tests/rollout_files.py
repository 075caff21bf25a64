"""Synthetic Codex rollout files and codex homes for backfill and CLI tests."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

START = datetime(2026, 2, 10, 9, 30, 0, tzinfo=UTC)
TOOL_SPECS = [
    {"name": "lookup", "description": "Look a term up.", "inputSchema": {"type": "object"}},
    {"name": "open", "description": "Open a file.", "inputSchema": {"type": "string"}},
]


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
