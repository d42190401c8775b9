"""Encoding of store objects: a small header plus byte-grouped zstd chunks.

An object holds one update (or one blob): a kind, a few JSON fields, and named
buffers. The byte layout is specified in docs/formats.md and locked by
tests/objects_test.py.
"""

from __future__ import annotations

import functools
import json
import mmap
import struct
from dataclasses import dataclass, field
from typing import Any

import zstandard

from git_theta import bytegroup, dtypes, parallel
from git_theta.errors import StoreError, ThetaError
from git_theta.metadata import is_count, loads_bounded
from git_theta.tensor import Buffer, Tensor

MAGIC = b"gtheta\x00\x01"
CODEC = "bgzstd"
CHUNK_BYTES = 4 << 20
MAX_HEADER_BYTES = 16 << 20
# Deepest nesting of the header's JSON (real headers nest 3 levels; json.loads recurses once per level).
MAX_HEADER_DEPTH = 64
# What one object may decode to, checked against its header before any buffer is allocated: a few KB of zstd
# frames can declare gigabytes. A link of a parameter of N elements decodes to at most
# LINK_BYTES_PER_ELEMENT * N + LINK_SLACK_BYTES (dense and xor: itemsize * N <= 8N; sparse: gaps and values,
# <= 16N; low-rank: r * (in + out) <= 2N values of <= 8 bytes); a file-level blob to at most MAX_BLOB_BYTES.
LINK_BYTES_PER_ELEMENT = 16
LINK_SLACK_BYTES = 64 << 10
MAX_BLOB_BYTES = 256 << 20
# Objects whose buffers hold at most this many bytes decode on the calling thread (e.g. a sparse link's two
# buffers): the thread pool's hand-off costs ~0.5 ms per object on a busy machine, more than the work.
INLINE_DECODE_BYTES = 1 << 20
_LENGTH = struct.Struct("<I")
ZSTD_LEVEL = 1


@dataclass
class Bundle:
    """What an object holds: `kind` names the update type (or "blob")."""

    kind: str
    buffers: dict[str, Tensor]
    fields: dict[str, Any] = field(default_factory=dict)


def _compress_chunk(chunk: Buffer, itemsize: int) -> bytes:
    # Byte grouping puts exponents and high mantissa bytes together, where zstd finds them.
    grouped = chunk if itemsize == 1 else bytegroup.group(chunk, itemsize)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(grouped)


def _decompress_into(frame: Buffer, itemsize: int, target: memoryview) -> None:
    """Decompress one chunk and scatter its byte planes back into `target` (a byte slice of the output)."""
    expected = len(target)
    try:
        # zstd allocates what a frame declares, so check that before decompressing.
        declared = zstandard.frame_content_size(frame)
        if declared != expected:
            raise StoreError(f"corrupt chunk: its zstd frame declares {declared} bytes, expected {expected}")
        grouped = zstandard.ZstdDecompressor().decompress(frame, max_output_size=expected)
    except zstandard.ZstdError as error:
        raise StoreError(f"corrupt compressed chunk: {error}") from None
    if len(grouped) != expected:
        raise StoreError(f"corrupt chunk: {len(grouped)} bytes, expected {expected}")
    bytegroup.ungroup_into(grouped, target, itemsize)


def _check_frames(data: bytes | mmap.mmap, offset: int, buf: dict[str, Any]) -> None:
    """Each frame declares the size its chunk_bytes entry says (read from frame headers only, nothing allocated)."""
    view = memoryview(data)
    for raw_len, frame_len in zip(buf["chunk_bytes"], buf["frame_bytes"]):
        try:
            declared = zstandard.frame_content_size(view[offset : offset + frame_len])
        except zstandard.ZstdError as error:
            raise StoreError(f"object buffer {buf['name']!r}: corrupt compressed chunk: {error}") from None
        if declared != raw_len:
            raise StoreError(
                f"object buffer {buf['name']!r}: corrupt chunk: its zstd frame declares {declared} bytes, expected "
                f"{raw_len}"
            )
        offset += frame_len


def chunk_step(itemsize: int) -> int:
    """Raw bytes per chunk: CHUNK_BYTES rounded down to whole elements."""
    return max(itemsize, CHUNK_BYTES - CHUNK_BYTES % itemsize)


def _chunk_views(data: Buffer, itemsize: int) -> list[memoryview]:
    view = memoryview(data).cast("B")
    step = chunk_step(itemsize)
    return [view[start : start + step] for start in range(0, len(view), step)]


def encode(bundle: Bundle) -> list[bytes]:
    """The object's bytes, as a list of pieces to write in order."""
    buffer_headers = []
    frames: list[bytes] = []
    for name in sorted(bundle.buffers):
        tensor = bundle.buffers[name]
        itemsize = dtypes.itemsize(tensor.dtype)
        chunks = _chunk_views(tensor.data, itemsize)
        compressed = parallel.map_ordered(functools.partial(_compress_chunk, itemsize=itemsize), chunks)
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


def encode_blob(data: bytes) -> list[bytes]:
    """The object for non-tensor bytes of a file (a header, a pickle, a zip skeleton)."""
    return encode(Bundle("blob", {"bytes": Tensor("U8", (len(data),), data)}))


def read_header(data: bytes | mmap.mmap) -> tuple[dict[str, Any], int]:
    """Parse and validate the header; returns it and the offset of the first frame."""
    if data[: len(MAGIC)] != MAGIC:
        raise StoreError("not a git-theta object (bad magic bytes)")
    start = len(MAGIC) + _LENGTH.size
    if len(data) < start:
        raise StoreError(f"object is truncated: {len(data)} bytes, too short for a header length")
    (size,) = _LENGTH.unpack_from(data, len(MAGIC))
    if size > MAX_HEADER_BYTES:
        raise StoreError(f"object header of {size} bytes exceeds the {MAX_HEADER_BYTES} byte limit")
    if len(data) < start + size:
        raise StoreError(f"object is truncated: its header needs {size} bytes, {len(data) - start} remain")
    try:
        header = loads_bounded(memoryview(data)[start : start + size], MAX_HEADER_DEPTH)
    except ValueError as error:
        raise StoreError(f"object header is not JSON: {error}") from None
    _check_header(header)
    return header, start + size


def _check_header(header: Any) -> None:
    if not isinstance(header, dict) or not isinstance(header.get("kind"), str) or not header["kind"]:
        raise StoreError("object header lacks a kind")
    if not isinstance(header.get("buffers"), list) or not isinstance(header.get("fields"), dict):
        raise StoreError("object header lacks buffers or fields")
    names: set[str] = set()
    for buf in header["buffers"]:
        if not isinstance(buf, dict) or not isinstance(buf.get("name"), str):
            raise StoreError("object header has a buffer without a name")
        _check_buffer(buf)
        if buf["name"] in names:
            raise StoreError(f"object header names buffer {buf['name']!r} twice")
        names.add(buf["name"])


def _check_buffer(buf: dict[str, Any]) -> None:
    where = f"object buffer {buf['name']!r}"
    if buf.get("codec") != CODEC:
        raise StoreError(f"{where}: unknown codec {buf.get('codec')!r}")
    # a str first: a list or dict (any JSON) cannot be looked up in a dict
    if not isinstance(buf.get("dtype"), str) or buf["dtype"] not in dtypes.ITEMSIZE:
        raise StoreError(f"{where}: unknown dtype {buf.get('dtype')!r}")
    shape, chunks, frames = buf.get("shape"), buf.get("chunk_bytes"), buf.get("frame_bytes")
    if not isinstance(shape, list) or not all(is_count(n) for n in shape):
        raise StoreError(f"{where}: invalid shape {shape!r}")
    if (
        not isinstance(chunks, list)
        or not isinstance(frames, list)
        or not all(is_count(n) and n > 0 for n in chunks + frames)
    ):
        raise StoreError(f"{where}: chunk and frame sizes must be lists of positive integers")
    itemsize = dtypes.itemsize(buf["dtype"])
    if sum(chunks) != _buffer_bytes(buf["dtype"], shape) or len(chunks) != len(frames):
        raise StoreError(f"{where}: sizes do not match its shape")
    # Fixed chunking: boundaries (and memory per chunk) never depend on the writer.
    step = chunk_step(itemsize)
    if any(n != step for n in chunks[:-1]) or (chunks and chunks[-1] > step):
        raise StoreError(f"{where}: chunks must be {step} bytes each except a shorter last one")


def _buffer_bytes(dtype: str, shape: list[int]) -> int:
    """The declared buffer's byte size; -1 (no sum of chunk sizes) when a packed type's count is not whole bytes."""
    try:
        return dtypes.nbytes(dtype, shape)
    except ThetaError:
        return -1


def link_limit(elements: int) -> int:
    """The most bytes an object of one link of a parameter of `elements` elements may decode to."""
    return LINK_BYTES_PER_ELEMENT * elements + LINK_SLACK_BYTES


def decode(data: bytes | mmap.mmap, max_bytes: int = MAX_BLOB_BYTES) -> Bundle:
    """Rebuild the bundle from an object's bytes, validating every size.

    `max_bytes` bounds what its buffers may hold in all: a link's object is decoded with the link_limit of its
    entry (smudge.rebuild), a blob with MAX_BLOB_BYTES. The header is checked against it, and against the
    object's real length and its frames' declared sizes, before anything is allocated.
    """
    header, offset = read_header(data)
    # Checked before allocating: a header must not make us reserve memory its frames cannot hold.
    described = offset + sum(sum(buf["frame_bytes"]) for buf in header["buffers"])
    if described != len(data):
        raise StoreError(f"object is {len(data)} bytes, its header describes {described}")
    declared = sum(sum(buf["chunk_bytes"]) for buf in header["buffers"])
    if declared > max_bytes:
        raise StoreError(f"object declares {declared} bytes of buffers, more than the {max_bytes} its entry can hold")
    at = offset
    for buf in header["buffers"]:
        _check_frames(data, at, buf)
        at += sum(buf["frame_bytes"])
    buffers: dict[str, Tensor] = {}
    jobs: list[tuple[int, int, int, memoryview]] = []
    for buf in header["buffers"]:
        itemsize = dtypes.itemsize(buf["dtype"])
        output = bytearray(sum(buf["chunk_bytes"]))
        target = memoryview(output)
        start = 0
        for raw_len, frame_len in zip(buf["chunk_bytes"], buf["frame_bytes"]):
            jobs.append((offset, frame_len, itemsize, target[start : start + raw_len]))
            offset += frame_len
            start += raw_len
        buffers[buf["name"]] = Tensor(buf["dtype"], tuple(buf["shape"]), output)
    view = memoryview(data)

    def job(j: tuple[int, int, int, memoryview]) -> None:
        _decompress_into(view[j[0] : j[0] + j[1]], j[2], j[3])

    if sum(len(j[3]) for j in jobs) <= INLINE_DECODE_BYTES:
        for one in jobs:  # a pool hand-off per chunk costs more than decompressing a small object here
            job(one)
    else:
        parallel.map_ordered(job, jobs)
    return Bundle(header["kind"], buffers, header["fields"])
