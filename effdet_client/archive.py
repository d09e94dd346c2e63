"""Files on their way to the service: a dataset folder zipped on the fly, read through a progress counter."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

ProgressCallback = Callable[[int, int], None]
"""Called with (bytes done, bytes in total) as a transfer goes on."""

STORED_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".zip", ".tfrecord", ".record", ".tfrec"})
"""Already compressed (or binary records): stored as they are, deflating them only costs time."""


def zip_folder(folder: Path, target: BinaryIO) -> None:
    """Write folder's regular files into target as a zip, under the folder's own name (as `zip -r` does)."""
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                method = zipfile.ZIP_STORED if path.suffix.lower() in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
                archive.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}", compress_type=method)


class ProgressReader(io.RawIOBase):
    """A read-only view of an open file that reports how far it has been read (httpx streams it in chunks)."""

    def __init__(self, handle: BinaryIO, on_progress: ProgressCallback | None) -> None:
        self._handle = handle
        self._on_progress = on_progress
        self.total = os.fstat(handle.fileno()).st_size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._handle.fileno()

    def tell(self) -> int:
        return self._handle.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._handle.seek(offset, whence)

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        if self._on_progress is not None:
            self._on_progress(self._handle.tell(), self.total)
        return chunk
