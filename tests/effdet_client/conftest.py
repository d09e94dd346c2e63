"""Fixtures of the client tests: the API tests' in-process service (tests/app/conftest.py), a `Client` and the
`effdet-client` command that talk to it through its TestClient, and a small raccoon dataset folder."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from effdet_client import Client
from effdet_client.cli import app
from tests.app.conftest import Service, make_service, sqlite_service  # noqa: F401  (fixtures used here)

RACCOON = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "raccoon"

Cli = Callable[..., Result]


@pytest.fixture
def client(request: pytest.FixtureRequest) -> Client:
    """A Client on the in-process service (the API tests' sqlite_service)."""
    service: Service = request.getfixturevalue("sqlite_service")
    return Client(http=service.client)


@pytest.fixture
def cli(request: pytest.FixtureRequest) -> Cli:
    """cli(*args) -> the result of `effdet-client ARGS` run against the in-process service (stdout, stderr apart)."""
    service: Service = request.getfixturevalue("sqlite_service")
    runner = CliRunner()

    def run(*args: object) -> Result:
        return runner.invoke(app, [str(arg) for arg in args], obj=service.client)

    return run


@pytest.fixture
def raccoon_folder(tmp_path: Path) -> Path:
    """A copy of the first few raccoon images with their VOC annotations."""
    folder = tmp_path / "raccoons"
    for sub in ("images", "annotations"):
        (folder / sub).mkdir(parents=True)
    for index in range(1, 4):
        shutil.copy(RACCOON / "images" / f"raccoon-{index}.jpg", folder / "images")
        shutil.copy(RACCOON / "annotations" / f"raccoon-{index}.xml", folder / "annotations")
    return folder
