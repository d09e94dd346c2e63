"""CCPD licence-plate reader: the annotation is the image's file name, whose third '-' field is the plate's box.

A name such as `025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_22_27_27_33_16-37-15.jpg` holds
area, tilt, box `x1&y1_x2&y2` (left-up, right-bottom corner), four vertices, plate characters, brightness, blur.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from effdet.data.formats.common import is_image, iter_files, no_annotation_files, relative_name
from effdet.data.read_result import ReadResult
from effdet.data.records import Box, Record, error

FORMAT = "ccpd"
PLATE = "plate"
_BOX = re.compile(r"(\d+)&(\d+)_(\d+)&(\d+)")


def parse_ccpd_name(name: str) -> Box | None:
    """The plate box a CCPD file name encodes, or None when the name does not follow the CCPD pattern."""
    fields = PurePosixPath(name).stem.split("-")
    match = _BOX.fullmatch(fields[2]) if len(fields) >= 3 else None
    if match is None:
        return None
    xmin, ymin, xmax, ymax = (float(value) for value in match.groups())
    return Box(xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, label=PLATE)


def read_ccpd(root: Path) -> ReadResult:
    """One record per image under root with the plate box from its name; names that do not parse are problems."""
    root = root.absolute()
    result = ReadResult(format=FORMAT, label_names=[PLATE])
    images = 0
    for image in filter(is_image, iter_files(root)):  # streamed: a CCPD folder holds 200,000 images or more
        images += 1
        filename = relative_name(image, root)
        box = parse_ccpd_name(image.name)
        if box is None:
            message = (
                "the name is not a CCPD annotation: its third '-' field must be the box 'x1&y1_x2&y2', "
                "e.g. 025-95_113-154&383_386&473-...jpg; rename or remove the image"
            )
            result.problems.append(error(filename, "invalid_ccpd_name", message))
            continue
        result.records.append(Record(image_path=image, filename=filename, annotation_file=filename, boxes=[box]))
    if not images:
        result.problems.append(no_annotation_files("images with CCPD file names"))
    return result
