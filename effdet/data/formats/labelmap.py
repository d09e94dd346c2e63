"""CVAT / Datumaro `labelmap.txt`: a VOC dataset's own classes and the colours its SegmentationClass PNGs paint them in.

CVAT's "Segmentation mask 1.1" export (and Datumaro's VOC export) writes a comment `# label:color_rgb:parts:actions`,
then one line per class, `background:0,0,0::`, `plate:250,50,83::`; parts and actions are not used here. A line
that cannot be read is reported (`invalid_labelmap`, with its line number) and left out, never raised. As in
Datumaro, a file that gives no colour at all paints its i-th class in VOC's colour i.
"""

from __future__ import annotations

from pathlib import Path

from effdet.data.masks import RGB, ClassColours, voc_colormap
from effdet.data.records import Problem, error

LABELMAP_FILE = "labelmap.txt"
_EXAMPLE = "write it like 'plate:250,50,83::' (name:red,green,blue::)"


def read_labelmap(path: Path, file: str, problems: list[Problem]) -> ClassColours:
    """The classes and colours of the labelmap.txt at `path` (named `file` in problems); bad lines become problems."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(error(file, "invalid_labelmap", f"cannot read it as UTF-8 text ({exc}); save it again"))
        return ClassColours(())
    classes: list[tuple[str, RGB | None]] = []
    lines_of: dict[str | RGB, int] = {}  # a name or colour -> the line that gave it
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parsed = _parse_line(line, lines_of)
        if isinstance(parsed, str):
            problems.append(error(file, "invalid_labelmap", f"line {number} {parsed}; the line is left out"))
            continue
        name, colour = parsed
        lines_of[name] = number
        if colour is not None:
            lines_of[colour] = number
        classes.append(parsed)
    if classes and all(colour is None for _, colour in classes):
        voc = voc_colormap().tolist()
        return ClassColours(tuple((name, (r, g, b)) for (name, _), (r, g, b) in zip(classes, voc, strict=False)))
    return ClassColours(tuple(classes))


def _parse_line(line: str, lines_of: dict[str | RGB, int]) -> tuple[str, RGB | None] | str:
    """One class line as (name, colour or None), or what is wrong with it (to follow 'line N')."""
    name, _, rest = line.partition(":")
    name = name.strip()
    written = rest.partition(":")[0].strip()
    if not name:
        return f"{line!r} has no class name before the first ':'; {_EXAMPLE}"
    if name in lines_of:
        return f"names class {name!r} again (first on line {lines_of[name]}); keep one line per class"
    if not written:
        return name, None
    channels = [part.strip() for part in written.split(",")]
    if len(channels) != 3 or not all(part.isdigit() and int(part) <= 255 for part in channels):
        return f"gives class {name!r} the colour {written!r}, not three numbers 0..255; {_EXAMPLE}"
    colour = (int(channels[0]), int(channels[1]), int(channels[2]))
    if colour in lines_of:
        return (
            f"gives class {name!r} the colour {written}, which line {lines_of[colour]} already gives another class; "
            "give each class its own colour"
        )
    return name, colour
