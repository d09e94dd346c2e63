"""`effdet synth --masks`: plate polygons for a segmentation set, in the one layout that can carry them."""

import json
from pathlib import Path

from typer.testing import CliRunner

from effdet.cli import app

runner = CliRunner()


def test_synth_masks_writes_coco_polygons(tmp_path: Path) -> None:
    output = tmp_path / "plates"
    result = runner.invoke(
        app, ["synth", "--output", str(output), "--num-images", "2", "--format", "coco", "--size", "96x64", "--masks"]
    )
    assert result.exit_code == 0, result.output
    assert "2 images (coco, with masks)" in result.output
    annotations = json.loads((output / "annotations.json").read_text())["annotations"]
    assert annotations
    assert all(len(annotation["segmentation"][0]) == 8 for annotation in annotations)


def test_synth_masks_refuses_the_voc_layout(tmp_path: Path) -> None:
    result = runner.invoke(app, ["synth", "--output", str(tmp_path / "plates"), "--format", "voc", "--masks"])
    assert result.exit_code == 2
    assert "masks are written as COCO polygons; use format 'coco'" in result.output
    assert not (tmp_path / "plates").exists()
