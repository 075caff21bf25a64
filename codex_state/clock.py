"""Time: epoch-second conversions and the clocks that leases are judged by.

Leases compare timestamps written by different processes, possibly on different hosts. On
PostgreSQL the database server's clock is the one clock every claimer shares, so
`DatabaseClock` asks the server; on SQLite every writer is on the same machine and the local
clock is that shared clock. Tests pass their own `Clock` to age leases without sleeping.

A clock is asked inside the unit of work, on the Session's `Connection`.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Connection


def to_epoch_seconds(value: datetime) -> int:
    """Whole epoch seconds of an aware datetime (naive ones are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() // 1)


def from_epoch_seconds(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def file_mtime(path: str | os.PathLike[str]) -> datetime | None:
    """A file's modification time in whole UTC seconds (what `updated_at` stores), or None."""
    try:
        nanos = os.stat(path).st_mtime_ns
    except OSError:
        return None
    return from_epoch_seconds(nanos // 1_000_000_000)


def utc_whole_seconds(value: datetime) -> datetime:
    """The same instant in UTC, truncated to whole seconds as the database stores it."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


class Clock(Protocol):
    """Where `now` comes from for a unit of work."""

    def now(self, connection: Connection) -> int:
        """Current epoch seconds, as the lease-holders of this database agree on them.

        `connection` is the unit of work's connection, for clocks that ask the database.
        """
        ...


class SystemClock:
    """This host's clock."""

    def now(self, connection: Connection) -> int:
        return int(time.time())


class DatabaseClock:
    """The database server's clock (PostgreSQL), shared by claimers on every host."""

    # clock_timestamp(), not now(): now() is frozen at the start of the transaction. FLOOR, as
    # SQLite's and Python's int(): a cast alone rounds 46.5 to 47, and a lease measured in
    # rounded seconds could be stolen half a second early.
    _query = "SELECT CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp())) AS BIGINT)"

    def now(self, connection: Connection) -> int:
        return int(connection.exec_driver_sql(self._query).scalar_one())


class ManualClock:
    """A clock that only moves when told to; for tests and simulations."""

    def __init__(self, start: int) -> None:
        self.current = start

    def now(self, connection: Connection) -> int:
        return self.current

    def advance(self, seconds: int) -> None:
        self.current += seconds
