"""The gallery endpoints on a dataset converted for real (raccoon photos, one bad box, one dropped image): pages,
filters and order of GET /v1/datasets/{id}/images, thumbnails drawn from upload.zip, ownership and the 404/409s."""

from __future__ import annotations

import io
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app.auth import static_owner
from app.gallery import thumbnail
from core.layout import dataset_dir
from core.tables import Dataset, DatasetStatus
from tests.app.conftest import Service, start_service, stop_service
from tests.helpers.gallery import BAD_BOX_IMAGE, DROPPED_IMAGE, GALLERY_IMAGES, gallery_zip
from worker.convert import run_conversion

BIG = str(4 * 2**20)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str]]:
    """A SQLite service holding the gallery dataset, uploaded through the API and converted by the worker's code."""
    folder = tmp_path_factory.mktemp("gallery")
    with pytest.MonkeyPatch.context() as monkeypatch:
        service = start_service(
            monkeypatch, folder / "var", None, EFFDET_MAX_UPLOAD_BYTES=BIG, EFFDET_MAX_UNCOMPRESSED_BYTES=BIG
        )
        upload = gallery_zip(folder / "raccoon.zip")
        response = service.client.post("/v1/datasets", files={"file": ("raccoon.zip", upload.read_bytes())})
        assert response.status_code == 202, response.text
        dataset_id = response.json()["id"]
        run_conversion(dataset_id)
        assert service.row(Dataset, dataset_id).status == DatasetStatus.ready
        yield service, dataset_id
        stop_service(service)


def _images(service: Service, dataset_id: str, **params: Any) -> dict[str, Any]:
    response = service.client.get(f"/v1/datasets/{dataset_id}/images", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _paths(body: dict[str, Any]) -> list[str]:
    return [item["path"] for item in body["items"]]


def test_images_list_problems_first_then_by_path(gallery: tuple[Service, str]) -> None:
    body = _images(*gallery)
    assert body["count"] == len(GALLERY_IMAGES)
    assert _paths(body)[:2] == sorted([BAD_BOX_IMAGE, DROPPED_IMAGE])
    assert _paths(body)[2:] == sorted(_paths(body)[2:])
    bad = body["items"][0] if body["items"][0]["path"] == BAD_BOX_IMAGE else body["items"][1]
    assert bad["has_file"]
    assert [(b["dropped"], b["problem"]) for b in bad["boxes"]] == [(False, None), (True, "box_outside_image")]
    assert [(p["object_index"], p["code"]) for p in bad["problems"]] == [(1, "box_outside_image")]


def test_images_pages_and_filters(gallery: tuple[Service, str]) -> None:
    everything = _paths(_images(*gallery))
    page = _images(*gallery, limit=2, offset=3)
    assert (_paths(page), page["count"]) == (everything[3:5], len(GALLERY_IMAGES))
    assert _paths(_images(*gallery, split="dropped")) == [DROPPED_IMAGE]
    assert _paths(_images(*gallery, problem="box_outside_image")) == [BAD_BOX_IMAGE]
    assert _paths(_images(*gallery, problem="no_valid_boxes")) == [DROPPED_IMAGE]
    assert _images(*gallery, **{"class": "raccoon"})["count"] == len(GALLERY_IMAGES)
    assert _images(*gallery, **{"class": "dog"}) == {"items": [], "count": 0}
    train, val = _images(*gallery, split="train"), _images(*gallery, split="val")
    assert train["count"] + val["count"] == len(GALLERY_IMAGES) - 1
    service, dataset_id = gallery
    assert service.client.get(f"/v1/datasets/{dataset_id}/images", params={"split": "test"}).status_code == 422


def _thumbnail(service: Service, dataset_id: str, path: str, size: int = 256) -> Image.Image:
    image_id = next(i["id"] for i in _images(service, dataset_id)["items"] if i["path"] == path)
    response = service.client.get(f"/v1/datasets/{dataset_id}/images/{image_id}/thumbnail", params={"size": size})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    return Image.open(io.BytesIO(response.content)).convert("RGB")


def test_thumbnail_is_a_jpeg_with_kept_and_dropped_boxes_in_their_colours(gallery: tuple[Service, str]) -> None:
    kept = _thumbnail(*gallery, BAD_BOX_IMAGE)
    assert kept.size == (256, 164)  # 650x417, longest side 256
    scale = 256 / 650
    red, green, blue = kept.getpixel((round(81 * scale) + 1, round(248 * scale)))  # left edge of the kept box
    assert green > 150 > red, "a kept box is green"
    assert blue < 100

    dropped = _thumbnail(*gallery, DROPPED_IMAGE)
    entry = next(i for i in _images(*gallery)["items"] if i["path"] == DROPPED_IMAGE)
    xmin, ymin, xmax, ymax = entry["boxes"][0]["bbox"]
    scale = dropped.width / entry["width"]
    red, green, _ = dropped.getpixel((round(max(xmin, xmax) * scale) - 1, round((ymin + ymax) / 2 * scale)))
    assert red > 150 > green, "a dropped box is red"

    large = _thumbnail(*gallery, BAD_BOX_IMAGE, size=2048)
    assert large.size == (650, 417), "never enlarged"


def test_thumbnail_refuses_bad_sizes_and_unknown_images(gallery: tuple[Service, str]) -> None:
    service, dataset_id = gallery
    image_id = _images(service, dataset_id)["items"][0]["id"]
    url = f"/v1/datasets/{dataset_id}/images"
    assert service.client.get(f"{url}/{image_id}/thumbnail", params={"size": 4096}).status_code == 422
    missing = service.client.get(f"{url}/0123456789abcdef/thumbnail")
    assert missing.status_code == 404
    assert "GET /v1/datasets/" in missing.json()["detail"]
    assert service.client.get(f"{url}/not-an-id/thumbnail").status_code == 422


def test_thumbnail_of_a_missing_or_broken_member_is_404_or_409(gallery: tuple[Service, str], tmp_path: Path) -> None:
    service, dataset_id = gallery
    upload = dataset_dir(service.settings, dataset_id) / "upload.zip"
    kept = shutil.copy(upload, tmp_path / "upload.zip")
    items = {i["path"]: i["id"] for i in _images(service, dataset_id)["items"]}
    url = f"/v1/datasets/{dataset_id}/images"
    try:
        with zipfile.ZipFile(kept) as source, zipfile.ZipFile(upload, "w") as target:
            for info in source.infolist():
                if info.filename == f"raccoon/{BAD_BOX_IMAGE}":
                    continue
                data = source.read(info)
                target.writestr(info, b"not a jpeg" if info.filename == f"raccoon/{DROPPED_IMAGE}" else data)
        gone = service.client.get(f"{url}/{items[BAD_BOX_IMAGE]}/thumbnail")
        assert gone.status_code == 404
        assert "holds no file" in gone.json()["detail"]
        broken = service.client.get(f"{url}/{items[DROPPED_IMAGE]}/thumbnail")
        assert broken.status_code == 409
        assert "not an image" in broken.json()["detail"]
    finally:
        shutil.copy(kept, upload)
    assert service.client.get(f"{url}/{items[BAD_BOX_IMAGE]}/thumbnail").status_code == 200


def test_images_of_validating_failed_and_unindexed_datasets(gallery: tuple[Service, str]) -> None:
    service = gallery[0]
    for state, code, words in (
        (DatasetStatus.validating, 409, "being validated"),
        (DatasetStatus.failed, 409, "failed to convert"),
        (DatasetStatus.ready, 404, "upload it again"),  # converted before the index existed
    ):
        dataset_id = service.dataset(status=state)
        response = service.client.get(f"/v1/datasets/{dataset_id}/images")
        assert response.status_code == code, state
        assert words in response.json()["detail"]
        thumb = service.client.get(f"/v1/datasets/{dataset_id}/images/0123456789abcdef/thumbnail")
        assert thumb.status_code == code


def test_images_are_seen_only_by_their_owner(gallery: tuple[Service, str]) -> None:
    service, source_id = gallery
    mine, theirs = "gallery-key-mine", "gallery-key-theirs"
    dataset_id = service.dataset(owner=static_owner(mine))
    shutil.copytree(dataset_dir(service.settings, source_id), dataset_dir(service.settings, dataset_id))
    url = f"/v1/datasets/{dataset_id}/images"
    service.settings.api_keys = [mine, theirs]
    try:
        assert service.client.get(url).status_code == 401
        other = {"Authorization": f"Bearer {theirs}"}
        assert service.client.get(url, headers=other).status_code == 404
        owner = {"Authorization": f"Bearer {mine}"}
        body = service.client.get(url, headers=owner).json()
        assert body["count"] == len(GALLERY_IMAGES)
        thumb = f"{url}/{body['items'][0]['id']}/thumbnail"
        assert service.client.get(thumb, headers=other).status_code == 404
        assert service.client.get(thumb, headers=owner).status_code == 200
    finally:
        service.settings.api_keys = []


def test_thumbnail_draws_boxes_on_the_upright_image_of_an_exif_rotated_photo() -> None:
    stored = Image.new("RGB", (200, 100), (40, 40, 40))  # stored landscape, shown portrait (EXIF orientation 6)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", exif=exif)
    box = {"label": "raccoon", "bbox": [20.0, 40.0, 80.0, 190.0], "dropped": False, "problem": None}
    drawn = Image.open(io.BytesIO(thumbnail(buffer.getvalue(), {"boxes": [box]}, 100, 10**6))).convert("RGB")
    assert drawn.size == (50, 100)
    red, green, _ = drawn.getpixel((11, 60))  # the box's left edge, in upright pixels at half size
    assert green > 150 > red
    assert drawn.getpixel((30, 70))[1] < 100, "inside the box the photo shows, not the box colour"
