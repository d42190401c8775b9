"""safetensors: an 8-byte header length, a JSON header, then tensor bytes back to back.

The header is kept byte for byte as a blob (it holds offsets, dtypes, shapes,
`__metadata__` and any padding), so the rebuilt file is identical to the
added one. Tensors are read in file order straight from the stream.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any, BinaryIO

from git_theta import dtypes
from git_theta.checkpoints.base import CheckpointFormat, ParamSink, ParamSource, read_exact, read_into
from git_theta.errors import CheckpointError
from git_theta.metadata import ParamEntry
from git_theta.tensor import Tensor

MAX_HEADER_BYTES = 100 << 20
_U64 = struct.Struct("<Q")


def parse_header(header_bytes: bytes) -> list[tuple[str, str, tuple[int, ...], int, int]]:
    """(name, dtype, shape, begin, end) for each tensor, sorted by offset, validated."""
    try:
        header = json.loads(header_bytes)
    except ValueError as error:
        raise CheckpointError(f"safetensors header is not valid JSON: {error}") from None
    if not isinstance(header, dict):
        raise CheckpointError("safetensors header is not a JSON object")
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"tensor {name!r} has a malformed header entry") from None
        if dtype not in dtypes.ITEMSIZE:
            raise CheckpointError(f"tensor {name!r} has unsupported dtype {dtype!r}")
        if not all(isinstance(n, int) and n >= 0 for n in shape):
            raise CheckpointError(f"tensor {name!r} has an invalid shape {list(shape)}")
        if end - begin != math.prod(shape) * dtypes.itemsize(dtype):
            raise CheckpointError(f"tensor {name!r}: data_offsets [{begin}, {end}] do not fit {dtype}{list(shape)}")
        entries.append((name, dtype, shape, begin, end))
    entries.sort(key=lambda e: (e[3], e[4]))
    position = 0
    for name, _, _, begin, end in entries:
        if begin != position:
            raise CheckpointError(f"tensor {name!r} starts at byte {begin}, expected {position} (offsets must be contiguous)")
        position = end
    return entries


class SafetensorsFormat(CheckpointFormat):
    name = "safetensors"
    extensions = (".safetensors",)

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        if len(head) < 10:
            return False
        (size,) = _U64.unpack_from(head)
        return 2 <= size <= MAX_HEADER_BYTES and head[8:9] == b"{"

    def read(self, stream: BinaryIO, path: str, sink: ParamSink) -> dict[str, Any]:
        size_bytes = stream.read(8)
        if len(size_bytes) != 8:
            raise CheckpointError("file is too short to be safetensors")
        (size,) = _U64.unpack(size_bytes)
        if size > MAX_HEADER_BYTES:
            raise CheckpointError(f"safetensors header of {size} bytes exceeds {MAX_HEADER_BYTES}")
        header_bytes = read_exact(stream, size)
        entries = parse_header(header_bytes)
        header_ref = sink.put_blob(size_bytes + header_bytes)
        for name, dtype, shape, begin, end in entries:
            sink.add(name, Tensor(dtype, shape, read_into(stream, end - begin)))
        if stream.read(1):
            raise CheckpointError("file has bytes after the last tensor")
        return {"header": header_ref}

    def write(self, file: Mapping[str, Any], params: Mapping[str, ParamEntry], source: ParamSource, out: BinaryIO) -> None:
        header = source.get_blob(file["header"])
        entries = parse_header(header[8:])
        for name, dtype, shape, _, _ in entries:
            entry = params.get(name)
            if entry is None or entry.dtype != dtype or entry.shape != shape:
                raise CheckpointError(f"metadata does not match the stored safetensors header for tensor {name!r}")
        out.write(header)
        for tensor in source.tensors([e[0] for e in entries]):
            out.write(tensor.data)

    def file_for_params(
        self, file: Mapping[str, Any], before: Mapping[str, ParamEntry], after: Mapping[str, ParamEntry], source: ParamSource, sink: ParamSink
    ) -> dict[str, Any]:
        """Keep the header as is when the layout is unchanged, else write a new one.

        A new header keeps `__metadata__`, keeps the old file order for the
        groups that stay and appends new groups by name, with contiguous
        offsets and space padding to a multiple of 8 bytes (as safetensors does).
        """
        if _layout(before) == _layout(after):
            return dict(file)
        old_bytes = source.get_blob(file["header"])[8:]
        old_order = [entry[0] for entry in parse_header(old_bytes)]
        old = json.loads(old_bytes)
        names = [name for name in old_order if name in after] + sorted(set(after) - set(old_order))
        header: dict[str, Any] = {"__metadata__": old["__metadata__"]} if "__metadata__" in old else {}
        position = 0
        for name in names:
            entry = after[name]
            end = position + math.prod(entry.shape) * dtypes.itemsize(entry.dtype)
            header[name] = {"dtype": entry.dtype, "shape": list(entry.shape), "data_offsets": [position, end]}
            position = end
        encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
        encoded += b" " * (-len(encoded) % 8)
        return {**file, "header": sink.put_blob(_U64.pack(len(encoded)) + encoded)}


def _layout(params: Mapping[str, ParamEntry]) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {name: (entry.dtype, entry.shape) for name, entry in params.items()}
