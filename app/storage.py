"""Safe file operations on the data dir (atomic moves, removal, sizes) and zips streamed for download; the paths
themselves are named in `core.layout`."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path


def move_atomic(source: Path, target: Path) -> Path:
    """Move source to target by rename (same file system), creating target's folder; never a partial target."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    return target


def tree_size(path: Path) -> int:
    """Total bytes of the regular files under path (or of path itself)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


class _ChunkSink(io.RawIOBase):
    """A write-only, unseekable file that hands back what was written (zipfile then streams)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = bytes(data)
        self._chunks.append(chunk)
        return len(chunk)

    def drain(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


def zip_stream(folder: Path, root: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
    """A zip of folder (entries under root/) produced piece by piece, never whole in memory."""
    sink = _ChunkSink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            info = zipfile.ZipInfo.from_file(path, f"{root}/{path.relative_to(folder).as_posix()}")
            with path.open("rb") as source, archive.open(info, "w", force_zip64=True) as target:
                while chunk := source.read(chunk_bytes):
                    target.write(chunk)
                    yield sink.drain()
    yield sink.drain()
