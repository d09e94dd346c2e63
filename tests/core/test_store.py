"""The artefact store against a real S3-compatible server (moto's, over HTTP, as to MinIO or AWS): a published
tree is fetched whole by another machine into its own cache (once per version), a tree whose publication did not
finish is invisible, removal hides it at once, and the data dir backend keeps trees where they are written."""

from __future__ import annotations

from pathlib import Path

import obstore
import pytest

from core.store import COMPLETE, LocalStore, NotInStoreError, ObjectStore


def _tree(folder: Path) -> Path:
    (folder / "saved_model" / "variables").mkdir(parents=True)
    (folder / "saved_model" / "saved_model.pb").write_bytes(b"graph" * 1000)
    (folder / "saved_model" / "variables" / "variables.data-00000-of-00001").write_bytes(bytes(range(256)) * 4096)
    (folder / "formats.json").write_text('{"formats": ["saved_model"]}')
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_published_tree_is_fetched_whole_by_another_machine_once(s3_env: dict[str, str], tmp_path: Path) -> None:
    url = s3_env["EFFDET_STORAGE_URL"]
    worker = ObjectStore(url, tmp_path / "worker" / "cache")
    api = ObjectStore(url, tmp_path / "api" / "cache")
    source = _tree(tmp_path / "export")
    with pytest.raises(NotInStoreError):
        api.fetch("models/m1")
    worker.publish("models/m1", source)

    fetched = api.fetch("models/m1")
    assert fetched.is_relative_to(tmp_path / "api" / "cache")
    assert _files(fetched) == _files(source)
    obstore.delete(api._store, "models/m1/formats.json")  # were it downloaded again, the fetch would fail
    assert api.fetch("models/m1") == fetched, "a version is fetched once per machine"

    (source / "formats.json").write_text('{"formats": ["saved_model", "tflite"]}')
    worker.publish("models/m1", source)
    assert api.fetch("models/m1") != fetched, "a new version is a new cache entry"
    assert _files(api.fetch("models/m1")) == _files(source)


def test_an_unfinished_publication_is_invisible_and_removal_hides_at_once(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    store = ObjectStore(s3_env["EFFDET_STORAGE_URL"], tmp_path / "cache")
    source = _tree(tmp_path / "export")
    for path in ("saved_model/saved_model.pb", "formats.json"):  # a worker died before the completion record
        obstore.put(store._store, f"models/m2/{path}", source / path)
    with pytest.raises(NotInStoreError):
        store.fetch("models/m2")
    store.publish("models/m2", source)
    assert store.fetch("models/m2").is_dir()
    store.remove("models/m2")
    with pytest.raises(NotInStoreError):
        store.fetch("models/m2")
    left = [item["path"] for item in obstore.list(store._store, prefix="models/m2").collect()]
    assert left == [], "the removed tree's files went too"
    assert not (tmp_path / "cache" / "models" / "m2").exists()
    store.remove("models/never")  # nothing to remove is not an error


def test_the_data_dir_store_keeps_trees_in_place(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    source = _tree(tmp_path / "models" / "m3")
    store.publish("models/m3", source)
    assert store.fetch("models/m3") == source
    with pytest.raises(ValueError, match="in place"):
        store.publish("models/m4", source)
    store.remove("models/m3")
    with pytest.raises(NotInStoreError):
        store.fetch("models/m3")
    assert COMPLETE not in _files(tmp_path)


def test_pretrained_checkpoints_pushed_on_one_machine_are_listed_and_used_on_another(
    s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.pretrained import list_checkpoints
    from core.db import reset_caches
    from core.settings import get_settings
    from core.store import publish_checkpoint, sync_checkpoints

    monkeypatch.setenv("EFFDET_STORAGE_URL", s3_env["EFFDET_STORAGE_URL"])

    def machine(name: str) -> Path:
        monkeypatch.setenv("EFFDET_DATA_DIR", str(tmp_path / name))
        reset_caches()
        return get_settings().folder("checkpoints")

    operator = machine("operator")
    (operator / "coco-d0").mkdir()
    (operator / "coco-d0" / "model.index").write_bytes(b"index")
    (operator / "coco-d0" / "model.data-00000-of-00001").write_bytes(b"weights" * 100)
    (operator / "mine.index").write_bytes(b"index")
    (operator / "mine.data-00000-of-00001").write_bytes(b"more weights")
    publish_checkpoint(get_settings(), "coco-d0")
    publish_checkpoint(get_settings(), "mine")
    with pytest.raises(FileNotFoundError):
        publish_checkpoint(get_settings(), "absent")

    worker = machine("worker")
    sync_checkpoints(get_settings())
    assert _files(worker / "coco-d0") == _files(operator / "coco-d0")
    assert sorted(_files(worker / "mine")) == ["mine.data-00000-of-00001", "mine.index"], "a prefix comes as a folder"
    api = machine("api")
    assert [entry.name for entry in list_checkpoints(get_settings())] == ["coco-d0", "mine"]
    assert sorted(p.name for p in api.iterdir()) == ["coco-d0", "mine"], "no staging folder left"
    reset_caches()
