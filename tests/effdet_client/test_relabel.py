"""Class merging from the client: upload with class_aliases / label_map, Client.relabel_dataset and
`effdet-client datasets upload --class-aliases` / `datasets relabel`, on a raccoon set that spells its one class
two ways, converted for real by the worker's code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from effdet_client import ApiError, Client
from tests.helpers.respelled import respelled_raccoon_zip
from worker.convert import run_conversion

BIG = str(8 * 2**20)
MERGE = {"Raccoon": "raccoon"}


@pytest.fixture
def respelled_service(make_service: Any, tmp_path: Path) -> tuple[Any, Client, Path]:
    """A service whose limits take the 20-image zip; (service, client, the zip)."""
    service = make_service(EFFDET_MAX_UPLOAD_BYTES=BIG, EFFDET_MAX_UNCOMPRESSED_BYTES=BIG, EFFDET_MAX_FILES="100")
    return service, Client(http=service.client), respelled_raccoon_zip(tmp_path / "raccoon.zip")


def test_client_uploads_with_aliases_and_relabels(respelled_service: tuple[Any, Client, Path]) -> None:
    _, client, upload = respelled_service
    merged = client.upload_dataset(upload, class_aliases=MERGE, label_map={1: "raccoon"})
    assert merged.class_aliases == MERGE
    assert merged.requested_label_map == {"1": "raccoon"}
    run_conversion(merged.id)
    assert client.get_dataset(merged.id).label_map == {"1": "raccoon"}

    split = client.upload_dataset(upload)
    run_conversion(split.id)
    found = client.get_dataset(split.id)
    assert found.label_map == {"1": "Raccoon", "2": "raccoon"}
    assert found.suggested_aliases() == MERGE

    relabelled = client.relabel_dataset(split.id, class_aliases=found.suggested_aliases())
    assert relabelled.status == "validating"
    with pytest.raises(ApiError) as caught:
        client.relabel_dataset(split.id, class_aliases=MERGE)
    assert caught.value.status_code == 409
    run_conversion(split.id)
    done = client.wait_dataset(split.id, timeout=5)
    assert done.label_map == {"1": "raccoon"}
    assert done.suggested_aliases() == {}

    with pytest.raises(ApiError) as bad:
        client.relabel_dataset(split.id, class_aliases={"raccoon": "raccoon"})
    assert bad.value.status_code == 422
    assert "itself" in str(bad.value)


def test_cli_uploads_with_class_aliases_and_relabels_with_the_suggestion(
    respelled_service: tuple[Any, Client, Path],
) -> None:
    from typer.testing import CliRunner

    from effdet_client.cli import app

    service, client, upload = respelled_service
    runner = CliRunner()

    def cli(*args: object) -> Any:
        return runner.invoke(app, [str(arg) for arg in args], obj=service.client)

    uploaded = cli("datasets", "upload", upload, "--class-aliases", json.dumps(MERGE), "--json")
    assert uploaded.exit_code == 0, uploaded.output
    assert json.loads(uploaded.stdout)["class_aliases"] == MERGE

    bad = cli("datasets", "upload", upload, "--class-aliases", "{lp")
    assert bad.exit_code == 1
    assert "--class-aliases is not valid JSON" in bad.output

    split = client.upload_dataset(upload)
    run_conversion(split.id)
    shown = cli("datasets", "show", split.id)
    assert f"effdet-client datasets relabel {split.id} --suggested" in shown.stdout
    relabelled = cli("datasets", "relabel", split.id, "--suggested", "--json")
    assert relabelled.exit_code == 0, relabelled.output
    assert json.loads(relabelled.stdout)["class_aliases"] == MERGE
    run_conversion(split.id)
    assert client.get_dataset(split.id).label_map == {"1": "raccoon"}

    nothing = cli("datasets", "relabel", split.id)
    assert nothing.exit_code == 1
    assert "nothing would change" in nothing.output
