"""Receiving dataset uploads: stream a multipart body to disk under a size limit, then check the zip cheaply.

The body is parsed as it arrives (python-multipart's streaming parser), so an upload is never whole in memory
and an oversized one is cut off at the limit rather than spooled first. The zip checks read only the central
directory; the worker's `extract_zip` enforces the same limits again while it writes.
"""

from __future__ import annotations

import hashlib
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from fastapi import HTTPException, Request, status
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from core.settings import Settings

MAX_FIELD_BYTES = 64 * 1024
BAD_NAME_ENCODING = (
    "the zip marks its file names as UTF-8 but one is not valid UTF-8; re-create the zip (e.g. `zip -r` or "
    "`python -m zipfile -c`) from the folder"
)
FORM_OVERHEAD_BYTES = 1024 * 1024


@dataclass
class StreamedForm:
    """The text fields of a multipart form and what became of its one file part."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)  # of the file's bytes, updated as they arrive

    @property
    def sha256(self) -> str:
        """The file's SHA-256 (hex)."""
        return str(self.digest.hexdigest())


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    name: str = ""
    is_file: bool = False
    text: bytearray = field(default_factory=bytearray)


class _FormReader:
    """python-multipart callbacks collecting text fields and queueing the file's bytes for the disk."""

    def __init__(self, file_field: str) -> None:
        self.file_field = file_field
        self.form = StreamedForm()
        self.part = _Part()
        self.pending: list[bytes] = []
        self.error: str | None = None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self.part.header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.part.header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
        }

    def _begin(self) -> None:
        self.part = _Part()

    def _header_end(self) -> None:
        name = bytes(self.part.header_field).decode("latin-1").strip().lower()
        self.part.headers[name] = bytes(self.part.header_value).decode("latin-1")
        self.part.header_field.clear()
        self.part.header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get("content-disposition", ""))
        self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self.part.is_file = filename is not None
        if self.part.is_file:
            if self.part.name != self.file_field:
                self.error = f"unexpected file field {self.part.name!r}; send the archive as {self.file_field!r}"
            elif self.form.filename is not None:
                self.error = f"send one file in {self.file_field!r}, not several"
            else:
                self.form.filename = (filename or b"").decode("utf-8", "replace")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        if self.part.is_file:
            self.pending.append(data[start:end])
            self.form.size += end - start
            return
        self.part.text.extend(data[start:end])
        if len(self.part.text) > MAX_FIELD_BYTES:
            self.error = f"form field {self.part.name!r} is longer than {MAX_FIELD_BYTES} bytes"
        else:
            self.form.fields[self.part.name] = bytes(self.part.text).decode("utf-8", "replace")


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"the upload is larger than the limit of {limit} bytes (EFFDET_MAX_UPLOAD_BYTES); upload less data",
    )


async def receive_file_form(request: Request, dest: Path, max_bytes: int, file_field: str = "file") -> StreamedForm:
    """Stream a multipart/form-data body: its file part to dest (at most max_bytes), its text fields returned.

    Raises HTTPException 413 (too large), 415 (not multipart) or 422 (no file, malformed); dest is removed then.
    """
    content_type, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"send multipart/form-data with the archive in the field {file_field!r} (curl -F {file_field}=@data.zip)",
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + FORM_OVERHEAD_BYTES:
        raise _too_large(max_bytes)
    reader = _FormReader(file_field)
    parser = MultipartParser(boundary, reader.callbacks())  # type: ignore[arg-type]
    dest.parent.mkdir(parents=True, exist_ok=True)
    sink: IO[bytes] = await run_in_threadpool(dest.open, "wb")
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if reader.error is not None:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, reader.error)
            if reader.form.size > max_bytes:
                raise _too_large(max_bytes)
            if reader.pending:
                data, reader.pending = b"".join(reader.pending), []
                reader.form.digest.update(data)
                await run_in_threadpool(sink.write, data)
        parser.finalize()
        if reader.form.filename is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"no file in the form; send the archive as {file_field!r}"
            )
    except MultipartParseError as err:
        sink.close()
        dest.unlink(missing_ok=True)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"malformed multipart body: {err}") from err
    except BaseException:
        sink.close()
        dest.unlink(missing_ok=True)
        raise
    await run_in_threadpool(sink.close)
    return reader.form


def check_zip(path: Path, settings: Settings) -> int:
    """Reject an archive that is not a zip or would unpack unsafely (413/422); return its number of files.

    Reads only the central directory: member count vs max_files, declared sizes vs max_uncompressed_bytes,
    absolute or '..' paths, symlinks and encrypted members.
    """
    unprocessable = status.HTTP_422_UNPROCESSABLE_CONTENT
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        raise HTTPException(
            unprocessable, f"the upload is not a zip file ({err}); upload a .zip of images and annotations"
        ) from err
    except UnicodeDecodeError as err:
        raise HTTPException(unprocessable, BAD_NAME_ENCODING) from err
    if len(members) > settings.max_files:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"the zip holds {len(members)} entries, more than the limit of {settings.max_files} (EFFDET_MAX_FILES)",
        )
    for info in members:
        problem = _member_problem(info)
        if problem:
            raise HTTPException(unprocessable, problem)
    declared = sum(info.file_size for info in members)
    if declared > settings.max_uncompressed_bytes:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"the zip unpacks to {declared} bytes, more than the limit of {settings.max_uncompressed_bytes} "
            "(EFFDET_MAX_UNCOMPRESSED_BYTES); upload less data",
        )
    files = sum(1 for info in members if not info.is_dir() and not _is_debris(info.filename))
    if files == 0:
        raise HTTPException(
            unprocessable,
            "the zip is empty (folders, hidden files or __MACOSX/ only); put the images and annotations in it",
        )
    return files


def _is_debris(name: str) -> bool:
    """Whether an entry is one the worker skips: in `__MACOSX/`, or hidden (a part starting with '.')."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    return bool(parts) and (parts[0] == "__MACOSX" or any(part.startswith(".") for part in parts))


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why one zip entry may not be unpacked, or None."""
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        return f"the zip holds an absolute path {info.filename!r}; zip the folder's contents with relative paths"
    if ".." in path.parts:
        return f"the zip holds a path leaving its folder {info.filename!r}; remove it"
    if stat.S_ISLNK(info.external_attr >> 16):
        return f"the zip holds a symbolic link {info.filename!r}; zip the files themselves (zip without -y)"
    if info.flag_bits & 0x1:
        return f"{info.filename!r} is encrypted; upload a zip without a password"
    return None
