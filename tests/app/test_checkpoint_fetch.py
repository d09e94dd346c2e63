"""`effdet-service checkpoints fetch`: a published checkpoint downloaded from a local HTTP server (a tarball made
here, laid out as google/automl publishes them), checked, unpacked and listed at once; a wrong archive, a wrong
digest and an unreachable server fail with nothing installed."""

from __future__ import annotations

import hashlib
import socket
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from app.pretrained import list_checkpoints
from core.db import reset_caches
from core.settings import get_settings
from tests.helpers.checkpoints import write_variant_checkpoint


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No request lines on stderr."""


@pytest.fixture
def releases(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder it serves): a local server standing in for google/automl's bucket."""
    folder = tmp_path / "bucket"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


def _publish(bucket: Path, path: str, model: str, scratch: Path) -> Path:
    """A tarball of `model`'s checkpoint in an efficientdet-*/ folder with a `checkpoint` file, at bucket/path."""
    folder = scratch / "release" / "efficientdet-release"
    write_variant_checkpoint(folder / "model", model)
    (folder / "checkpoint").write_text('model_checkpoint_path: "model"\n')
    archive = bucket / path
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(folder, arcname=folder.name)
    return archive


def _fetch(monkeypatch: pytest.MonkeyPatch, data_dir: Path, base_url: str, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("EFFDET_DATA_DIR", str(data_dir))
    monkeypatch.setenv("EFFDET_CHECKPOINT_BASE_URL", base_url)
    reset_caches()
    result = CliRunner().invoke(cli, ["checkpoints", "fetch", *args])
    return result.exit_code, result.output


def test_a_fetched_checkpoint_is_listed_at_once_and_fits_its_variant(
    releases: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, bucket = releases
    archive = _publish(bucket, "coco/efficientdet-lite0.tgz", "efficientdet-lite0", tmp_path)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    code, output = _fetch(monkeypatch, tmp_path / "var", base, "efficientdet-lite0", "--sha256", digest)
    assert code == 0, output
    assert "pretrained='efficientdet-lite0'" in output
    (entry,) = list_checkpoints(get_settings())
    assert (entry.name, entry.usable, entry.variants) == ("efficientdet-lite0", True, ["efficientdet-lite0"])
    code, output = _fetch(monkeypatch, tmp_path / "var", base, "efficientdet-lite0")
    assert code == 1
    assert "exists already" in output


def test_an_archive_of_another_variant_or_digest_is_not_installed(
    releases: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, bucket = releases
    _publish(bucket, "coco/efficientdet-lite1.tgz", "efficientdet-lite0", tmp_path)
    code, output = _fetch(monkeypatch, tmp_path / "var", base, "efficientdet-lite1")
    assert code == 1
    assert "does not fit efficientdet-lite1" in output
    code, output = _fetch(monkeypatch, tmp_path / "var", base, "efficientdet-lite1", "--sha256", "0" * 64)
    assert "SHA-256" in output
    assert list_checkpoints(get_settings()) == [], "nothing half-installed, no scratch folder listed"
    assert not [path for path in (tmp_path / "var" / "checkpoints").iterdir() if not path.name.startswith(".")]


def test_without_a_connection_it_fails_at_once_saying_what_to_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, output = _fetch(monkeypatch, tmp_path / "var", f"http://127.0.0.1:{port}", "efficientdet-d1")
    assert code == 1
    assert f"download http://127.0.0.1:{port}/coco2/efficientdet-d1.tar.gz" in " ".join(output.split())
    assert "checkpoints/efficientdet-d1/checkpoint exists" in " ".join(output.split())
    code, output = _fetch(monkeypatch, tmp_path / "var", f"http://127.0.0.1:{port}", "efficientdet-d9")
    assert "choose one of efficientdet-d0" in output
