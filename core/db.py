"""Engine and sessions for the configured database (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from core.settings import get_settings

CONNECT_TIMEOUT_S = 5
"""Seconds to wait for a database server to accept a connection (an unreachable one is a quick 503)."""


def make_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL and a busy timeout so the API and the worker can share the file, a server
    database a connect timeout and a liveness check of pooled connections."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return make_engine(settings.resolved_database_url)


@lru_cache
def _factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session committed at the end of the block, rolled back on error."""
    session = _factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def transaction_lock(session: Session, name: str) -> None:
    """Serialise the transactions that take the lock `name` until each commits: a PostgreSQL advisory lock (read
    then write, e.g. the next version number, would otherwise race); SQLite already runs one writer at a time."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def reset_caches() -> None:
    """Forget the engine and settings (tests switch databases through the environment)."""
    from core.settings import get_settings as settings_cache

    if _factory.cache_info().currsize:
        get_engine().dispose()
    _factory.cache_clear()
    get_engine.cache_clear()
    settings_cache.cache_clear()


MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str | None = None) -> AlembicConfig:
    """Alembic's config for our migrations folder, on `url` (default: the settings' database)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url or get_settings().resolved_database_url
    config.attributes["configure_logging"] = False
    return config


def migrate(url: str | None = None) -> None:
    """Upgrade the database to the newest schema (idempotent; the API runs it at start)."""
    if url is None:
        get_settings().data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")
