"""What every reader shares: walking a dataset tree, finding the image an annotation names, wording problems."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import TypeVar

from PIL import Image

from effdet.data.records import IMAGE_EXTENSIONS, Problem, Split, error, warning

IGNORED_DIRS = frozenset({"__MACOSX"})
"""Folders that archivers add and that never hold a dataset (macOS resource forks)."""

IMAGE_DIRS = ("images", "JPEGImages", "Images", "imgs")
"""Folder names that hold a dataset's images, searched beside an annotation's folder and at the root."""

MASK_DIRS = frozenset({"SegmentationClass", "SegmentationObject"})
"""Pascal VOC's folders of mask PNGs: never images to train on."""

CLASS_MASK_DIR = "SegmentationClass"
"""The one of MASK_DIRS whose PNGs give each pixel's class (SegmentationObject's give instance ids)."""

_Key = TypeVar("_Key")

_SPLIT_WORDS = {
    "train": Split.TRAIN,
    "training": Split.TRAIN,
    "val": Split.VAL,
    "valid": Split.VAL,
    "validation": Split.VAL,
    "dev": Split.VAL,
    "test": Split.TEST,
    "testing": Split.TEST,
}


def iter_files(root: Path) -> Iterator[Path]:
    """Every file under root, one at a time, in sorted order (the order of `sorted(walk_files(root))`: a folder's
    entries by name, a sub-folder's files where its name sorts); hidden files and folders and `__MACOSX/` are
    skipped (archive debris). Only one folder's names are held at a time, so a huge set is never listed whole."""
    folders, files = [], []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                if entry.name not in IGNORED_DIRS:
                    folders.append(entry.name)
            else:
                files.append(entry.name)
    subfolders = set(folders)
    for name in sorted(folders + files):
        if name in subfolders:
            yield from iter_files(root / name)
        else:
            yield root / name


def walk_files(root: Path) -> list[Path]:
    """Every file under root, sorted, as a list (see iter_files)."""
    return list(iter_files(root))


def relative_name(path: Path, root: Path) -> str:
    """The '/'-separated path of `path` relative to the dataset root, as problems and records name files."""
    return path.relative_to(root).as_posix()


def is_image(path: Path) -> bool:
    """Whether the file's extension is one a reader treats as an image."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def search_dirs(root: Path, annotation_dir: Path) -> list[Path]:
    """Where an annotation's image may be: beside it, at the root, or in an images folder near either."""
    dirs = [annotation_dir, root]
    for base in (annotation_dir, annotation_dir.parent, root):
        dirs.extend(base / name for name in IMAGE_DIRS)
    return list(dict.fromkeys(dirs))


def split_from_name(name: str) -> Split | None:
    """The split a file name announces ('instances_train2017' -> train, 'val.json' -> val), if any."""
    words = re.split(r"[^a-z]+", name.lower())
    return next((_SPLIT_WORDS[word] for word in words if word in _SPLIT_WORDS), None)


def announced_splits(names: Mapping[_Key, Iterable[str]]) -> dict[_Key, Split | None]:
    """The split each item's names announce (file stem, folders), kept only when two or more splits appear.

    A lone `train.json` or `images/train/` decides nothing: the whole dataset would be train and nothing val.
    """
    found = {
        key: next((split for word in words if (split := split_from_name(word)) is not None), None)
        for key, words in names.items()
    }
    return found if len(set(found.values()) - {None}) >= 2 else dict.fromkeys(found)


def parse_number(value: object) -> float | None:
    """A finite float from annotation text or a JSON number; None for anything else (strings in JSON included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        return None
    return number if math.isfinite(number) else None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header alone, without decoding; OSError when Pillow cannot read it."""
    try:
        with Image.open(path) as image:
            return image.size
    except (ValueError, Image.DecompressionBombError) as exc:
        raise OSError(str(exc)) from exc


class ImageIndex:
    """The dataset's image files, found by the path an annotation writes or, failing that, by name or stem."""

    def __init__(self, root: Path, files: Iterable[Path]) -> None:
        self.root = root
        self.images = [path for path in files if is_image(path) and path.parent.name not in MASK_DIRS]
        self._by_name: dict[str, list[Path]] = {}
        self._by_stem: dict[str, list[Path]] = {}
        for path in self.images:
            self._by_name.setdefault(path.name.lower(), []).append(path)
            self._by_stem.setdefault(path.stem.lower(), []).append(path)

    def find(self, name: str, dirs: Iterable[Path]) -> Path | None:
        """The image `name` refers to: under one of `dirs`, else the only image with that base name anywhere.

        Absolute paths, URLs ('gs://...') and names with '..' are matched by base name only, so a record
        never points outside the dataset root.
        """
        written = name.strip().replace("\\", "/")
        if not written:
            return None
        relative = PurePosixPath(written)
        if "://" not in written and not relative.is_absolute() and ".." not in relative.parts:
            for folder in dirs:
                candidate = folder / relative
                if candidate.is_file():
                    return candidate
        matches = self._by_name.get(relative.name.lower(), [])
        return matches[0] if len(matches) == 1 else None

    def find_by_stem(self, stem: str, dirs: Iterable[Path]) -> Path | None:
        """An image whose name without extension is `stem`: preferably in one of `dirs`, else the only one."""
        matches = self._by_stem.get(stem.lower(), [])
        for folder in dirs:
            for path in matches:
                if path.parent == folder:
                    return path
        return matches[0] if len(matches) == 1 else None

    def unannotated(self, annotated: Iterable[Path], what: str) -> list[Problem]:
        """A warning for each image that no annotation names; `what` says which annotation would (for the fix)."""
        seen = set(annotated)
        return [
            warning(
                relative_name(path, self.root),
                "unannotated_image",
                f"no annotation names this image, so it is left out; add {what} for it or remove it",
            )
            for path in self.images
            if path not in seen
        ]


def no_annotation_files(kind: str) -> Problem:
    """The error for a dataset where a reader found none of its annotation files."""
    return error(".", "no_annotation_files", f"no {kind} found under the dataset root; check the format chosen")
