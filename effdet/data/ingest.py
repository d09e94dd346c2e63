"""From an uploaded dataset to records: unpack the zip safely, tell its annotation format, run that reader."""

from __future__ import annotations

import json
import stat
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath

import yaml
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from effdet.data.formats.ccpd import parse_ccpd_name, read_ccpd
from effdet.data.formats.coco import read_coco
from effdet.data.formats.common import is_image, iter_files
from effdet.data.formats.csv import read_csv
from effdet.data.formats.tfrecord import TFRECORD_SUFFIXES, read_tfrecords
from effdet.data.formats.voc import read_voc
from effdet.data.formats.yolo import NAME_FILES, read_yolo
from effdet.data.read_result import ReadResult


class DatasetFormat(StrEnum):
    """The annotation formats an upload may be in."""

    COCO = "coco"
    VOC = "voc"
    YOLO = "yolo"
    CSV = "csv"
    CCPD = "ccpd"
    TFRECORD = "tfrecord"


FORMAT_SIGNS = {
    DatasetFormat.COCO: "a .json file with 'images', 'annotations' and 'categories'",
    DatasetFormat.VOC: "Pascal VOC .xml files with an <annotation> root",
    DatasetFormat.YOLO: ".txt label files plus classes.txt or a data.yaml with 'names'",
    DatasetFormat.CSV: "a .csv with filename,xmin,ymin,xmax,ymax,class or TFLite Model Maker rows",
    DatasetFormat.CCPD: "images named like CCPD (025-95_113-154&383_386&473-....jpg)",
    DatasetFormat.TFRECORD: ".tfrecord, .record or .tfrec files",
}
"""What detect_format looks for, per format (also the text of its error)."""

_READERS: dict[DatasetFormat, Callable[[Path], ReadResult]] = {
    DatasetFormat.COCO: read_coco,
    DatasetFormat.VOC: read_voc,
    DatasetFormat.YOLO: read_yolo,
    DatasetFormat.CSV: read_csv,
    DatasetFormat.CCPD: read_ccpd,
}
_XML_FILES_PROBED = 20
_COPY_CHUNK = 1 << 20


class DatasetFormatError(ValueError):
    """The dataset's format cannot be told, or the format asked for does not exist."""


class UnsafeArchiveError(ValueError):
    """The zip cannot be unpacked safely (paths leaving the folder, too many files or bytes, damage)."""


@dataclass
class _Survey:
    """What detect_format needs of a dataset's files, gathered in one streamed pass (no full listing held)."""

    suffixes: Counter[str] = field(default_factory=Counter)
    json_files: list[Path] = field(default_factory=list)
    xml_probes: list[Path] = field(default_factory=list)
    label_txt: bool = False
    name_lists: list[Path] = field(default_factory=list)
    images: int = 0
    ccpd_named: int = 0

    def add(self, path: Path) -> None:
        suffix = path.suffix.lower()
        self.suffixes[suffix] += 1
        if suffix == ".json":
            self.json_files.append(path)
        elif suffix == ".xml" and len(self.xml_probes) < _XML_FILES_PROBED:
            self.xml_probes.append(path)
        if path.name.lower() in NAME_FILES or suffix in (".names", ".yaml", ".yml"):
            self.name_lists.append(path)
        elif suffix == ".txt":
            self.label_txt = True
        if is_image(path):
            self.images += 1
            self.ccpd_named += parse_ccpd_name(path.name) is not None

    def is_yolo(self) -> bool:
        """Whether there are .txt label files and a class-name list (classes.txt, *.names, or YAML with names)."""
        return self.label_txt and any(
            path.suffix.lower() not in (".yaml", ".yml") or _yaml_has_names(path) for path in self.name_lists
        )


def detect_format(root: Path) -> DatasetFormat:
    """The annotation format of the dataset under root, by its files; DatasetFormatError listing what was found."""
    survey = _Survey()
    for path in iter_files(root):
        survey.add(path)
    suffixes = survey.suffixes
    if suffixes.keys() & TFRECORD_SUFFIXES:
        return DatasetFormat.TFRECORD
    if any(_is_coco_json(path) for path in survey.json_files):
        return DatasetFormat.COCO
    if any(_is_voc_xml(path) for path in survey.xml_probes):
        return DatasetFormat.VOC
    if survey.is_yolo():
        return DatasetFormat.YOLO
    if suffixes[".csv"]:
        return DatasetFormat.CSV
    if survey.images and survey.ccpd_named * 2 > survey.images:
        return DatasetFormat.CCPD
    found = ", ".join(f"{count} {suffix or 'no-extension'}" for suffix, count in suffixes.most_common(8)) or "no files"
    signs = "; ".join(f"{name.value}: {sign}" for name, sign in FORMAT_SIGNS.items())
    nested = " A zip inside the zip is not unpacked: upload the inner zip itself." if suffixes[".zip"] else ""
    raise DatasetFormatError(
        f"cannot tell the annotation format of the dataset: found {found}.{nested} Supported formats and what "
        f"marks them: {signs}. Add the annotations, or name the format if they are there."
    )


def read_dataset(
    root: Path, format: str = "auto", scratch: Path | None = None, label_map: Mapping[int, str] | None = None
) -> ReadResult:
    """Records and problems of the dataset under root, in `format` or the detected one ('auto').

    TFRecords need `scratch`, a folder the caller removes, for the images taken out of them; `label_map`
    names their class ids that come without text.
    """
    if format == "auto":
        chosen = detect_format(root)
    else:
        try:
            chosen = DatasetFormat(format)
        except ValueError:
            choices = ", ".join(["auto", *(value.value for value in DatasetFormat)])
            raise DatasetFormatError(f"unknown dataset format {format!r}; use one of {choices}") from None
    if chosen is DatasetFormat.TFRECORD:
        if scratch is None:
            raise ValueError("reading TFRecords needs a scratch folder for their images; pass scratch=")
        return read_tfrecords(root, scratch, label_map)
    return _READERS[chosen](root)


def _is_coco_json(path: Path) -> bool:
    """Whether the file is a JSON object with 'images' and 'annotations'."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "images" in data and "annotations" in data


def _is_voc_xml(path: Path) -> bool:
    """Whether the XML's root element is <annotation> (read safely, stopping at the first element)."""
    try:
        for _, element in iterparse(path, events=("start",), forbid_dtd=True):
            return bool(element.tag == "annotation")
    except (DefusedXmlException, SyntaxError, OSError):
        return False
    return False


def _yaml_has_names(path: Path) -> bool:
    """Whether the file is YAML with a `names:` key (a YOLO data.yaml)."""
    if path.suffix.lower() not in (".yaml", ".yml"):
        return False
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "names" in data


def extract_zip(zip_path: Path, dest: Path, max_files: int = 100_000, max_total_bytes: int = 20 * 2**30) -> Path:
    """Unpack an uploaded zip into dest and return the dataset root (its single top folder, if it has one).

    Refuses absolute paths, '..' and encrypted members and more than max_files files or max_total_bytes bytes
    (declared, then counted while writing); skips symlinks, `__MACOSX/` and dotfiles. Raises UnsafeArchiveError;
    on error, dest may hold part of the archive and the caller deletes it.
    """
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeArchiveError(f"{zip_path.name} is not a readable zip file ({exc}); upload a .zip") from exc
    except UnicodeDecodeError as exc:
        raise UnsafeArchiveError(
            f"{zip_path.name} marks its file names as UTF-8 but one is not valid UTF-8; re-create the zip"
        ) from exc
    with archive:
        members = _members(archive)
        if not members:
            raise UnsafeArchiveError(
                "the zip holds no files to unpack (only folders, hidden files or __MACOSX/); zip the dataset folder"
            )
        if len(members) > max_files:
            raise UnsafeArchiveError(f"the zip holds {len(members)} files, more than the limit of {max_files}")
        declared = sum(info.file_size for info, _ in members)
        if declared > max_total_bytes:
            raise UnsafeArchiveError(
                f"the zip unpacks to {declared} bytes, more than the limit of {max_total_bytes}; upload less data"
            )
        written = 0
        for info, parts in members:
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as source, target.open("wb") as sink:
                    while chunk := source.read(_COPY_CHUNK):
                        written += len(chunk)
                        if written > max_total_bytes:
                            raise UnsafeArchiveError(
                                f"the zip unpacks to more than {max_total_bytes} bytes (its header said {declared})"
                            )
                        sink.write(chunk)
            except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
                raise UnsafeArchiveError(f"cannot unpack {info.filename!r}: {exc}; the zip is damaged") from exc
    return dest.joinpath(*members[0][1][: _top_folders(members)])


def root_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The files extract_zip unpacks, by their '/'-separated path under the dataset root it returns (the names
    records and problems use), so one image can be read from the zip without unpacking it."""
    members = _members(archive)
    strip = _top_folders(members)
    return {"/".join(parts[strip:]): info for info, parts in members}


def _top_folders(members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]]) -> int:
    """How many leading path parts the dataset root skips: 1 when every file sits in one top folder, else 0."""
    tops = {parts[0] for _, parts in members}
    return 1 if len(tops) == 1 and all(len(parts) > 1 for _, parts in members) else 0


def _members(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """The regular files to unpack with their safe path parts; raises on a path that leaves the folder."""
    members = []
    for info in archive.infolist():
        name = info.filename.replace("\\", "/")
        path = PurePosixPath(name)
        if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
            raise UnsafeArchiveError(f"the zip holds an absolute path {info.filename!r}; zip the folder's contents")
        if ".." in path.parts:
            raise UnsafeArchiveError(f"the zip holds a path leaving its folder {info.filename!r}; remove it")
        mode = info.external_attr >> 16
        if info.is_dir() or stat.S_ISLNK(mode) or stat.S_ISDIR(mode):
            continue
        parts = tuple(part for part in path.parts if part not in ("", "."))
        if not parts or parts[0] == "__MACOSX" or any(part.startswith(".") for part in parts):
            continue
        if info.flag_bits & 0x1:
            raise UnsafeArchiveError(f"{info.filename!r} is encrypted; upload a zip without a password")
        members.append((info, parts))
    return members
