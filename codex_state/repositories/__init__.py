"""The repository layer: one class per concern, each constructed from a SQLAlchemy `Session`.

Repositories run every statement in the Session's transaction and never commit. Use them with
`runtime.session(write=True)`, `runtime.run_in_transaction(...)`, or a Session of your own on
`runtime.engine` (see docs/repositories.md).
"""

from codex_state.repositories.backfill import BackfillRepository
from codex_state.repositories.base import Repository
from codex_state.repositories.consolidation import ConsolidationRepository
from codex_state.repositories.jobs import Phase1JobRepository
from codex_state.repositories.logs import LogRepository
from codex_state.repositories.memories import MemoryRepository
from codex_state.repositories.phase2 import Phase2JobRepository
from codex_state.repositories.rollout_files import RolloutFileRepository
from codex_state.repositories.threads import ThreadRepository

__all__ = [
    "BackfillRepository",
    "ConsolidationRepository",
    "LogRepository",
    "MemoryRepository",
    "Phase1JobRepository",
    "Phase2JobRepository",
    "Repository",
    "RolloutFileRepository",
    "ThreadRepository",
]
