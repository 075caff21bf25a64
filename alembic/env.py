"""Alembic environment for codex-state.

Embedded use (`StateRuntime`) passes an open connection in ``config.attributes["connection"]``
that already holds the migration lock; the `alembic` command line resolves a URL itself and
takes the same lock through `codex_state.migrations.migration_connection`.
"""

from __future__ import annotations

import logging.config
from typing import Any

from alembic import context
from sqlalchemy import make_url
from sqlalchemy.engine import Connection

from codex_state.migrations import include_object_for, migration_connection, resolve_cli_url
from codex_state.orm import Base

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
        include_object=include_object_for(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    url = resolve_cli_url(context.get_x_argument(as_dictionary=True), config)
    context.configure(
        url=url,
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=True,
        include_object=include_object_for(make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    injected: Any = config.attributes.get("connection")
    if injected is not None:
        _run(injected)
        return
    url = resolve_cli_url(context.get_x_argument(as_dictionary=True), config)
    with migration_connection(url) as connection:
        _run(connection)


if config.attributes.get("connection") is None and config.config_file_name:
    # Only the command line configures logging; an embedding application keeps its own loggers.
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
