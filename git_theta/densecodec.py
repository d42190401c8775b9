"""Decode a batch of small dense pack members at once: the common case of a checkout of many small tensors.

A member qualifies when it is exactly what objects.encode_dense writes for a tensor of one chunk, of the dtype and
shape its entry records: the magic, the header length, the header spelled from objects.DENSE_HEADER_PARTS, and one
zstd frame declaring and holding the tensor's bytes, nothing after it. Such a member decodes to its raw tensor
bytes (planes ungrouped); any other is None, and the caller decodes it with objects.decode, the reference, whose
errors say what is wrong. A member decoded here is still only as good as its hash: smudge checks that.

The C extension git_theta._densecodec does it in ~63k instructions per 4 KB fp32 member, ~56k of them zstd's own
decoding (objects.decode: ~143k), with the GIL released while decompressing. When it was not built,
`decode_dense` does the same checks in Python, and IMPLEMENTATION says so (smudge then leaves every member to
objects.decode).
Decode only: objects are named by their bytes, and compressing stays with python-zstandard (objects.py).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import zstandard

from git_theta import buffer_pool, bytegroup, dtypes, objects

Buffer = bytes | bytearray | memoryview

_decode: (
    Callable[
        [
            list[Buffer],
            list[str],
            list[tuple[int, ...]],
            dict[str, int],
            bytes,
            tuple[bytes, ...],
            int,
            Callable[[int], bytearray],
            int,
        ],
        list[bytearray | None],
    ]
    | None
)
try:
    from git_theta._densecodec import decode_dense as _decode
except ImportError:
    _decode = None

IMPLEMENTATION = "python" if _decode is None else "c"
_LENGTH = struct.Struct("<I")


def decode_dense(
    members: list[Buffer], dtype_names: list[str], shapes: list[tuple[int, ...]]
) -> list[bytearray | None]:
    """Per member, the bytes of its `dtype_names[i]` tensor of `shapes[i]`, or None when it is not a fast case."""
    if len(members) != len(dtype_names) or len(members) != len(shapes):
        raise ValueError("members, dtypes and shapes differ in length")
    if _decode is not None:
        return _decode(
            members,
            dtype_names,
            shapes,
            dtypes.BITS,
            objects.MAGIC,
            objects.DENSE_HEADER_PARTS,
            objects.CHUNK_BYTES,
            buffer_pool.take,  # a tensor of a megabyte or more into a reused buffer, as objects.decode does
            buffer_pool.MIN_BYTES,
        )
    return [decode_one(member, dtype, shape) for member, dtype, shape in zip(members, dtype_names, shapes)]


def decode_one(member: Buffer, dtype: str, shape: tuple[int, ...]) -> bytearray | None:
    """What the extension does for one member, in Python (the fallback, and the tests' second opinion)."""
    bits = dtypes.BITS.get(dtype)
    if bits is None or len(shape) > 64 or not all(type(n) is int and n >= 0 for n in shape):
        return None
    elements = 1
    for n in shape:
        elements *= n
    itemsize = dtypes.ITEMSIZE[dtype]
    size, part = divmod(elements * bits, 8)
    if size == 0 or part or size > objects.chunk_step(itemsize):
        return None
    data = memoryview(member).cast("B")
    start = len(objects.MAGIC) + _LENGTH.size
    if len(data) < start or data[: len(objects.MAGIC)] != objects.MAGIC:
        return None
    (header_len,) = _LENGTH.unpack_from(data, len(objects.MAGIC))
    frame_len = len(data) - start - header_len
    if frame_len <= 0:
        return None
    if data[start : start + header_len] != objects.dense_header(size, dtype, frame_len, shape):
        return None
    frame = data[start + header_len :]
    try:
        params = zstandard.get_frame_parameters(frame)
        if params.content_size != size:
            return None
        # one frame, nothing after it: python-zstandard's decompress would ignore trailing bytes
        decompressor = zstandard.ZstdDecompressor()
        reader = decompressor.decompressobj()
        grouped = reader.decompress(frame)
        if not reader.eof or reader.unused_data or len(grouped) != size:
            return None
    except zstandard.ZstdError:
        return None
    output = bytearray(size)
    bytegroup.ungroup_into(grouped, output, itemsize)
    return output
