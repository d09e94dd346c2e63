"""The `effdet` command line, run as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from effdet.cli import app

runner = CliRunner()


def test_params_prints_one_json_line_from_the_installed_command() -> None:
    command = Path(sys.executable).parent / "effdet"
    assert command.exists(), "the effdet console script is not installed beside this Python"
    result = subprocess.run(
        [command, "params", "efficientdet-d0", "--hparams", "image_size=256x128"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {"model": "efficientdet-d0", "params": 3_880_067, "image_size": [128, 256]}


def test_variables_prints_official_paths_and_shapes() -> None:
    result = runner.invoke(app, ["variables", "efficientdet-d0", "--hparams", "image_size=128"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "efficientnet-b0/stem/conv2d/kernel [3,3,3,32]"
    assert "fpn_cells/cell_0/fnode1/resample_0_2_6/conv2d/kernel [1,1,320,64]" in lines
    assert "class_net/class-predict/bias [810]" in lines


def test_config_prints_yaml_with_overrides() -> None:
    result = runner.invoke(app, ["config", "efficientdet-d0", "--hparams", "num_classes=1"])
    assert result.exit_code == 0
    assert "num_classes: 1\n" in result.output
    assert "image_size: 512\n" in result.output


def test_bad_hparams_exit_2_with_every_problem() -> None:
    result = runner.invoke(app, ["params", "efficientdet-d0", "--hparams", "num_clases=1,image_size=500"])
    assert result.exit_code == 2
    assert "did you mean 'num_classes'?" in result.output
    assert "use 384 or 512" in result.output
