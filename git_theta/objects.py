"""Encoding of store objects: a small header plus byte-grouped zstd chunks.

An object holds one update (or one blob): a kind, a few JSON fields, and named
buffers. The byte layout is specified in docs/formats.md and locked by
tests/objects_test.py.
"""

from __future__ import annotations

import array
import functools
import json
import mmap
import re
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zstandard

from git_theta import buffer_pool, bytegroup, dtypes, parallel
from git_theta.errors import StoreError, ThetaError
from git_theta.metadata import is_count, loads_bounded
from git_theta.tensor import Buffer, Tensor, plain_shape

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


_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    """This thread's compressor: making one costs more than compressing a 4 KB tensor, and one is not thread-safe.
    A one-shot `compress` starts afresh each time, so reuse does not change the bytes."""
    compressor: zstandard.ZstdCompressor | None = getattr(_local, "compressor", None)
    if compressor is None:
        compressor = _local.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    """This thread's decompressor, for the same reasons as _compressor (making one costs ~30 us)."""
    decompressor: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return decompressor


def _compress_chunk(chunk: Buffer, itemsize: int) -> bytes:
    # Byte grouping puts exponents and high mantissa bytes together, where zstd finds them.
    grouped = chunk if itemsize == 1 else bytegroup.group(chunk, itemsize)
    return _compressor().compress(grouped)


_decompress_in_place: Callable[[Buffer, Buffer, int, Buffer], bool] | None
try:
    # One zstd frame that declares and holds exactly a chunk, decompressed in place in C (git_theta/_densecodec.c,
    # linked to the system libzstd); anything else is refused, and the code below decides.
    from git_theta._densecodec import decompress_into as _decompress_in_place
except ImportError:  # not built (no compiler or no libzstd header)
    _decompress_in_place = None


def _decompress_into(frame: Buffer, itemsize: int, target: memoryview) -> None:
    """Decompress one chunk and scatter its byte planes back into `target` (a byte slice of the output)."""
    expected = len(target)
    if _decompress_in_place is not None and _decompress_in_place(
        frame, target, itemsize, _planes(expected, itemsize, target)
    ):
        return  # one call, no reader or bytes object between zstd and the planes (~10% of a big checkout's CPU)
    try:  # the reference path: any chunk the compiled one refused, and what it says is wrong
        # zstd allocates what a frame declares, so check that before decompressing.
        declared = zstandard.frame_content_size(frame)
        if declared != expected:
            raise StoreError(f"corrupt chunk: its zstd frame declares {declared} bytes, expected {expected}")
        grouped: Buffer
        if expected <= ONE_SHOT_BYTES:
            # A small frame (every pack member's): one call, no reader object (~2.5 us of a 4 KB tensor's ~7).
            grouped = _decompressor().decompress(frame, max_output_size=expected)
            if len(grouped) != expected:
                raise StoreError(f"corrupt chunk: {len(grouped)} bytes, expected {expected}")
            if itemsize == 1:
                target[:] = grouped
                return
        else:
            grouped = _decompress_exactly(frame, target if itemsize == 1 else _scratch(expected))
    except zstandard.ZstdError as error:
        raise StoreError(f"corrupt compressed chunk: {error}") from None
    if itemsize > 1:
        bytegroup.ungroup_into(grouped, target, itemsize)


# Chunks up to this size decompress in one call into a fresh bytes; larger ones stream into reused memory.
ONE_SHOT_BYTES = 256 << 10


def _decompress_exactly(frame: Buffer, output: memoryview) -> memoryview:
    """The frame decompressed into `output`, which it must fill exactly (zstd checks the declared size at the
    frame's end, which the read past it reaches)."""
    reader = _decompressor().stream_reader(frame)
    got = 0
    while got < len(output) and (count := reader.readinto(output[got:])):
        got += count
    if got != len(output) or reader.read(1):
        raise StoreError(f"corrupt chunk: {got if got < len(output) else 'more than'} bytes, expected {len(output)}")
    return output


def _planes(size: int, itemsize: int, target: memoryview) -> Buffer:
    """Where the compiled path decompresses a chunk's byte planes: the target itself for bytes, this thread's
    chunk-sized scratch for a big chunk, a buffer of its own for a small one, as the one-shot path below makes (a
    thread that only ever decodes small tensors never holds a 4 MiB scratch)."""
    if itemsize == 1:
        return target
    return _scratch(size) if size > ONE_SHOT_BYTES else bytearray(size)


def _scratch(size: int) -> memoryview:
    """This thread's chunk-sized buffer for grouped planes, made once: a fresh 4 MiB output per chunk costs a page
    fault per 4 KiB."""
    scratch: bytearray | None = getattr(_local, "scratch", None)
    if scratch is None or len(scratch) < size:
        scratch = _local.scratch = bytearray(max(size, CHUNK_BYTES))
    return memoryview(scratch)[:size]


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


def encode_dense(tensor: Tensor) -> list[bytes]:
    """encode(Bundle("dense", {"value": tensor})), the same bytes; a tensor of one chunk (every packed one) skips
    the general path's per-object work (a thread hand-off, a JSON dump: ~20 us, as much as its bytes cost)."""
    itemsize = dtypes.itemsize(tensor.dtype)
    size = len(memoryview(tensor.data).cast("B"))
    if size == 0 or size > chunk_step(itemsize):
        return encode(Bundle("dense", {"value": tensor}))
    frame = _compress_chunk(tensor.data, itemsize)
    header = dense_header(size, tensor.dtype, len(frame), tensor.shape)
    return [MAGIC, _LENGTH.pack(len(header)), header, frame]


def encode_dense_many(tensors: list[Tensor]) -> list[list[bytes | memoryview]]:
    """[encode_dense(t) for t in tensors], the same bytes (tests/packs_test.py). The one-chunk tensors (every pack
    member) are grouped in one call and compressed in one zstd call (multi_compress_to_buffer: the same frames as
    `compress`) that holds no GIL throughout, so a pack's ~2,000 members compress on a worker thread without
    taking the GIL from the reading thread 2,000 times."""
    itemsizes = [dtypes.itemsize(t.dtype) for t in tensors]
    one_chunk = [0 < t.nbytes <= chunk_step(itemsize) for t, itemsize in zip(tensors, itemsizes)]
    # One buffer of every member's planes, each member compressed on its own (BufferWithSegments: (offset, length)
    # pairs), so that neither grouping nor compressing makes an object per member.
    planes = bytegroup.group_many([(t.data, i) for t, i, fits in zip(tensors, itemsizes, one_chunk) if fits])
    segments = array.array("Q")
    offset = 0
    for tensor, fits in zip(tensors, one_chunk):
        if fits:
            segments.extend((offset, tensor.nbytes))
            offset += tensor.nbytes
    frames = (
        _compressor().multi_compress_to_buffer(zstandard.BufferWithSegments(planes, segments.tobytes()))
        if offset
        else None
    )
    del planes
    encoded: list[list[bytes | memoryview]] = []
    position = 0
    for tensor, fits in zip(tensors, one_chunk):
        if not fits:
            encoded.append([*encode_dense(tensor)])  # empty, or more than one chunk
            continue
        assert frames is not None
        frame = memoryview(frames[position])  # type: ignore[arg-type]  # a view of zstd's one output buffer
        position += 1
        header = dense_header(tensor.nbytes, tensor.dtype, len(frame), tensor.shape)
        encoded.append([MAGIC, _LENGTH.pack(len(header)), header, frame])
    return encoded


# The header of encode_dense, around its four variable parts (chunk size, dtype, frame size, shape): what
# json.dumps(sort_keys, compact separators) writes for it. The compiled decoder (git_theta/densecodec.py) accepts a
# member only when its header is exactly this, spelled from the same parts.
DENSE_HEADER_PARTS = (
    b'{"buffers":[{"chunk_bytes":[',
    b'],"codec":"' + CODEC.encode("ascii") + b'","dtype":"',
    b'","frame_bytes":[',
    b'],"name":"value","shape":[',
    b']}],"fields":{},"kind":"dense"}',
)


def dense_header(size: int, dtype: str, frame_bytes: int, shape: tuple[int, ...]) -> bytes:
    """encode_dense's header for a tensor of `size` bytes in one chunk compressed to `frame_bytes`."""
    middle, tail = _cached_header_pieces(dtype, shape) if plain_shape(shape) else _header_pieces(dtype, shape)
    return b"%s%d%s%d%s" % (DENSE_HEADER_PARTS[0], size, middle, frame_bytes, tail)


def _header_pieces(dtype: str, shape: tuple[int, ...]) -> tuple[bytes, bytes]:
    """The header's text between the chunk size and the frame size, and after the frame size."""
    _, after_size, after_dtype, after_frame, end = DENSE_HEADER_PARTS
    return after_size + dtype.encode("ascii") + after_dtype, after_frame + ",".join(map(str, shape)).encode(
        "ascii"
    ) + end


# A model's tensors have few distinct dtypes and shapes, and spelling them costs more than the rest of the header.
_cached_header_pieces = functools.lru_cache(maxsize=1024)(_header_pieces)


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
    text = bytes(memoryview(data)[start : start + size])
    header = _one_buffer_header(text)
    if header is None:
        try:
            header = loads_bounded(text, MAX_HEADER_DEPTH)
        except ValueError as error:
            raise StoreError(f"object header is not JSON: {error}") from None
        _check_header(header)
    return header, start + size


# The header of an object of one buffer in one chunk, spelled as encode writes it: every pack member of a small
# dense tensor (encode_dense), and of a small tensor's xor update (fields: its base's hash), the most common objects
# by far. Matched and built directly, ~10x faster than the JSON decoder, its depth scan and _check_header; anything
# else, including any other spelling of the same header, takes the general path. Both give the same header and
# make the same checks (the pattern fixes the structure, _one_buffer_header the sizes).
_NUMBER = rb"(?:0|[1-9][0-9]{0,18})"  # as JSON writes an integer: no leading zeros
_ONE_BUFFER_HEADER = re.compile(
    rb'\{"buffers":\[\{"chunk_bytes":\[(' + _NUMBER + rb')\],"codec":"bgzstd","dtype":"([A-Z0-9_]{1,16})",'
    rb'"frame_bytes":\[('
    + _NUMBER
    + rb')\],"name":"([a-z_]{1,32})","shape":\[((?:'
    + _NUMBER
    + rb"(?:,"
    + _NUMBER
    + rb'){0,63})?)\]\}\],"fields":\{(?:"base":"([0-9a-f]{64})")?\},"kind":"([a-z][a-z0-9_-]{0,31})"\}'
)


def _one_buffer_header(text: bytes) -> dict[str, Any] | None:
    """The header, checked as _check_header checks any, or None if it is not spelled as encode writes one of a
    single buffer in one chunk with no fields but a base hash."""
    match = _ONE_BUFFER_HEADER.fullmatch(text)
    if match is None:
        return None
    chunk_text, dtype_text, frame_text, name, shape_text, base, kind = match.groups()
    shape = [int(n) for n in shape_text.split(b",")] if shape_text else []
    buffer: dict[str, Any] = {
        "chunk_bytes": [int(chunk_text)],
        "codec": CODEC,
        "dtype": dtype_text.decode("ascii"),
        "frame_bytes": [int(frame_text)],
        "name": name.decode("ascii"),
        "shape": shape,
    }
    dtype, chunk = buffer["dtype"], buffer["chunk_bytes"][0]
    if dtype not in dtypes.ITEMSIZE or chunk == 0 or buffer["frame_bytes"][0] == 0:
        _check_buffer(buffer)  # raises, saying what is wrong
    elif chunk != _buffer_bytes(dtype, shape) or chunk > chunk_step(dtypes.ITEMSIZE[dtype]):
        _check_buffer(buffer)
    fields = {} if base is None else {"base": base.decode("ascii")}
    return {"buffers": [buffer], "fields": fields, "kind": kind.decode("ascii")}


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
    if len(header["buffers"]) == 1 and len(header["buffers"][0]["chunk_bytes"]) == 1:
        return _decode_one_chunk(data, header, offset, max_bytes)
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
    allocate = _allocator(header)
    for buf in header["buffers"]:
        itemsize = dtypes.itemsize(buf["dtype"])
        output = allocate(sum(buf["chunk_bytes"]))  # every byte is decompressed into below
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


def _allocator(header: dict[str, Any]) -> Callable[[int], bytearray]:
    """Where a decoded buffer comes from: the pool for a tensor's (checkpoints repeat sizes); a fresh bytearray for
    a file's blob, read once per checkout: the pool would keep it idle for the rest of the file (a 10^5-tensor
    safetensors header is 8 MB)."""
    return bytearray if header["kind"] == "blob" else buffer_pool.take


def _decode_one_chunk(data: bytes | mmap.mmap, header: dict[str, Any], offset: int, max_bytes: int) -> Bundle:
    """decode() of an object of one buffer in one chunk (every small tensor's), with the same checks in the same
    order, without the general path's job lists: for a 4 KB tensor those cost as much as decompressing it."""
    buf = header["buffers"][0]
    (raw_len,), (frame_len,) = buf["chunk_bytes"], buf["frame_bytes"]
    if offset + frame_len != len(data):
        raise StoreError(f"object is {len(data)} bytes, its header describes {offset + frame_len}")
    if raw_len > max_bytes:
        raise StoreError(f"object declares {raw_len} bytes of buffers, more than the {max_bytes} its entry can hold")
    _check_frames(data, offset, buf)
    output = _allocator(header)(raw_len)  # every byte is decompressed into below
    _decompress_into(memoryview(data)[offset : offset + frame_len], dtypes.itemsize(buf["dtype"]), memoryview(output))
    return Bundle(header["kind"], {buf["name"]: Tensor(buf["dtype"], tuple(buf["shape"]), output)}, header["fields"])
