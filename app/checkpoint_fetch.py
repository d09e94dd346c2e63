"""`effdet-service checkpoints fetch`: google/automl's published COCO checkpoints, downloaded by variant name into
the checkpoint folder, where jobs can name them at once.

The archive is streamed to a scratch folder inside the checkpoint folder with its size checked against the
server's Content-Length (and its SHA-256 when the operator gives one), unpacked with tarfile's `data` filter (no
paths outside, no links out, no devices), checked to fit the variant (effdet.checkpoint_fit) and renamed into
place, so the listing never shows a half-fetched checkpoint.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

from app.pretrained import checkpoint_prefix, read_checkpoint
from effdet.checkpoint_fit import fit_variant
from effdet.checkpoint_index import CheckpointIndexError

RELEASES = {
    **{f"efficientdet-d{i}": f"coco2/efficientdet-d{i}.tar.gz" for i in range(8)},
    "efficientdet-d7x": "coco2/efficientdet-d7x.tar.gz",
    **{f"efficientdet-lite{i}": f"coco/efficientdet-lite{i}.tgz" for i in range(5)},
}
"""Variant -> archive path under the base URL (google/automl's README links, Settings.checkpoint_base_url)."""
CONNECT_TIMEOUT_S = 10.0
CHUNK_BYTES = 1 << 20

Progress = Callable[[int, int | None], None]
"""progress(bytes so far, total bytes or None when the server does not say)."""


class FetchError(RuntimeError):
    """The checkpoint could not be fetched; the message says what to do instead."""


def release_url(variant: str, base_url: str) -> str:
    """The archive URL of a variant's published checkpoint; FetchError naming the variants for another name."""
    if variant not in RELEASES:
        raise FetchError(f"no published checkpoint for {variant!r}; choose one of {', '.join(RELEASES)}")
    return f"{base_url.rstrip('/')}/{RELEASES[variant]}"


def _by_hand(variant: str, url: str, destination: Path) -> str:
    return (
        f"download {url} on a machine that can reach it, then unpack it into {destination.parent} so that "
        f"{destination}/checkpoint exists (tar -xzf {url.rsplit('/', 1)[-1]} -C {destination.parent}, renaming "
        f"the unpacked folder to {variant} if it is called otherwise)"
    )


def _download(url: str, target: Path, progress: Progress | None, sha256: str | None) -> None:
    """Stream url to target, checking the size against Content-Length and the digest when given."""
    digest = hashlib.sha256()
    received = 0
    timeout = httpx.Timeout(60.0, connect=CONNECT_TIMEOUT_S)
    with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
        if response.status_code != 200:
            raise FetchError(f"{url} answered {response.status_code}")
        length = response.headers.get("content-length")
        total = int(length) if length and length.isdigit() else None
        with target.open("wb") as out:
            for chunk in response.iter_bytes(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if progress:
                    progress(received, total)
    if total is not None and received != total:
        raise FetchError(f"the download stopped at {received} of {total} bytes; run the command again")
    if sha256 and digest.hexdigest() != sha256.lower():
        raise FetchError(f"the archive's SHA-256 is {digest.hexdigest()}, not {sha256}; it was not unpacked")


def _unpacked_folder(root: Path) -> Path:
    """The folder of the unpacked archive that holds the checkpoint (its one top folder, or the root)."""
    entries = [path for path in root.iterdir() if not path.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else root


def fetch_checkpoint(
    variant: str,
    checkpoints: Path,
    base_url: str,
    sha256: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Download, check and unpack the published checkpoint of `variant` to checkpoints/<variant>; returns it."""
    url = release_url(variant, base_url)
    destination = checkpoints / variant
    if destination.exists() and not force:
        raise FetchError(f"{destination} exists already; jobs can use it as pretrained={variant!r} (--force replaces)")
    checkpoints.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".fetch-", dir=checkpoints))
    try:
        archive = scratch / "archive"
        try:
            _download(url, archive, progress, sha256)
        except httpx.HTTPError as exc:
            raise FetchError(f"cannot download {url} ({exc}); {_by_hand(variant, url, destination)}") from exc
        try:
            with tarfile.open(archive) as bundle:
                bundle.extractall(scratch / "unpacked", filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise FetchError(f"{url} is not a readable tar archive ({exc})") from exc
        folder = _unpacked_folder(scratch / "unpacked")
        _check_fits(folder, variant)
        if destination.exists():
            shutil.rmtree(destination)
        folder.rename(destination)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return destination


def _check_fits(folder: Path, variant: str) -> None:
    """FetchError unless the unpacked folder holds a checkpoint that fits the variant."""
    prefix = checkpoint_prefix(folder)
    if prefix is None:
        raise FetchError(f"the archive holds no checkpoint (.index file) for {variant}")
    try:
        fit = fit_variant(read_checkpoint(prefix), variant)
    except CheckpointIndexError as exc:
        raise FetchError(f"the archive's checkpoint cannot be read: {exc}") from exc
    if not fit.fits:
        wrong = (fit.mismatched or fit.missing)[0]
        raise FetchError(f"the archive's checkpoint does not fit {variant} (e.g. {wrong}); it was not installed")
