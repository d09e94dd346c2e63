"""Alembic environment: the URL and the metadata come from the app, so the CLI and `core.db.migrate` agree."""

from __future__ import annotations

import logging.config

from alembic import context
from sqlalchemy import Connection, text

from core.db import make_engine
from core.tables import Base
from core.settings import get_settings

MIGRATION_LOCK_ID = 7_246_311  # PostgreSQL advisory lock: API and workers starting together migrate one at a time

config = context.config
if config.config_file_name and config.attributes.get("configure_logging", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


def run_online() -> None:
    """Upgrade over the connection given by `core.db.migrate`, or over a fresh engine for the settings' URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = config.attributes.get("url") or get_settings().resolved_database_url
    engine = make_engine(url)
    try:
        with engine.connect() as fresh:
            _configure(fresh)
    finally:
        engine.dispose()


def run_offline() -> None:
    """Emit SQL for the settings' URL without connecting (`alembic upgrade head --sql`)."""
    context.configure(url=get_settings().resolved_database_url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
