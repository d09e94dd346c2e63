"""Reading PyTorch .pth state dicts without PyTorch, and mapping EfficientNet-Lite weights to our paths.

The files here are written by a stand-in for `torch.save` (fake `torch` modules in sys.modules, the same
pickle structure), so these tests need neither PyTorch nor a download.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from effdet.checkpoints import load_pretrained
from effdet.config import get_config
from effdet.model import build_model, variable_shapes
from effdet.torch_import import (
    LEGACY_MAGIC,
    TorchImportError,
    import_backbone,
    map_state_dict,
    read_state_dict,
)


class _Storage:
    def __init__(self, key: str, array: np.ndarray) -> None:
        self.key, self.array = key, array


def write_pth(path: Path, state: dict[str, np.ndarray], legacy: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Write `state` as torch.save would (legacy stream or zip), float32 tensors and int64 scalars."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args: object) -> None:
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    storage_types = {}
    for name in ("FloatStorage", "LongStorage"):
        storage_types[name] = type(name, (), {"__module__": "torch"})
        setattr(torch, name, storage_types[name])
    torch._utils = utils  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)

    class Tensor:
        def __init__(self, storage: _Storage, shape: tuple[int, ...]) -> None:
            self.storage, self.shape = storage, shape

        def __reduce__(self) -> tuple[object, ...]:
            strides = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
            return (_rebuild_tensor_v2, (self.storage, 0, self.shape, strides, False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            if isinstance(obj, _Storage):
                kind = "LongStorage" if obj.array.dtype == np.int64 else "FloatStorage"
                return ("storage", storage_types[kind], obj.key, "cpu", obj.array.size)
            return None

    storages = [_Storage(str(i), np.ascontiguousarray(a)) for i, a in enumerate(state.values())]
    tensors = collections.OrderedDict(
        (name, Tensor(s, tuple(a.shape))) for (name, a), s in zip(state.items(), storages, strict=True)
    )
    body = io.BytesIO()
    Pickler(body, protocol=2).dump(tensors)
    if legacy:
        with path.open("wb") as f:
            for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
                pickle.dump(header, f, protocol=2)
            f.write(body.getvalue())
            pickle.dump([s.key for s in storages], f, protocol=2)
            for s in storages:
                f.write(struct.pack("<q", s.array.size) + s.array.tobytes())
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", body.getvalue())
            for s in storages:
                archive.writestr(f"archive/data/{s.key}", s.array.tobytes())


def torch_lite_state(backbone: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A lukemelas-style state dict with the shapes of our `backbone` variables (plus the classifier)."""
    model = build_model(get_config(backbone.replace("efficientnet", "efficientdet")))
    state: dict[str, np.ndarray] = {}
    bn = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
    for path, shape in variable_shapes(model):
        parts = path.split("/")
        if parts[0] != backbone:
            continue
        scope, layer, var = parts[1], parts[2], parts[3]
        if scope == "stem":
            module = "_conv_stem" if layer == "conv2d" else "_bn0"
        else:
            block = int(scope.split("_")[1])
            expands = any(p.startswith(f"{backbone}/{scope}/conv2d_1/") for p, _ in variable_shapes(model))
            names = (
                {"conv2d": "_expand_conv", "conv2d_1": "_project_conv", "depthwise_conv2d": "_depthwise_conv"}
                if expands
                else {"conv2d": "_project_conv", "depthwise_conv2d": "_depthwise_conv"}
            )
            bns = ["_bn0", "_bn1", "_bn2"] if expands else ["_bn1", "_bn2"]
            if layer.startswith("tpu_batch_normalization"):
                index = int(layer.rsplit("_", 1)[1]) if layer[-1].isdigit() else 0
                module = f"_blocks.{block}.{bns[index]}"
            else:
                module = f"_blocks.{block}.{names[layer]}"
        if var in bn:
            value = rng.uniform(0.5, 1.5, shape).astype(np.float32)
            state[f"{module}.{bn[var]}"] = value
            if var == "moving_variance":
                state[f"{module}.num_batches_tracked"] = np.array(7, dtype=np.int64)
        elif var == "depthwise_kernel":
            state[f"{module}.weight"] = rng.normal(0, 0.3, (shape[2], 1, shape[0], shape[1])).astype(np.float32)
        else:
            state[f"{module}.weight"] = rng.normal(0, 0.3, (shape[3], shape[2], shape[0], shape[1])).astype(np.float32)
    state["_conv_head.weight"] = rng.normal(0, 0.1, (1280, 320, 1, 1)).astype(np.float32)
    state["_fc.bias"] = np.zeros(1000, np.float32)
    return state


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_read_state_dict_round_trips_without_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, legacy: bool
) -> None:
    state: dict[str, np.ndarray] = {
        "a.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
        "a.num_batches_tracked": np.array(3, dtype=np.int64),
        "b": np.linspace(0, 1, 5, dtype=np.float32),
    }
    write_pth(tmp_path / "w.pth", state, legacy, monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")
    read = read_state_dict(tmp_path / "w.pth")
    assert list(read) == list(state)
    for name, value in state.items():
        np.testing.assert_array_equal(read[name], value)


def test_read_state_dict_refuses_globals_other_than_tensors(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(TorchImportError, match=r"os\.system is not allowed"):
        read_state_dict(path)


def test_map_state_dict_layouts_and_tf1_counters() -> None:
    rng = np.random.default_rng(0)
    state = {
        "_conv_stem.weight": rng.normal(size=(32, 3, 3, 3)),
        "_bn0.running_var": rng.normal(size=32),
        "_bn0.num_batches_tracked": np.array(1),
        "_blocks.0._depthwise_conv.weight": rng.normal(size=(32, 1, 3, 3)),
        "_blocks.0._bn1.weight": rng.normal(size=32),
        "_blocks.0._project_conv.weight": rng.normal(size=(16, 32, 1, 1)),
        "_blocks.0._bn2.bias": rng.normal(size=16),
        "_blocks.1._expand_conv.weight": rng.normal(size=(96, 16, 1, 1)),
        "_blocks.1._bn1.running_mean": rng.normal(size=96),
        "_blocks.1._project_conv.weight": rng.normal(size=(24, 96, 1, 1)),
        "_blocks.1._bn2.weight": rng.normal(size=24),
        "_fc.weight": rng.normal(size=(1000, 1280)),
    }
    mapped, unmapped = map_state_dict(state, "efficientnet-lite0")
    assert unmapped == ["_fc.weight"]
    assert sorted(mapped) == sorted(
        f"efficientnet-lite0/{p}"
        for p in (
            "stem/conv2d/kernel",
            "stem/tpu_batch_normalization/moving_variance",
            "blocks_0/depthwise_conv2d/depthwise_kernel",
            "blocks_0/tpu_batch_normalization/gamma",
            "blocks_0/conv2d/kernel",
            "blocks_0/tpu_batch_normalization_1/beta",
            "blocks_1/conv2d/kernel",
            "blocks_1/tpu_batch_normalization_1/moving_mean",
            "blocks_1/conv2d_1/kernel",
            "blocks_1/tpu_batch_normalization_2/gamma",
        )
    )
    stem = mapped["efficientnet-lite0/stem/conv2d/kernel"]
    assert stem.shape == (3, 3, 3, 32)
    assert stem[1, 2, 0, 5] == state["_conv_stem.weight"][5, 0, 1, 2]  # HWIO[h, w, i, o] = OIHW[o, i, h, w]
    depthwise = mapped["efficientnet-lite0/blocks_0/depthwise_conv2d/depthwise_kernel"]
    assert depthwise.shape == (3, 3, 32, 1)
    assert depthwise[2, 0, 7, 0] == state["_blocks.0._depthwise_conv.weight"][7, 0, 2, 0]


def test_import_backbone_loads_every_backbone_variable_and_computes_the_torch_stem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = torch_lite_state("efficientnet-lite0", np.random.default_rng(1))
    write_pth(tmp_path / "lite0.pth", state, legacy=True, monkeypatch=monkeypatch)
    report = import_backbone(tmp_path / "lite0.pth", "efficientdet-lite0", tmp_path / "ckpt")
    assert report.mapped == 240
    assert report.unmapped == ["_conv_head.weight", "_fc.bias"]

    model = build_model(get_config("efficientdet-lite0", "num_classes=3"))
    load = load_pretrained(model, tmp_path / "ckpt")
    backbone = [v for v in model.variables if v.path.startswith("efficientnet-lite0/")]
    assert load.loaded == len(backbone) == 240
    # The stem as PyTorch computes it (TF 'SAME' padding for a stride-2 3x3 conv on an even size: 0 before, 1 after).
    image = np.random.default_rng(2).normal(size=(1, 8, 8, 3)).astype(np.float32)
    padded = np.pad(image, ((0, 0), (0, 1), (0, 1), (0, 0)))
    weight = state["_conv_stem.weight"]
    conv = np.zeros((1, 4, 4, 32), np.float32)
    for y in range(4):
        for x in range(4):
            patch = padded[0, 2 * y : 2 * y + 3, 2 * x : 2 * x + 3, :]  # [kh, kw, in]
            conv[0, y, x] = np.einsum("hwi,oihw->o", patch, weight)
    scale = state["_bn0.weight"] / np.sqrt(state["_bn0.running_var"] + 1e-3)
    expected = np.clip((conv - state["_bn0.running_mean"]) * scale + state["_bn0.bias"], 0, 6)
    got = model.backbone.stem(tf.constant(image), training=False).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_import_backbone_rejects_a_file_for_another_backbone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = {"_conv_stem.weight": np.zeros((40, 3, 3, 3), np.float32)}
    write_pth(tmp_path / "other.pth", state, legacy=False, monkeypatch=monkeypatch)
    with pytest.raises(TorchImportError, match=r"stem/conv2d/kernel: file has \(3, 3, 3, 40\)") as err:
        import_backbone(tmp_path / "other.pth", "efficientdet-lite0", tmp_path / "ckpt")
    assert "not in the file" in str(err.value)
    assert not (tmp_path / "ckpt").exists()
