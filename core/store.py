"""The artefact store: where finished artefacts live so that every machine can read them. Two backends: the data
dir (the default; a machine's files are the store) and an S3-compatible bucket (`EFFDET_STORAGE_URL=s3://bucket/
prefix`, endpoint and credentials from the standard AWS_* variables), through obstore.

A tree (e.g. an exported model's folder) is published file by file, then a completion record listing every file
with its size and SHA-256 is written last: a reader sees a tree only once it is whole. A machine fetches a tree
into its cache under the completion record's digest, so each version is downloaded once per machine, and a
cache directory can be wiped at any time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel

from core import layout
from core.settings import Settings, get_settings
from core.tables import ModelVersion

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

COMPLETE = ".complete.json"
"""The completion record of a published tree (written last, removed first)."""

CHUNK = 8 << 20

TRANSFERS = 8
"""Files sent or fetched at once (and parts of one large file)."""

CONNECT_TIMEOUT = "5s"
"""How long to wait for the store to accept a connection (an unreachable store is a quick 503, not a hang)."""

RETRIES, RETRY_S = 3, 20
"""A failed request is tried again at most this often, within this many seconds (obstore's default: 10 in 180 s)."""

MULTIPART_BYTES = 64 << 20
"""Files above this go up in parts; smaller ones in one PUT (faster for model-sized files, measured)."""


class StoredFile(BaseModel):
    """One file of a published tree."""

    path: str  # relative to the tree, '/'-separated
    size: int
    sha256: str


class Completion(BaseModel):
    """What a published tree holds."""

    files: list[StoredFile]

    @property
    def digest(self) -> str:
        """A content key of the whole tree (its record's hash)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


LISTINGS = ".listings"
"""Under a machine's cache: the small files of trees it listed without fetching them."""


@dataclass(frozen=True)
class TreeListing:
    """A tree as a reader lists it: a local folder with at least the files it asked for, and every file's path
    (None: the folder holds the whole tree, as with the data dir as the store)."""

    folder: Path
    files: frozenset[str] | None = None

    def has(self, path: Path) -> bool:
        """Whether the tree holds this file, or a folder of this name (a path inside `folder`)."""
        if self.files is None:
            return path.exists()
        relative = path.relative_to(self.folder).as_posix()
        return relative in self.files or any(name.startswith(f"{relative}/") for name in self.files)


class NotInStoreError(FileNotFoundError):
    """No whole tree under the prefix (never published, being published, or removed)."""


class Store(Protocol):
    """What the service needs of an artefact store."""

    def publish(self, prefix: str, folder: Path) -> None:
        """Make `folder`'s files the tree at `prefix`, visible to readers only once complete."""

    def fetch(self, prefix: str) -> Path:
        """A local folder holding the whole tree at `prefix`; NotInStoreError when there is none."""

    def remove(self, prefix: str) -> None:
        """Remove the tree at `prefix` (invisible at once, then its files); nothing when there is none."""

    def put_text(self, key: str, text: str) -> None:
        """Write a small object in one atomic step (e.g. which snapshot of a run is the latest)."""

    def get_text(self, key: str) -> str | None:
        """A small object's text, or None when there is none."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def completion_of(folder: Path) -> Completion:
    """The completion record of a local folder's files."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return Completion(
        files=[
            StoredFile(path=p.relative_to(folder).as_posix(), size=p.stat().st_size, sha256=_sha256(p)) for p in files
        ]
    )


class LocalStore:
    """The data dir as the store: a tree at `prefix` is the folder DATA_DIR/prefix, written there in place."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def publish(self, prefix: str, folder: Path) -> None:
        target = self.root / prefix
        if folder.resolve() != target.resolve():
            raise ValueError(f"a local store publishes {target} in place, not {folder}")

    def fetch(self, prefix: str) -> Path:
        folder = self.root / prefix
        if not folder.is_dir():
            raise NotInStoreError(f"{folder} does not exist")
        return folder

    def remove(self, prefix: str) -> None:
        shutil.rmtree(self.root / prefix, ignore_errors=True)

    def put_text(self, key: str, text: str) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.part")
        part.write_text(text)
        part.replace(target)

    def get_text(self, key: str) -> str | None:
        try:
            return (self.root / key).read_text()
        except FileNotFoundError:
            return None


class ObjectStore:
    """An S3-compatible bucket, with a local cache of fetched trees."""

    def __init__(self, url: str, cache: Path) -> None:
        from obstore.store import from_url

        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        self.url = url.rstrip("/")
        self.cache = cache
        options: ClientConfig = {"allow_http": endpoint.startswith("http://"), "connect_timeout": CONNECT_TIMEOUT}
        retry: RetryConfig = {"max_retries": RETRIES, "retry_timeout": timedelta(seconds=RETRY_S)}
        self._store = from_url(self.url, client_options=options, retry_config=retry)

    def _completion(self, prefix: str) -> Completion:
        import obstore

        try:
            record = obstore.get(self._store, f"{prefix}/{COMPLETE}").bytes()
        except FileNotFoundError:
            raise NotInStoreError(f"{self.url}/{prefix} holds no whole tree") from None
        return Completion.model_validate_json(bytes(record))

    def _put(self, key: str, path: Path, size: int) -> None:
        """One file up: a single PUT, or a multipart upload of parts sent side by side for a large file."""
        import obstore

        obstore.put(self._store, key, path, use_multipart=size > MULTIPART_BYTES, max_concurrency=TRANSFERS)

    def publish(self, prefix: str, folder: Path) -> None:
        import obstore

        completion = completion_of(folder)
        with ThreadPoolExecutor(TRANSFERS) as pool:  # obstore releases the GIL: files go up side by side
            list(pool.map(lambda f: self._put(f"{prefix}/{f.path}", folder / f.path, f.size), completion.files))
        obstore.put(self._store, f"{prefix}/{COMPLETE}", completion.model_dump_json().encode())

    def fetch(self, prefix: str) -> Path:
        import obstore

        completion = self._completion(prefix)
        local = self.cache / prefix / completion.digest
        if local.is_dir():
            return local
        local.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=local.parent, prefix=".fetch-") as scratch:

            def download(stored: StoredFile) -> None:
                target = Path(scratch) / stored.path
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as out:
                    for chunk in obstore.get(self._store, f"{prefix}/{stored.path}"):
                        out.write(chunk)
                if target.stat().st_size != stored.size:
                    raise OSError(f"{self.url}/{prefix}/{stored.path} changed while it was fetched; fetch it again")

            with ThreadPoolExecutor(TRANSFERS) as pool:
                list(pool.map(download, completion.files))
            try:
                Path(scratch).rename(local)
            except OSError:
                if not local.is_dir():  # another process fetched it first
                    raise
        return local

    def remove(self, prefix: str) -> None:
        """The completion record goes first (the tree is invisible at once), then every object under the prefix,
        listed rather than taken from the record, so what a publisher killed midway left goes too."""
        import obstore

        obstore.delete(self._store, f"{prefix}/{COMPLETE}")
        for batch in obstore.list(self._store, f"{prefix}/", chunk_size=1000):
            paths = [meta["path"] for meta in batch]
            if paths:
                obstore.delete(self._store, paths)
        self.evict(prefix)

    def evict(self, prefix: str) -> None:
        """Drop this machine's cached copies of the tree at `prefix` (the store keeps it)."""
        shutil.rmtree(self.cache / prefix, ignore_errors=True)

    def put_text(self, key: str, text: str) -> None:
        import obstore

        obstore.put(self._store, key, text.encode())

    def fetch_file(self, key: str, target: Path) -> Path:
        """One object into `target` (written aside, then renamed); NotInStoreError when there is none."""
        import obstore

        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            with part.open("wb") as out:
                for chunk in obstore.get(self._store, key):
                    out.write(chunk)
        except FileNotFoundError:
            part.unlink(missing_ok=True)
            raise NotInStoreError(f"{self.url}/{key} does not exist") from None
        part.replace(target)
        return target

    def listing(self, prefix: str, small_files: tuple[str, ...]) -> TreeListing:
        """What the tree at `prefix` holds, with only `small_files` of it on this machine (a listing of models must
        not download every model); the whole cached copy when this machine has fetched it already."""
        completion = self._completion(prefix)
        files = frozenset(stored.path for stored in completion.files)
        whole = self.cache / prefix / completion.digest
        if whole.is_dir():
            return TreeListing(folder=whole, files=files)
        folder = self.cache / LISTINGS / prefix / completion.digest
        for name in small_files:
            if name in files and not (folder / name).is_file():
                self.fetch_file(f"{prefix}/{name}", folder / name)
        return TreeListing(folder=folder, files=files)

    def children(self, prefix: str) -> list[str]:
        """The names one level under `prefix` (e.g. the checkpoints in checkpoints/)."""
        import obstore

        listed = obstore.list_with_delimiter(self._store, f"{prefix}/")
        return sorted(PurePosixPath(path).name for path in listed["common_prefixes"])

    def get_text(self, key: str) -> str | None:
        import obstore

        try:
            return bytes(obstore.get(self._store, key).bytes()).decode()
        except FileNotFoundError:
            return None


@lru_cache(maxsize=4)
def _store_for(url: str | None, data_dir: Path) -> Store:
    if url is None:
        return LocalStore(data_dir)
    if not url.startswith("s3://"):
        raise ValueError(f"EFFDET_STORAGE_URL must be s3://bucket[/prefix], not {url!r}")
    return ObjectStore(url, data_dir / "cache")


def get_store(settings: Settings | None = None) -> Store:
    """The store the settings name (the data dir unless EFFDET_STORAGE_URL is set)."""
    settings = settings or get_settings()
    return _store_for(settings.storage_url, settings.data_dir.resolve())


def model_prefix(model_id: str) -> str:
    """Where an exported model version's folder lives in the store."""
    return f"models/{model_id}"


def dataset_input_prefix(dataset_id: str) -> str:
    """Where a dataset's input lives in the store: its upload.zip, or a fixed version's fixes.json."""
    return f"datasets/{dataset_id}/input"


def records_prefix(dataset_id: str) -> str:
    """Where a dataset's converted records (shards, ground truth, dataset.json, image index) live in the store."""
    return f"datasets/{dataset_id}/tfrecords"


def evaluation_prefix(evaluation_id: str) -> str:
    """Where an evaluation's findings and per-image detections live in the store."""
    return f"evaluations/{evaluation_id}"


def run_prefix(job_id: str) -> str:
    """Where a training run's snapshots (config, latest checkpoint, logs) live in the store."""
    return f"runs/{job_id}"


def share(settings: Settings, prefix: str, folder: Path) -> None:
    """Publish a finished local folder at `prefix` when the store is a bucket; with the data dir as the store the
    folder is already where every reader looks, so nothing is sent."""
    if settings.storage_url is not None:
        get_store(settings).publish(prefix, folder)


def shared(settings: Settings, prefix: str, local: Path) -> Path:
    """A local folder holding the tree at `prefix`: `local` itself with the data dir as the store, else this
    machine's cached copy (fetched on first use; NotInStoreError while there is no whole tree)."""
    if settings.storage_url is None:
        return local
    return get_store(settings).fetch(prefix)


def unshare(settings: Settings, prefix: str) -> None:
    """Remove the tree at `prefix` from a bucket store (the caller removes local folders)."""
    if settings.storage_url is not None:
        get_store(settings).remove(prefix)


def model_listing(row: ModelVersion, small_files: tuple[str, ...]) -> TreeListing:
    """What a model version's folder holds, fetching only `small_files` of it from a bucket store (e.g. its
    manifest, to list it); NotInStoreError when the store has no whole copy."""
    settings = get_settings()
    if settings.storage_url is None:
        return TreeListing(folder=Path(row.path))
    store = get_store(settings)
    assert isinstance(store, ObjectStore)
    return store.listing(model_prefix(row.id), small_files)


def model_folder(row: ModelVersion) -> Path:
    """A local folder holding the model version's files: where it was exported, or with an object store, this
    machine's cached copy of it (fetched on first use); NotInStoreError when the store has no whole copy."""
    return shared(get_settings(), model_prefix(row.id), Path(row.path))


def share_files(settings: Settings, prefix: str, files: list[Path], move: bool = False) -> None:
    """Publish these files, side by side, as the tree at `prefix` when the store is a bucket (e.g. a dataset's
    upload.zip, which sits beside other things in its local folder); `move` then removes the local files (this
    machine keeps no copy outside its cache)."""
    if settings.storage_url is None:
        return
    with tempfile.TemporaryDirectory(dir=settings.data_dir, prefix=".share-") as staging:
        for path in files:
            (Path(staging) / path.name).hardlink_to(path)
        get_store(settings).publish(prefix, Path(staging))
    if move:
        for path in files:
            path.unlink(missing_ok=True)


def holds(settings: Settings, prefix: str, local: Path) -> bool:
    """Whether the tree at `prefix` exists, without fetching it (`local`: the path that shows it in the data dir)."""
    if settings.storage_url is None:
        return local.exists()
    return get_store(settings).get_text(f"{prefix}/{COMPLETE}") is not None


def _shared_or_local(settings: Settings, prefix: str, local: Path) -> Path:
    try:
        return shared(settings, prefix, local)
    except NotInStoreError:
        return local


def dataset_records(settings: Settings, dataset_id: str) -> Path:
    """The dataset's converted records on this machine (fetched once from a bucket store); where they would be
    when there are none, so a reader's own 'is it there' check answers."""
    return _shared_or_local(settings, records_prefix(dataset_id), layout.records_dir(settings, dataset_id))


def dataset_input(settings: Settings, dataset_id: str) -> Path:
    """The folder holding the dataset's upload.zip (or a fixed version's fixes.json) on this machine; see
    dataset_records."""
    return _shared_or_local(settings, dataset_input_prefix(dataset_id), layout.dataset_dir(settings, dataset_id))


def evaluation_files(settings: Settings, evaluation_id: str) -> Path:
    """The folder holding an evaluation's findings on this machine; see dataset_records."""
    return _shared_or_local(settings, evaluation_prefix(evaluation_id), layout.evaluation_dir(settings, evaluation_id))


CHECKPOINTS = "checkpoints"
"""Where pretrained checkpoints live in a bucket store, one tree per name (what jobs name as `pretrained`)."""


def publish_checkpoint(settings: Settings, name: str) -> None:
    """Send the checkpoint `name` of this machine's checkpoint folder (a folder, or a prefix's files) to a bucket
    store, so every machine can list and use it; nothing with the data dir as the store."""
    if settings.storage_url is None:
        return
    folder = layout.checkpoints_dir(settings)
    entry = folder / name
    if entry.is_dir():
        get_store(settings).publish(f"{CHECKPOINTS}/{name}", entry)
        return
    files = sorted(p for p in folder.glob(f"{name}.*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no checkpoint called {name!r} in {folder}")
    share_files(settings, f"{CHECKPOINTS}/{name}", files)


def sync_checkpoints(settings: Settings) -> None:
    """Bring every pretrained checkpoint of a bucket store that this machine lacks into its checkpoint folder
    (each as a folder of its name); nothing with the data dir as the store."""
    if settings.storage_url is None:
        return
    store = get_store(settings)
    assert isinstance(store, ObjectStore)
    folder = layout.checkpoints_dir(settings)
    for name in store.children(CHECKPOINTS):
        if (folder / name).exists() or (folder / f"{name}.index").exists():
            continue
        fetched = store.fetch(f"{CHECKPOINTS}/{name}")
        staged = Path(tempfile.mkdtemp(dir=folder, prefix=f".{name}.sync-"))
        try:
            shutil.copytree(fetched, staged, dirs_exist_ok=True)
            staged.rename(folder / name)
        except OSError:
            if not (folder / name).is_dir():  # another process of this machine synced it first
                raise
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        store.evict(f"{CHECKPOINTS}/{name}")
