"""Writing Flax msgpack: the bytes msgpack.packb (and so flax.serialization) writes for a nested dict of arrays.

The encoding is a list of pieces, bytes or (name, start, end) ranges of a parameter group's data, so the same code
writes a new file (git_theta.save: the pieces with the tensors' data) and plans the skeleton and layout of a file
whose set of arrays a merge changed (no tensor data needed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeAlias

from git_theta import dtypes
from git_theta.errors import CheckpointError

# The msgpack ext code flax gives ndarrays (flax.serialization), shared with the reader (flax_msgpack.py).
EXT_NDARRAY = 1
# numpy's dtype.name (what flax writes) -> ours. Names numpy writes that are not here (complex, float4, strings)
# keep the whole leaf in the skeleton.
# fmt: off
NUMPY_NAMES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ", "float8_e5m2fnuz": "F8_E5M2FNUZ", "float8_e8m0fnu": "F8_E8M0",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8",
    "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8", "bool": "BOOL",
}
# fmt: on

# flax.serialization.MAX_CHUNK_SIZE: a larger array is written as a chunked map, as flax writes it.
FLAX_CHUNK_BYTES = 1 << 30

_NUMPY_NAME_OF = {ours: theirs for theirs, ours in NUMPY_NAMES.items()}
Piece: TypeAlias = bytes | tuple[str, int, int]


class Leaf(Protocol):
    """What the encoding needs of an array: a Tensor or a ParamEntry."""

    @property
    def dtype(self) -> str: ...

    @property
    def shape(self) -> tuple[int, ...]: ...


def _unescape(component: str) -> str:
    return component.replace("%2F", "/").replace("%25", "%") if component != "%" else ""


def nested(leaves: Mapping[str, Leaf], order: Sequence[str]) -> dict[str, Any]:
    """{"a/b": x} -> {"a": {"b": ("a/b", x)}}, maps filled in `order`; refuses a name that is also a prefix of
    another (a leaf and a map at once) and dtypes numpy has no name for."""
    root: dict[str, Any] = {}
    for name in order:
        if leaves[name].dtype not in _NUMPY_NAME_OF:
            raise CheckpointError(f"a flax file cannot hold {leaves[name].dtype} ({name!r})")
        node = root
        *parents, leaf = [_unescape(part) for part in name.split("/")]
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CheckpointError(f"parameter {name!r} lies under another parameter; a flax state dict holds one")
        if leaf in node:
            raise CheckpointError(f"parameter {name!r} is also the parent of others; a flax state dict holds one")
        node[leaf] = (name, leaves[name])
    return root


def _header(size: int, small: int, small_limit: int, markers: tuple[int, int, int]) -> bytes:
    """A str/bin/map/array header: a fix form up to `small_limit` (if `small` is a marker), else 8/16/32-bit."""
    if small and size <= small_limit:
        return bytes([small | size])
    for marker, width in zip(markers, (1, 2, 4)):
        if marker and size < 1 << (8 * width):
            return bytes([marker]) + size.to_bytes(width, "big")
    raise CheckpointError(f"a msgpack value of {size} items or bytes is too large")


def _map_header(count: int) -> bytes:
    return _header(count, 0x80, 15, (0, 0xDE, 0xDF))


def _uint(value: int) -> bytes:
    if value <= 0x7F:
        return bytes([value])
    for marker, width in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
        if value < 1 << (8 * width):
            return bytes([marker]) + value.to_bytes(width, "big")
    raise CheckpointError(f"dimension {value} does not fit a msgpack integer")


def _str(text: str) -> bytes:
    data = text.encode("utf-8")
    return _header(len(data), 0xA0, 31, (0xD9, 0xDA, 0xDB)) + data


def _ext_array(dtype: str, shape: tuple[int, ...], data: tuple[str, int, int]) -> list[Piece]:
    size = data[2] - data[1]
    head = b"".join(
        [b"\x93", _header(len(shape), 0x90, 15, (0, 0xDC, 0xDD)), *map(_uint, shape), _str(_NUMPY_NAME_OF[dtype]),
         _header(size, 0, 0, (0xC4, 0xC5, 0xC6))]
    )  # fmt: skip
    fixext = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
    payload = len(head) + size
    ext = bytes([fixext[payload]]) if payload in fixext else _header(payload, 0, 0, (0xC7, 0xC8, 0xC9))
    return [ext + bytes([EXT_NDARRAY]) + head, data]


def encode(node: dict[str, Any]) -> list[Piece]:
    pieces: list[Piece] = [_map_header(len(node))]
    for key, value in node.items():
        pieces.append(_str(key))
        pieces += encode(value) if isinstance(value, dict) else _array(*value)
    return pieces


def _array(name: str, leaf: Leaf) -> list[Piece]:
    itemsize = dtypes.itemsize(leaf.dtype)
    nbytes = math.prod(leaf.shape) * itemsize
    if nbytes <= FLAX_CHUNK_BYTES:
        return _ext_array(leaf.dtype, leaf.shape, (name, 0, nbytes))
    # flax's chunked form: the shape and 1-D chunks of at most FLAX_CHUNK_BYTES, each keyed by its index.
    step = max(1, FLAX_CHUNK_BYTES // itemsize) * itemsize
    starts = range(0, nbytes, step)
    pieces: list[Piece] = [b"\x83", _str("__msgpack_chunked_array__"), b"\xc3", _str("shape")]
    pieces.append(_map_header(len(leaf.shape)))
    for i, dimension in enumerate(leaf.shape):
        pieces += [_str(str(i)), _uint(dimension)]
    pieces += [_str("chunks"), _map_header(len(starts))]
    for i, start in enumerate(starts):
        end = min(start + step, nbytes)
        pieces += [_str(str(i)), *_ext_array(leaf.dtype, ((end - start) // itemsize,), (name, start, end))]
    return pieces


def plan(leaves: Mapping[str, Leaf], order: Sequence[str]) -> tuple[bytes, list[dict[str, Any]]]:
    """(skeleton, layout) of the file `encode` writes for `leaves` in `order`, as FlaxMsgpackFormat.read gives
    them; refuses arrays flax would chunk (their groups would be named by chunk)."""
    skeleton = bytearray()
    layout: list[dict[str, Any]] = []
    run = 0
    for piece in encode(nested(leaves, order)):
        if isinstance(piece, bytes):
            skeleton += piece
            run += len(piece)
            continue
        name, start, end = piece
        if start != 0 or end != math.prod(leaves[name].shape) * dtypes.itemsize(leaves[name].dtype):
            raise CheckpointError(f"parameter {name!r} is larger than flax writes unchunked ({FLAX_CHUNK_BYTES} bytes)")
        layout += [{"raw": run}, {"array": name, "bytes": end}]
        run = 0
    return bytes(skeleton), [*layout, {"raw": run}]
