"""The gallery from the client: Client.dataset_images / thumbnail and `effdet-client datasets images|thumbnail`
against the in-process service, on a dataset converted for real (one bad box, one dropped image)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from effdet_client import ApiError, Client
from effdet_client.cli import app
from tests.helpers.gallery import BAD_BOX_IMAGE, DROPPED_IMAGE, GALLERY_IMAGES, gallery_zip
from worker.convert import run_conversion

BIG = str(4 * 2**20)


@pytest.fixture
def gallery(make_service: Any, tmp_path: Path) -> tuple[Any, Client, str]:
    """A service with the gallery dataset uploaded through the client and converted; (service, client, id)."""
    service = make_service(EFFDET_MAX_UPLOAD_BYTES=BIG, EFFDET_MAX_UNCOMPRESSED_BYTES=BIG)
    client = Client(http=service.client)
    dataset = client.upload_dataset(gallery_zip(tmp_path / "raccoon.zip"))
    run_conversion(dataset.id)
    assert client.get_dataset(dataset.id).status == "ready"
    return service, client, dataset.id


def test_client_lists_filters_and_draws_dataset_images(gallery: tuple[Any, Client, str]) -> None:
    _, client, dataset_id = gallery
    page = client.dataset_images(dataset_id)
    assert page.count == len(GALLERY_IMAGES)
    assert sorted(image.path for image in page.items[:2]) == sorted([BAD_BOX_IMAGE, DROPPED_IMAGE])
    assert [image.path for image in client.dataset_images(dataset_id, split="dropped").items] == [DROPPED_IMAGE]
    bad = client.dataset_images(dataset_id, problem="box_outside_image").items
    assert [(box.dropped, box.problem) for box in bad[0].boxes] == [(False, None), (True, "box_outside_image")]
    assert client.dataset_images(dataset_id, label="dog").count == 0
    second = client.dataset_images(dataset_id, limit=1, offset=1)
    assert [image.id for image in second.items] == [page.items[1].id]

    jpeg = client.thumbnail(dataset_id, bad[0].id, size=128)
    assert max(Image.open(io.BytesIO(jpeg)).size) == 128
    with pytest.raises(ApiError) as caught:
        client.thumbnail(dataset_id, "0123456789abcdef")
    assert caught.value.status_code == 404


def test_cli_lists_images_and_saves_a_thumbnail(gallery: tuple[Any, Client, str], tmp_path: Path) -> None:
    service, _, dataset_id = gallery
    runner = CliRunner()

    def cli(*args: str) -> Any:
        return runner.invoke(app, list(args), obj=service.client, env={"COLUMNS": "200"})

    listed = cli("datasets", "images", dataset_id, "--problem", "no_valid_boxes", "--json")
    assert listed.exit_code == 0, listed.output
    body = json.loads(listed.stdout)
    assert [item["path"] for item in body["items"]] == [DROPPED_IMAGE]
    table = cli("datasets", "images", dataset_id, "--split", "dropped", "--class", "raccoon")
    assert table.exit_code == 0, table.output
    assert "no_valid_boxes" in table.stdout
    assert "1 images" in table.stdout

    target = tmp_path / "image.jpg"
    saved = cli("datasets", "thumbnail", dataset_id, body["items"][0]["id"], "--output", str(target), "--size", "64")
    assert saved.exit_code == 0, saved.output
    assert max(Image.open(target).size) == 64
    missing = cli("datasets", "thumbnail", dataset_id, "0123456789abcdef", "--output", str(tmp_path / "x.jpg"))
    assert missing.exit_code == 1
    assert "not in dataset" in missing.stderr
