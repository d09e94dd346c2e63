"""A small real dataset for the image-index and gallery tests: raccoon photos with their VOC annotations, zipped
under one top folder, with one bad box and one image whose only box is bad (so it is dropped)."""

from __future__ import annotations

import zipfile
from pathlib import Path

RACCOON = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "raccoon"

GALLERY_IMAGES = (1, 2, 3, 4, 5, 6)
BAD_BOX_IMAGE = "images/raccoon-1.jpg"
"""Keeps its own box and gains one far outside the image (box_outside_image, dropped)."""
DROPPED_IMAGE = "images/raccoon-2.jpg"
"""Its only box becomes degenerate (degenerate_box), so the image is dropped (no_valid_boxes)."""
OUTSIDE_BOX = (
    "<object><name>raccoon</name><bndbox><xmin>5000</xmin><ymin>10</ymin><xmax>5100</xmax><ymax>90</ymax></bndbox>"
    "</object>"
)


def gallery_zip(target: Path, top: str = "raccoon") -> Path:
    """Zip raccoon-1..6 (images/ and annotations/) under `top`/, with the bad boxes above; returns target."""
    with zipfile.ZipFile(target, "w") as archive:
        for number in GALLERY_IMAGES:
            name = f"raccoon-{number}"
            xml = (RACCOON / "annotations" / f"{name}.xml").read_text()
            if f"images/{name}.jpg" == BAD_BOX_IMAGE:
                xml = xml.replace("</annotation>", OUTSIDE_BOX + "</annotation>")
            if f"images/{name}.jpg" == DROPPED_IMAGE:
                start, end = xml.index("<xmax>") + len("<xmax>"), xml.index("</xmax>")
                xml = xml[:start] + "1" + xml[end:]
            archive.write(RACCOON / "images" / f"{name}.jpg", f"{top}/images/{name}.jpg")
            archive.writestr(f"{top}/annotations/{name}.xml", xml)
    return target
