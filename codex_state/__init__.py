"""codex-state: the Codex CLI's local state database (state_4.sqlite) as a Python package."""

from codex_state.aio import AsyncStateRuntime
from codex_state.clock import Clock, DatabaseClock, ManualClock, SystemClock
from codex_state.errors import (
    BackfillRunningError,
    DatabaseError,
    InvalidInputError,
    InvalidThreadIdError,
    RolloutReadError,
    SchemaMismatchError,
    StateDbOpenError,
    StateError,
    ThreadNotFoundError,
)
from codex_state.logging import StateLogHandler, log_thread_id
from codex_state.metrics import Metrics
from codex_state.models import (
    Anchor,
    BackfillState,
    BackfillStats,
    BackfillStatus,
    DynamicToolSpec,
    LogEntry,
    LogQuery,
    LogRow,
    Phase1ClaimKind,
    Phase1JobClaimOutcome,
    SortKey,
    ThreadMemory,
    ThreadMetadata,
    ThreadMetadataBuilder,
    ThreadsPage,
)
from codex_state.paths import (
    STATE_DB_FILENAME,
    STATE_DB_VERSION,
    state_db_filename,
    state_db_path,
)
from codex_state.runtime import StateRuntime

__all__ = [
    "STATE_DB_FILENAME",
    "STATE_DB_VERSION",
    "Anchor",
    "AsyncStateRuntime",
    "BackfillRunningError",
    "BackfillState",
    "BackfillStats",
    "BackfillStatus",
    "Clock",
    "DatabaseClock",
    "DatabaseError",
    "DynamicToolSpec",
    "InvalidInputError",
    "InvalidThreadIdError",
    "LogEntry",
    "LogQuery",
    "LogRow",
    "ManualClock",
    "Metrics",
    "Phase1ClaimKind",
    "Phase1JobClaimOutcome",
    "RolloutReadError",
    "SchemaMismatchError",
    "SortKey",
    "StateDbOpenError",
    "StateError",
    "StateLogHandler",
    "StateRuntime",
    "SystemClock",
    "ThreadMemory",
    "ThreadMetadata",
    "ThreadMetadataBuilder",
    "ThreadNotFoundError",
    "ThreadsPage",
    "log_thread_id",
    "state_db_filename",
    "state_db_path",
]
