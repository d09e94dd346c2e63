"""Shared test setup: quiet TensorFlow, deterministic seeds, and an S3-compatible server for the store's tests."""

import os
from collections.abc import Iterator

import pytest

from tests.helpers.s3 import CREDENTIALS, new_bucket, s3_server

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One S3-compatible server (moto) for the session."""
    with s3_server(tmp_path_factory.mktemp("s3") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The standard AWS_* variables pointing at the test server, set in this process; a fresh bucket's URL in
    EFFDET_STORAGE_URL of the returned environment (set it where the test wants the store on)."""
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return {**env, "EFFDET_STORAGE_URL": f"s3://{new_bucket(s3_endpoint)}/effdet"}
