"""Encoding of store objects: a small header plus byte-grouped zstd chunks.

An object holds one update (or one blob): a kind, a few JSON fields, and named
buffers. The byte layout is specified in docs/formats.md and locked by
tests/objects_test.py.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zstandard

from git_theta import dtypes, parallel
from git_theta.errors import StoreError
from git_theta.tensor import Buffer, Tensor

MAGIC = b"gtheta\x00\x01"
CODEC = "bgzstd"
CHUNK_BYTES = 4 << 20
MAX_HEADER_BYTES = 16 << 20
_LENGTH = struct.Struct("<I")
ZSTD_LEVEL = 1


@dataclass
class Bundle:
    """What an object holds: `kind` names the update type (or "blob")."""

    kind: str
    buffers: dict[str, Tensor]
    fields: dict[str, Any] = field(default_factory=dict)


def _group_bytes(chunk: Buffer, itemsize: int) -> bytes | np.ndarray[Any, Any]:
    """Put byte k of every element together: exponents and high mantissa bytes compress."""
    raw = np.frombuffer(chunk, dtype=np.uint8)
    if itemsize == 1:
        return raw
    return np.ascontiguousarray(raw.reshape(-1, itemsize).T)


def _ungroup_bytes(grouped: bytes, itemsize: int) -> bytes:
    if itemsize == 1:
        return grouped
    planes = np.frombuffer(grouped, dtype=np.uint8).reshape(itemsize, -1)
    return np.ascontiguousarray(planes.T).tobytes()


def _compress_chunk(chunk: Buffer, itemsize: int) -> bytes:
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(_group_bytes(chunk, itemsize))


def _decompress_chunk(frame: bytes, itemsize: int, expected: int) -> bytes:
    try:
        grouped = zstandard.ZstdDecompressor().decompress(frame, max_output_size=expected)
    except zstandard.ZstdError as error:
        raise StoreError(f"corrupt compressed chunk: {error}") from None
    if len(grouped) != expected:
        raise StoreError(f"corrupt chunk: {len(grouped)} bytes, expected {expected}")
    return _ungroup_bytes(grouped, itemsize)


def _chunk_views(data: Buffer, itemsize: int) -> list[memoryview]:
    view = memoryview(data).cast("B")
    step = max(itemsize, CHUNK_BYTES - CHUNK_BYTES % itemsize)
    return [view[start : start + step] for start in range(0, len(view), step)]


def encode(bundle: Bundle) -> list[bytes]:
    """The object's bytes, as a list of pieces to write in order."""
    buffer_headers = []
    frames: list[bytes] = []
    for name in sorted(bundle.buffers):
        tensor = bundle.buffers[name]
        itemsize = dtypes.itemsize(tensor.dtype)
        chunks = _chunk_views(tensor.data, itemsize)
        compressed = parallel.map_ordered(lambda c: _compress_chunk(c, itemsize), chunks)
        buffer_headers.append(
            {
                "chunk_bytes": [len(c) for c in chunks],
                "codec": CODEC,
                "dtype": tensor.dtype,
                "frame_bytes": [len(f) for f in compressed],
                "name": name,
                "shape": list(tensor.shape),
            }
        )
        frames.extend(compressed)
    header = {"buffers": buffer_headers, "fields": bundle.fields, "kind": bundle.kind}
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return [MAGIC, _LENGTH.pack(len(header_bytes)), header_bytes, *frames]


def read_header(data: bytes) -> tuple[dict[str, Any], int]:
    """Parse and validate the header; returns it and the offset of the first frame."""
    if data[: len(MAGIC)] != MAGIC:
        raise StoreError("not a git-theta object (bad magic bytes)")
    (size,) = _LENGTH.unpack_from(data, len(MAGIC))
    if size > MAX_HEADER_BYTES:
        raise StoreError(f"object header of {size} bytes exceeds the {MAX_HEADER_BYTES} byte limit")
    start = len(MAGIC) + _LENGTH.size
    try:
        header = json.loads(data[start : start + size])
    except ValueError as error:
        raise StoreError(f"object header is not JSON: {error}") from None
    _check_header(header)
    return header, start + size


def _check_header(header: Any) -> None:
    if not isinstance(header, dict) or not isinstance(header.get("kind"), str):
        raise StoreError("object header lacks a kind")
    if not isinstance(header.get("buffers"), list) or not isinstance(header.get("fields"), dict):
        raise StoreError("object header lacks buffers or fields")
    for buf in header["buffers"]:
        if buf.get("codec") != CODEC:
            raise StoreError(f"unknown codec {buf.get('codec')!r} in object")
        itemsize = dtypes.itemsize(buf["dtype"])
        expected = int(np.prod(buf["shape"], dtype=np.int64)) * itemsize
        if sum(buf["chunk_bytes"]) != expected or len(buf["chunk_bytes"]) != len(buf["frame_bytes"]):
            raise StoreError(f"object buffer {buf.get('name')!r} sizes do not match its shape")


def decode(data: bytes) -> Bundle:
    """Rebuild the bundle from an object's bytes, validating every size."""
    header, offset = read_header(data)
    jobs: list[tuple[int, int, int, int]] = []
    for buf in header["buffers"]:
        itemsize = dtypes.itemsize(buf["dtype"])
        for raw_len, frame_len in zip(buf["chunk_bytes"], buf["frame_bytes"]):
            jobs.append((offset, frame_len, itemsize, raw_len))
            offset += frame_len
    if offset != len(data):
        raise StoreError(f"object is {len(data)} bytes, its header describes {offset}")
    pieces = parallel.map_ordered(lambda j: _decompress_chunk(data[j[0] : j[0] + j[1]], j[2], j[3]), jobs)
    buffers: dict[str, Tensor] = {}
    piece_iter: Iterator[bytes] = iter(pieces)
    for buf in header["buffers"]:
        parts = [next(piece_iter) for _ in buf["chunk_bytes"]]
        joined = parts[0] if len(parts) == 1 else b"".join(parts)
        buffers[buf["name"]] = Tensor(buf["dtype"], tuple(buf["shape"]), joined)
    return Bundle(header["kind"], buffers, header["fields"])
