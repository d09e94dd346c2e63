"""Dataset upload, listing and deletion: accepted uploads are queued; rejected ones leave no file and no row."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from typing import Any

import pytest

from core.layout import UPLOAD_FILE
from core.tables import Dataset, DatasetStatus, JobStatus

VOC_XML = b"<annotation><filename>a.jpg</filename></annotation>"


def _upload(service: Any, data: bytes, **fields: str) -> Any:
    return service.client.post("/v1/datasets", files={"file": ("plates.zip", data, "application/zip")}, data=fields)


def test_upload_accepts_zip_and_queues_conversion(service: Any, zip_bytes: Any) -> None:
    data = zip_bytes({"plates/a.jpg": b"jpeg", "plates/a.xml": VOC_XML})
    response = _upload(service, data, format="voc", val_fraction="0.2", name="plates")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "validating"
    assert body["name"] == "plates"
    assert body["format"] == "voc"
    assert body["val_fraction"] == 0.2
    assert body["upload_bytes"] == len(data)
    stored = service.data_dir / "datasets" / body["id"] / UPLOAD_FILE
    assert stored.read_bytes() == data
    assert not list((service.data_dir / "uploads").iterdir()), "the .part file is renamed away"
    assert service.row(Dataset, body["id"]).status == DatasetStatus.validating
    assert service.broker_messages() == ["worker.tasks.convert_dataset"]
    assert service.client.get(f"/v1/datasets/{body['id']}").json()["id"] == body["id"]


def test_upload_defaults_name_to_file_name(sqlite_service: Any, zip_bytes: Any) -> None:
    body = _upload(sqlite_service, zip_bytes({"a.xml": VOC_XML})).json()
    assert body["name"] == "plates"
    assert body["format"] == "auto"
    assert body["val_fraction"] == 0.1


def test_upload_over_size_limit_is_413_and_leaves_nothing(sqlite_service: Any, zip_bytes: Any) -> None:
    limit = sqlite_service.settings.max_upload_bytes
    big = zip_bytes({"noise.bin": os.urandom(limit + 1)})
    response = _upload(sqlite_service, big)
    assert response.status_code == 413, response.text
    assert "EFFDET_MAX_UPLOAD_BYTES" in response.json()["detail"]
    assert sqlite_service.leftovers() == []
    assert sqlite_service.count(Dataset) == 0


def test_upload_over_limit_without_content_length_is_cut_off(sqlite_service: Any) -> None:
    limit = sqlite_service.settings.max_upload_bytes
    boundary = "b0undary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.zip"\r\n\r\n'.encode()

    def body() -> Any:
        yield head
        for _ in range(limit // 65536 + 2):
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = sqlite_service.client.post(
        "/v1/datasets", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code == 413
    assert sqlite_service.leftovers() == []


def test_upload_of_non_zip_is_422(sqlite_service: Any) -> None:
    response = _upload(sqlite_service, b"name,xmin\nimg.jpg,1\n")
    assert response.status_code == 422
    assert "not a zip" in response.json()["detail"]
    assert sqlite_service.leftovers() == []
    assert sqlite_service.count(Dataset) == 0


def test_upload_without_file_or_multipart_is_rejected(sqlite_service: Any) -> None:
    client = sqlite_service.client
    assert client.post("/v1/datasets", data={"name": "x"}).status_code == 415
    response = client.post("/v1/datasets", files={"name": (None, "x")})
    assert response.status_code == 422
    assert "no file" in response.json()["detail"]


@pytest.mark.parametrize(
    ("fields", "where"), [({"format": "pdf"}, "format"), ({"val_fraction": "1.5"}, "val_fraction")]
)
def test_upload_rejects_bad_form_fields(
    sqlite_service: Any, zip_bytes: Any, fields: dict[str, str], where: str
) -> None:
    response = _upload(sqlite_service, zip_bytes({"a.xml": VOC_XML}), **fields)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", where]
    assert sqlite_service.leftovers() == []


def _zip_with(infos: list[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info, data in infos:
            archive.writestr(info, data)
    return buffer.getvalue()


def _symlink() -> bytes:
    info = zipfile.ZipInfo("plates/link.xml")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return _zip_with([(info, b"/etc/passwd")])


def _bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("zeros.bin", b"\0" * (4 * 1024 * 1024))
    return buffer.getvalue()


UNSAFE = {
    "zip_slip": (lambda: _zip_with([(zipfile.ZipInfo("../../evil.xml"), VOC_XML)]), 422, "leaving its folder"),
    "absolute_path": (lambda: _zip_with([(zipfile.ZipInfo("/etc/evil.xml"), VOC_XML)]), 422, "absolute path"),
    "symlink": (_symlink, 422, "symbolic link"),
    "too_many_files": (
        lambda: _zip_with([(zipfile.ZipInfo(f"f{i}.txt"), b"x") for i in range(25)]),
        413,
        "EFFDET_MAX_FILES",
    ),
    "zip_bomb": (_bomb, 413, "EFFDET_MAX_UNCOMPRESSED_BYTES"),
}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_upload_rejects_unsafe_zip(sqlite_service: Any, case: str) -> None:
    build, status_code, message = UNSAFE[case]
    response = _upload(sqlite_service, build())
    assert response.status_code == status_code, response.text
    assert message in response.json()["detail"]
    assert sqlite_service.leftovers() == []
    assert sqlite_service.count(Dataset) == 0
    assert sqlite_service.broker_messages() == []


def test_list_and_delete_dataset(service: Any) -> None:
    free = service.dataset()
    used = service.dataset()
    service.job(used, JobStatus.succeeded)
    client = service.client
    listing = client.get("/v1/datasets").json()
    assert listing["count"] == 2
    assert {d["id"] for d in listing["items"]} == {free, used}
    shown = client.get(f"/v1/datasets/{used}").json()
    assert shown["label_map"] == {"1": "raccoon"}
    assert shown["splits"]["train"]["images"] == 9
    assert client.delete(f"/v1/datasets/{used}").status_code == 409
    (service.data_dir / "datasets" / free).mkdir(parents=True)
    assert client.delete(f"/v1/datasets/{free}").status_code == 204
    assert not (service.data_dir / "datasets" / free).exists()
    assert client.get(f"/v1/datasets/{free}").status_code == 404


def test_delete_is_refused_while_validating(sqlite_service: Any) -> None:
    dataset = sqlite_service.dataset(status=DatasetStatus.validating)
    assert sqlite_service.client.delete(f"/v1/datasets/{dataset}").status_code == 409
