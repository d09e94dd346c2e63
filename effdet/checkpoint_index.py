"""What a checkpoint holds, read from its files without TensorFlow: every tensor's name, dtype and shape from the
`.index` table, and for object-based (TF2) checkpoints the object graph that names each tensor's variable.

The `.index` file is a LevelDB-format table (uncompressed blocks, prefix-compressed keys) mapping each tensor's
checkpoint key to a `BundleEntryProto`; an object-based checkpoint adds a string tensor
`_CHECKPOINTABLE_OBJECT_GRAPH` (a `TrackableObjectGraph` proto) whose serialized tensors carry the variable's
`full_name` and whose slot references tie an optimizer slot (such as a moving average) to its variable. The API
uses this to list and check checkpoints without building a model; effdet.checkpoints uses the same names to load.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_BYTES = 48
_BLOCK_TRAILER_BYTES = 5
_DT_STRING = 7


class CheckpointIndexError(ValueError):
    """The files are not a readable TensorFlow checkpoint; the message says what is wrong."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a checkpoint: where its bytes are and what it is."""

    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int


@dataclass(frozen=True)
class ObjectVariable:
    """A variable of an object-based checkpoint: its name when saved and the keys of its value and slots."""

    full_name: str
    key: str
    slots: dict[str, str] = field(default_factory=dict)
    """slot name (e.g. 'average', 'momentum') -> checkpoint key of the slot's value."""


@dataclass(frozen=True)
class CheckpointContents:
    """A checkpoint's tensors by key and, for an object-based one, its variables (None for name->tensor ones)."""

    prefix: Path
    tensors: dict[str, TensorEntry]
    variables: list[ObjectVariable] | None

    @property
    def object_based(self) -> bool:
        """Whether the checkpoint was written by TF2's object-based saving."""
        return self.variables is not None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A base-128 varint at `pos`: (value, position after it)."""
    value = shift = 0
    while True:
        if pos >= len(data):
            raise CheckpointIndexError("a varint runs past the end of its block")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: ints for varints and fixed widths, bytes for length-delimited."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            yield number, data[pos : pos + length]
            pos += length
        elif wire == 5:
            yield number, struct.unpack_from("<I", data, pos)[0]
            pos += 4
        elif wire == 1:
            yield number, struct.unpack_from("<Q", data, pos)[0]
            pos += 8
        else:
            raise CheckpointIndexError(f"unsupported protobuf wire type {wire}")


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of one table block, undoing the keys' prefix compression."""
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + length]
        pos += length


def _read_block(data: bytes, handle: bytes) -> bytes:
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    if offset + size + _BLOCK_TRAILER_BYTES > len(data):
        raise CheckpointIndexError("a block lies past the end of the index file")
    if data[offset + size] != 0:
        raise CheckpointIndexError("the index uses compressed blocks, which this reader does not read")
    return data[offset : offset + size]


def _table(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of a LevelDB-format table held in `data`, in key order."""
    if len(data) < _FOOTER_BYTES or struct.unpack_from("<Q", data, len(data) - 8)[0] != _TABLE_MAGIC:
        raise CheckpointIndexError("not a TensorFlow checkpoint index (no table footer)")
    footer = data[-_FOOTER_BYTES:]
    _, pos = _varint(footer, 0)  # the metaindex block: unused by checkpoints
    _, pos = _varint(footer, pos)
    index = _read_block(data, footer[pos:])
    for _, handle in _block_entries(index):
        yield from _block_entries(_read_block(data, handle))


def _shape(message: bytes) -> tuple[int, ...]:
    dims: list[int] = []
    for number, value in _fields(message):
        if number == 2 and isinstance(value, bytes):
            sizes = [size for n, size in _fields(value) if n == 1 and isinstance(size, int)]
            dims.append(sizes[0] if sizes else 0)
    return tuple(dims)


def _entry(message: bytes) -> TensorEntry:
    values: dict[int, int | bytes] = dict(_fields(message))
    shape = values.get(2, b"")

    def number(key: int) -> int:
        value = values.get(key, 0)
        return value if isinstance(value, int) else 0

    return TensorEntry(
        dtype=number(1),
        shape=_shape(shape) if isinstance(shape, bytes) else (),
        shard=number(3),
        offset=number(4),
        size=number(5),
    )


def data_file(prefix: Path, shard: int, shards: int) -> Path:
    """The data file that holds a shard of the checkpoint at `prefix`."""
    return Path(f"{prefix}.data-{shard:05d}-of-{shards:05d}")


def _shard_count(header: bytes) -> int:
    values = dict(_fields(header))
    count = values.get(1, 1)
    return count if isinstance(count, int) and count > 0 else 1


def _string_scalar(prefix: Path, entry: TensorEntry, shards: int) -> bytes:
    """The bytes of a scalar string tensor: a varint length and a 4-byte checksum precede them."""
    path = data_file(prefix, entry.shard, shards)
    try:
        with path.open("rb") as handle:
            handle.seek(entry.offset)
            raw = handle.read(entry.size)
    except OSError as exc:
        raise CheckpointIndexError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    length, pos = _varint(raw, 0)
    return raw[pos + 4 : pos + 4 + length]


def _object_variables(graph: bytes) -> list[ObjectVariable]:
    """The variables of a TrackableObjectGraph: each node's VARIABLE_VALUE attribute, with the slots that refer to
    it (a slot reference lives on the optimizer's node and points at the variable's and the slot's nodes)."""
    nodes = [value for number, value in _fields(graph) if number == 1 and isinstance(value, bytes)]
    values: dict[int, tuple[str, str]] = {}
    slot_refs: list[tuple[int, str, int]] = []
    for node_id, node in enumerate(nodes):
        for number, value in _fields(node):
            if number == 2 and isinstance(value, bytes):
                attribute = {n: v for n, v in _fields(value) if isinstance(v, bytes)}
                if attribute.get(1) == b"VARIABLE_VALUE":
                    values[node_id] = (attribute.get(2, b"").decode(), attribute.get(3, b"").decode())
            elif number == 3 and isinstance(value, bytes):
                reference = dict(_fields(value))
                original, slot_name, slot_node = reference.get(1, 0), reference.get(2, b""), reference.get(3, 0)
                if isinstance(original, int) and isinstance(slot_name, bytes) and isinstance(slot_node, int):
                    slot_refs.append((original, slot_name.decode(), slot_node))
    slots: dict[int, dict[str, str]] = {}
    for original_node, name, slot_variable_node in slot_refs:
        if slot_variable_node in values:
            slots.setdefault(original_node, {})[name] = values[slot_variable_node][1]
    slot_nodes = {slot_node for _, _, slot_node in slot_refs}
    return [
        ObjectVariable(full_name=name, key=key, slots=slots.get(node_id, {}))
        for node_id, (name, key) in values.items()
        if node_id not in slot_nodes
    ]


def read_contents(prefix: Path) -> CheckpointContents:
    """The tensors of the checkpoint at `prefix` (`<prefix>.index` and its data files) and, for an object-based one,
    its variables; CheckpointIndexError when the files are missing or not a checkpoint."""
    index = Path(f"{prefix}.index")
    try:
        data = index.read_bytes()
    except OSError as exc:
        raise CheckpointIndexError(f"cannot read {index.name}: {exc.strerror or exc}") from exc
    tensors: dict[str, TensorEntry] = {}
    shards = 1
    try:
        for key, value in _table(data):
            if key == b"":
                shards = _shard_count(value)
            else:
                tensors[key.decode()] = _entry(value)
    except (struct.error, UnicodeDecodeError) as exc:
        raise CheckpointIndexError(f"{index.name} is damaged: {exc}") from exc
    graph = tensors.pop(OBJECT_GRAPH_KEY, None)
    if graph is None:
        return CheckpointContents(prefix=prefix, tensors=tensors, variables=None)
    if graph.dtype != _DT_STRING:
        raise CheckpointIndexError(f"{OBJECT_GRAPH_KEY} in {index.name} is not a string tensor")
    return CheckpointContents(
        prefix=prefix, tensors=tensors, variables=_object_variables(_string_scalar(prefix, graph, shards))
    )


_LATEST = re.compile(r'^model_checkpoint_path:\s*"(.*)"\s*$', re.MULTILINE)


def find_prefix(folder: Path) -> Path | None:
    """The checkpoint a folder holds: the one its `checkpoint` file names (as TF's latest_checkpoint reads it),
    else the newest `.index` by modification time; None when there is none."""
    state = folder / "checkpoint"
    if state.is_file():
        match = _LATEST.search(state.read_text(errors="replace"))
        if match:
            named = Path(match[1]) if Path(match[1]).is_absolute() else folder / match[1]
            if Path(f"{named}.index").is_file():
                return named
    indexes = sorted(folder.glob("*.index"), key=lambda path: (path.stat().st_mtime_ns, path.name))
    return indexes[-1].with_suffix("") if indexes else None
