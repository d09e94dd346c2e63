"""A small real dataset that spells its one class two ways: the first raccoon photos with their VOC annotations,
every tenth image's boxes labelled with another spelling (as a licence-plate set labelled `licence plate` on
most boxes and `lp` on a few), zipped under one top folder."""

from __future__ import annotations

import zipfile
from pathlib import Path

RACCOON = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "raccoon"

IMAGES = 20
RESPELLED = (10, 20)
"""The images whose boxes are labelled with the other spelling (raccoon-10 and raccoon-20, one box each)."""


def respelled_raccoon_zip(target: Path, spelling: str = "Raccoon", images: int = IMAGES) -> Path:
    """Zip raccoon-1..raccoon-<images> (images/ + annotations/ under raccoon/) to target, the boxes of the
    RESPELLED images labelled `spelling` instead of `raccoon`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w") as archive:
        for number in range(1, images + 1):
            stem = f"raccoon-{number}"
            archive.write(RACCOON / "images" / f"{stem}.jpg", f"raccoon/images/{stem}.jpg")
            xml = (RACCOON / "annotations" / f"{stem}.xml").read_text()
            if number in RESPELLED:
                xml = xml.replace("<name>raccoon</name>", f"<name>{spelling}</name>")
            archive.writestr(f"raccoon/annotations/{stem}.xml", xml)
    return target
