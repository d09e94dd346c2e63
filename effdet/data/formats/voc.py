"""Pascal VOC / labelImg XML reader: one `<annotation>` file per image with pixel-corner boxes.

XML is parsed with defusedxml and DTDs are refused, so entity-expansion ("billion laughs") and external-entity
files become problems instead of eating memory or reading the server's files. An image's per-pixel classes are
VOC2012's `SegmentationClass/<image stem>.png`, in the folder that holds Annotations/ or JPEGImages/ (validation
reads it). A CVAT / Datumaro `labelmap.txt` beside SegmentationClass/ (or at the root) names the dataset's own classes
by colour; its PNGs are then read through it (ReadResult.class_colours) instead of VOC's 20-class palette.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import parse

from effdet.data.formats.common import (
    CLASS_MASK_DIR,
    ImageIndex,
    no_annotation_files,
    parse_number,
    relative_name,
    search_dirs,
    walk_files,
)
from effdet.data.formats.labelmap import LABELMAP_FILE, read_labelmap
from effdet.data.masks import ClassColours
from effdet.data.read_result import ReadResult
from effdet.data.records import Box, Problem, Record, error, warning

FORMAT = "voc"
_CORNERS = ("xmin", "ymin", "xmax", "ymax")


def read_voc(root: Path) -> ReadResult:
    """Read every VOC XML under root; broken files and objects become problems, never exceptions."""
    root = root.absolute()
    files = walk_files(root)
    index = ImageIndex(root, files)
    result = ReadResult(format=FORMAT)
    xml_files = [path for path in files if path.suffix.lower() == ".xml"]
    if not xml_files:
        result.problems.append(no_annotation_files("Pascal VOC .xml files"))
    class_pngs = {
        (path.parent.parent, path.stem): path
        for path in files
        if path.parent.name == CLASS_MASK_DIR and path.suffix.lower() == ".png"
    }
    result.class_colours = _class_colours({png.parent for png in class_pngs.values()}, root, result.problems)
    annotated: dict[Path, str] = {}
    for xml_path in xml_files:
        record = _read_xml(xml_path, root, index, result.problems)
        if record is None:
            continue
        record.class_png = _class_png(class_pngs, xml_path, record.image_path)
        if record.image_path in annotated:
            result.problems.append(
                warning(
                    record.annotation_file,
                    "duplicate_annotation",
                    f"{record.filename} is already annotated by {annotated[record.image_path]}; "
                    "this file is ignored, merge the two or delete one",
                )
            )
            continue
        annotated[record.image_path] = record.annotation_file
        result.records.append(record)
    result.problems.extend(index.unannotated(annotated, "a VOC .xml file"))
    return result


def _read_xml(xml_path: Path, root: Path, index: ImageIndex, problems: list[Problem]) -> Record | None:
    """One XML file as a record, or None (with a problem) when it cannot be used at all."""
    file = relative_name(xml_path, root)
    try:
        annotation = parse(xml_path, forbid_dtd=True).getroot()
    except DefusedXmlException as exc:
        problems.append(error(file, "unsafe_xml", f"XML with a DTD or entities is refused ({exc}); remove them"))
        return None
    except ParseError as exc:
        problems.append(error(file, "malformed_xml", f"not well-formed XML ({exc}); fix or remove the file"))
        return None
    except OSError as exc:
        problems.append(error(file, "unreadable_file", f"cannot read the file: {exc}"))
        return None
    if annotation is None or annotation.tag != "annotation":
        tag = "nothing" if annotation is None else f"<{annotation.tag}>"
        problems.append(warning(file, "not_voc_xml", f"the root element is {tag}, not <annotation>; ignored"))
        return None

    image = _find_image(annotation, xml_path, root, index)
    if image is None:
        written = (annotation.findtext("filename") or "").strip()
        problems.append(
            error(
                file,
                "missing_image",
                f"no image found for <filename>{written}</filename> or named '{xml_path.stem}.*' beside the XML, "
                "at the root or in images/ or JPEGImages/; add the image or remove the XML",
            )
        )
        return None

    width = _size(annotation, "width", file, problems)
    height = _size(annotation, "height", file, problems)
    objects = [
        _read_object(element, file, index, problems) for index, element in enumerate(annotation.findall("object"))
    ]
    boxes = [box for box in objects if box is not None]
    return Record(
        image_path=image,
        filename=relative_name(image, root),
        annotation_file=file,
        width=width,
        height=height,
        boxes=boxes,
        dropped_boxes=len(objects) - len(boxes),
    )


def _class_png(class_pngs: dict[tuple[Path, str], Path], xml_path: Path, image: Path) -> Path | None:
    """The image's SegmentationClass PNG: named like the image, beside the XML's folder or the image's."""
    for folder in (xml_path.parent.parent, image.parent.parent):
        png = class_pngs.get((folder, image.stem))
        if png is not None:
            return png
    return None


def _class_colours(mask_dirs: set[Path], root: Path, problems: list[Problem]) -> dict[Path, ClassColours]:
    """SegmentationClass folder -> the colours of the labelmap.txt beside it, else at the root; each file read once."""
    read: dict[Path, ClassColours] = {}
    colours = {}
    for mask_dir in sorted(mask_dirs):
        labelmap = next((p for p in (mask_dir.parent / LABELMAP_FILE, root / LABELMAP_FILE) if p.is_file()), None)
        if labelmap is None:
            continue
        if labelmap not in read:
            read[labelmap] = read_labelmap(labelmap, relative_name(labelmap, root), problems)
        colours[mask_dir] = read[labelmap]
    return colours


def _find_image(annotation: Element, xml_path: Path, root: Path, index: ImageIndex) -> Path | None:
    """The image `<filename>` names, else one named like the XML file."""
    dirs = search_dirs(root, xml_path.parent)
    written = (annotation.findtext("filename") or "").strip()
    image = index.find(written, dirs) if written else None
    return image or index.find_by_stem(xml_path.stem, dirs)


def _size(annotation: Element, key: str, file: str, problems: list[Problem]) -> int | None:
    """The declared `<size><width|height>`, or None when absent or unusable (0 is labelImg's 'unknown')."""
    text = annotation.findtext(f"size/{key}")
    if text is None:
        return None
    value = parse_number(text)
    if value is None or value < 0 or value != int(value):
        problems.append(warning(file, "invalid_size", f"<size><{key}> is {text.strip()!r}, not a pixel count"))
        return None
    return int(value) or None


def _read_object(element: Element, file: str, object_index: int, problems: list[Problem]) -> Box | None:
    """One `<object>` as a box, or None with a problem when its name or corners are missing or not numbers."""
    label = (element.findtext("name") or "").strip()
    if not label:
        problems.append(error(file, "missing_label", "the object has no <name>; add its class name", object_index))
        return None
    bndbox = element.find("bndbox")
    if bndbox is None:
        problems.append(error(file, "missing_box", f"object '{label}' has no <bndbox>; add one", object_index))
        return None
    corners: list[float] = []
    for key in _CORNERS:
        text = bndbox.findtext(key)
        value = parse_number(text) if text is not None else None
        if value is None:
            shown = "missing" if text is None else f"{text.strip()!r}, not a number"
            problems.append(
                error(file, "invalid_coordinate", f"object '{label}': <{key}> is {shown}; fix it", object_index)
            )
            return None
        corners.append(value)
    xmin, ymin, xmax, ymax = corners
    return Box(
        xmin=xmin,
        ymin=ymin,
        xmax=xmax,
        ymax=ymax,
        label=label,
        difficult=_flag(element.findtext("difficult")),
        truncated=_flag(element.findtext("truncated")),
    )


def _flag(text: str | None) -> bool:
    """A VOC 0/1 flag ('1', 'true' also accepted); anything else is false."""
    if text is None:
        return False
    value = text.strip().lower()
    number = parse_number(value)
    return value in ("true", "yes") or (number is not None and number != 0)
