"""A process running the memory pipeline of docs/memories.md, as one Codex process would.

The worker executes the page's `# memory pipeline` block itself, so what the test checks is
exactly what the documentation shows.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from codex_state import StateRuntime

DOCS = Path(__file__).resolve().parent.parent / "docs" / "memories.md"
MARKER = "# memory pipeline\n"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def pipeline_source() -> str:
    """The documented pipeline's code block."""
    blocks = [b for b in _BLOCK.findall(DOCS.read_text(encoding="utf-8")) if b.startswith(MARKER)]
    assert len(blocks) == 1, "docs/memories.md must have exactly one '# memory pipeline' block"
    return str(blocks[0])


def load_pipeline() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "docs_memory_pipeline"}
    exec(compile(pipeline_source(), f"{DOCS}:memory pipeline", "exec"), namespace)
    return namespace


@dataclass
class PipelineReport:
    worker: int
    extracted: list[tuple[str, str, str, int]] = field(default_factory=list)
    consolidated: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def extract(thread: Any, lease: Any) -> tuple[str, str]:
    """The model call's stand-in: deterministic in the thread and its input version."""
    lease.keep()
    version = int(thread.updated_at.timestamp())
    return f"raw memory of {thread.id} at {version}", f"summary of {thread.id} at {version}"


def consolidate(root: Path, memories: list[Any], heartbeat: Any) -> None:
    heartbeat.keep()


def run(url: str, workdir: str, worker: int, start: Barrier, reports: Queue[Any]) -> None:
    report = PipelineReport(worker)
    try:
        os.chdir(workdir)  # memory roots of a from_url runtime are relative to it
        pipeline = load_pipeline()
        with StateRuntime.from_url(url, "pipeline") as runtime:
            start.wait(timeout=120)
            extracted, consolidated = pipeline["run_pipeline"](
                runtime, uuid.uuid4(), extract, consolidate
            )
        report.extracted = [
            (str(c.thread_id), c.scope_kind, c.scope_key, c.source_updated_at) for c in extracted
        ]
        report.consolidated = [(s.scope_kind, s.scope_key) for s in consolidated]
    except Exception as err:  # reported, not raised: the parent asserts on it
        start.abort()
        report.errors.append(repr(err))
    reports.put(report)
