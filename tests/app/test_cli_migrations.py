"""`effdet-service migrate` / `create-key`, and the migrations building exactly the tables of app/models.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.auth import hash_key
from app.cli import app as cli
from core.db import make_engine, migrate, reset_caches
from core.tables import ApiKey, Base


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_match_the_models(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_schema") if backend == "postgresql" else f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    migrate(url)
    engine = make_engine(url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()


def test_cli_create_key_prints_a_key_that_turns_auth_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_service: Any
) -> None:
    monkeypatch.setenv("EFFDET_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("EFFDET_DATABASE_URL", raising=False)
    reset_caches()
    runner = CliRunner()
    assert runner.invoke(cli, ["migrate"]).exit_code == 0
    result = runner.invoke(cli, ["create-key", "ci"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'effdet.db'}")
    with Session(engine) as session:
        assert session.scalar(select(ApiKey.name).where(ApiKey.key_hash == hash_key(key))) == "ci"
    engine.dispose()
    service = make_service()
    assert service.client.get("/v1/jobs").status_code == 401
    assert service.client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
