"""The metrics sink the runtime and repositories report to (SPEC: `counter(name, value, tags)`)."""

from __future__ import annotations

import logging
from typing import Protocol

logger = logging.getLogger(__name__)

METRIC_DB_INIT = "codex.db.init"
METRIC_DB_ERROR = "codex.db.error"


class Metrics(Protocol):
    """Anything with a `counter` method, e.g. an OpenTelemetry adapter."""

    def counter(self, name: str, value: int, tags: dict[str, str]) -> None: ...


def count(metrics: Metrics | None, name: str, tags: dict[str, str]) -> None:
    """Add 1 to a counter; a broken metrics sink must not break the database."""
    if metrics is None:
        return
    try:
        metrics.counter(name, 1, tags)
    except Exception:
        logger.exception("metrics counter %s failed", name)
