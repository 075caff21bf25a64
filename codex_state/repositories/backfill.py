"""The single `backfill_state` row: status, resume watermark and last success."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import bindparam, func, or_, select, update

from codex_state.arguments import check_count, check_text, check_watermark
from codex_state.clock import from_epoch_seconds
from codex_state.dialect import dialect_insert
from codex_state.errors import InvalidInputError, StateError
from codex_state.models import BackfillState, BackfillStatus
from codex_state.orm import backfill_state
from codex_state.repositories.base import Repository, translated
from codex_state.statements import Prepared

_ROW_ID = 1

_ensure_row = Prepared(
    lambda dialect: (
        dialect_insert(dialect, backfill_state)
        .values(
            id=bindparam("row_id"),
            status=bindparam("pending"),
            updated_at=bindparam("now"),
        )
        .on_conflict_do_nothing(index_elements=["id"])
    )
)

_select_state = Prepared(
    select(
        backfill_state.c.status, backfill_state.c.last_watermark, backfill_state.c.last_success_at
    ).where(backfill_state.c.id == _ROW_ID)
)

_select_lease_owner = Prepared(
    select(backfill_state.c.lease_owner).where(backfill_state.c.id == _ROW_ID)
)

_set_running = Prepared(
    update(backfill_state)
    .where(backfill_state.c.id == _ROW_ID)
    .values(status=BackfillStatus.RUNNING.value, updated_at=bindparam("now"))
)

_checkpoint = Prepared(
    update(backfill_state)
    .where(backfill_state.c.id == _ROW_ID)
    .values(
        status=BackfillStatus.RUNNING.value,
        last_watermark=bindparam("watermark"),
        updated_at=bindparam("now"),
    )
)

_complete = Prepared(
    update(backfill_state)
    .where(backfill_state.c.id == _ROW_ID)
    .values(
        status=BackfillStatus.COMPLETE.value,
        last_watermark=func.coalesce(bindparam("watermark"), backfill_state.c.last_watermark),
        last_success_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
)

# The lease: `lease_owner` holds it and `updated_at` is its heartbeat, so a backfill whose
# process died is claimable once `updated_at` is older than the lease. A resumed claim keeps
# the watermark; a re-index claim clears it, so that a killed re-index resumes from its own
# checkpoints rather than from the end of the previous run.
_claimable = or_(
    backfill_state.c.status != BackfillStatus.RUNNING.value,
    backfill_state.c.lease_owner == bindparam("owner"),
    backfill_state.c.updated_at <= bindparam("stale_before"),
)
_claim = {
    reindex: Prepared(
        update(backfill_state)
        .where(
            backfill_state.c.id == _ROW_ID,
            _claimable,
            *(() if reindex else (backfill_state.c.status != BackfillStatus.COMPLETE.value,)),
        )
        .values(
            status=BackfillStatus.RUNNING.value,
            lease_owner=bindparam("owner"),
            updated_at=bindparam("now"),
            **({"last_watermark": None} if reindex else {}),
        )
    )
    for reindex in (False, True)
}

_owned = (
    backfill_state.c.id == _ROW_ID,
    backfill_state.c.lease_owner == bindparam("owner"),
    backfill_state.c.status == BackfillStatus.RUNNING.value,
)

_checkpoint_owned = Prepared(
    update(backfill_state)
    .where(*_owned)
    .values(
        last_watermark=func.coalesce(bindparam("watermark"), backfill_state.c.last_watermark),
        updated_at=bindparam("now"),
    )
)

_complete_owned = Prepared(
    update(backfill_state)
    .where(*_owned)
    .values(
        status=BackfillStatus.COMPLETE.value,
        last_watermark=func.coalesce(bindparam("watermark"), backfill_state.c.last_watermark),
        last_success_at=bindparam("now"),
        updated_at=bindparam("now"),
        lease_owner=None,
    )
)

# Back to pending, watermark kept: the next run resumes at once instead of waiting out a lease.
_release = Prepared(
    update(backfill_state)
    .where(*_owned)
    .values(status=BackfillStatus.PENDING.value, lease_owner=None, updated_at=bindparam("now"))
)


def _check_owner(owner: object) -> str:
    if text := check_text("owner", owner):
        return text
    raise InvalidInputError("a backfill lease owner must be a non-empty str")


class BackfillRepository(Repository):
    """Progress of the rollout backfill, kept in one row so a restart can resume."""

    __slots__ = ()

    @translated
    def get_backfill_state(self) -> BackfillState:
        """Progress of the rollout backfill (pending when never started; nothing is written)."""
        row = _select_state.first(self._session, {})
        if row is None:
            return BackfillState()
        status, last_watermark, last_success_at = row
        try:
            parsed = BackfillStatus(status)
        except ValueError as err:
            raise StateError(f"invalid backfill status stored: {status!r}") from err
        return BackfillState(
            status=parsed,
            last_watermark=last_watermark,
            last_success_at=None
            if last_success_at is None
            else from_epoch_seconds(last_success_at),
        )

    @translated
    def mark_backfill_running(self) -> None:
        self._run(_set_running, {})

    @translated
    def checkpoint_backfill(self, watermark: str) -> None:
        """Record that every rollout up to `watermark` (a codex-home-relative path) is indexed."""
        if watermark is None:
            raise InvalidInputError("watermark must be a str, got None")
        self._run(_checkpoint, {"watermark": check_watermark(watermark)})

    @translated
    def mark_backfill_complete(self, last_watermark: str | None = None) -> None:
        self._run(_complete, {"watermark": check_watermark(last_watermark)})

    def _run(self, statement: Prepared, params: dict[str, object]) -> None:
        now = self._now()
        self._ensure_row(now)
        statement.execute(self._session, {**params, "now": now})

    def _ensure_row(self, now: int) -> None:
        params = {"row_id": _ROW_ID, "pending": BackfillStatus.PENDING.value, "now": now}
        _ensure_row.execute(self._session, params)

    @translated
    def try_claim_backfill(
        self, owner: str, lease_seconds: int, *, reindex: bool = False
    ) -> BackfillState | None:
        """Take the backfill lease for `owner`; the state to resume from, or None if not taken.

        Not taken means a live owner holds the lease, or (without `reindex`) it is complete.
        Judged by the affected row count, so two claimers never both win.
        """
        owner = _check_owner(owner)
        lease = check_count("lease_seconds", lease_seconds)
        now = self._now()
        self._ensure_row(now)
        params = {"owner": owner, "stale_before": now - lease, "now": now}
        if not self._changed(_claim[bool(reindex)], params):
            return None
        return self.get_backfill_state()

    @translated
    def get_backfill_lease_owner(self) -> str | None:
        """Who holds the backfill lease now (None when nobody does, or no row exists)."""
        row = _select_lease_owner.first(self._session, {})
        return None if row is None else row[0]

    @translated
    def checkpoint_backfill_lease(self, owner: str, watermark: str | None) -> bool:
        """Advance the watermark (None keeps it) and renew the lease, if `owner` still holds it."""
        params = {"owner": _check_owner(owner), "watermark": check_watermark(watermark)}
        return self._changed(_checkpoint_owned, {**params, "now": self._now()})

    @translated
    def complete_backfill_lease(self, owner: str, watermark: str | None) -> bool:
        """Mark the backfill complete and free the lease, if `owner` still holds it."""
        params = {"owner": _check_owner(owner), "watermark": check_watermark(watermark)}
        return self._changed(_complete_owned, {**params, "now": self._now()})

    @translated
    def release_backfill_lease(self, owner: str) -> bool:
        """Give the lease up early (failure or interrupt), leaving the watermark to resume from."""
        return self._changed(_release, {"owner": _check_owner(owner), "now": self._now()})

    def _changed(self, statement: Prepared, params: Mapping[str, object]) -> bool:
        # The row is the singleton, so 1 = won.
        return statement.rowcount(self._session, params) == 1
