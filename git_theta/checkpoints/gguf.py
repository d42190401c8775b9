"""GGUF (llama.cpp, Ollama): a header of typed key-value metadata and tensor infos, then aligned tensor data.

Layout (little-endian, versions 2 and 3): magic "GGUF", u32 version, u64 tensor count, u64 KV count, the KV
pairs (string key, u32 value type, value), the tensor infos (string name, u32 n_dims, u64 dims, u32 ggml type,
u64 offset into the data section), padding up to `general.alignment` (default 32), then the data section. A
string is a u64 length and that many bytes; an array is a u32 item type, a u64 count and the items.

Every byte that is not tensor data (header, padding before the data and between tensors, bytes after the last
one) goes, in file order, into one skeleton blob; checkout parses the skeleton again to know where each tensor
goes, so the file comes back byte for byte. The reader is written here (not through the `gguf` package): it
streams, bounds everything before allocating, and costs nothing at start-up.

Shapes: GGUF lists dims fastest first (ne[0] is the innermost axis); parameter groups use the numpy/torch order,
dims reversed. Quantized block types are opaque: a U8 group of the exact byte length; the file section's
`packed` map gives each one's ggml type name and logical shape (numpy order), which the merge engine and the
diff views read to refuse value arithmetic on them and to show them by type.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, cast

from git_theta.checkpoints.base import (
    MAX_RANK,
    MAX_TENSOR_BYTES,
    READ_CHUNK,
    CheckpointFormat,
    LimitError,
    ParamSink,
    ParamSource,
    checked_shape,
    read_into,
    shown,
)
from git_theta.errors import CheckpointError
from git_theta.metadata import ParamEntry
from git_theta.tensor import Tensor

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
# Limits on what a file declares (docs/formats.md, "Checkpoint files"), checked before anything is allocated.
# The header (magic to the last tensor info) is read in small pieces and never beyond MAX_HEADER_BYTES; every
# count is also checked against what the header bytes left could hold. The skeleton (header, padding, bytes after
# the last tensor) becomes one blob object, so it stays below objects.MAX_BLOB_BYTES.
MAX_HEADER_BYTES = 64 << 20
MAX_SKELETON_BYTES = 128 << 20
MAX_TENSORS = 1_000_000
MAX_KV = 1_000_000
MAX_ALIGNMENT = 1 << 20
MAX_ARRAY_DEPTH = 8

# ggml types stored as our dtypes (element for element).
PLAIN = {0: "F32", 1: "F16", 30: "BF16", 28: "F64", 24: "I8", 25: "I16", 26: "I32", 27: "I64"}
# ggml block types: type id -> (name, elements per block, bytes per block), from gguf-py's GGML_QUANT_SIZES
# (gguf 0.19.0, gguf/constants.py). ne[0] must be a multiple of the block size.
BLOCKS: dict[int, tuple[str, int, int]] = {
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    29: ("IQ1_M", 256, 56),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
}
# KV value types: fixed sizes; 8 is a string, 9 an array.
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY, _UINT32 = 8, 9, 4
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
# Fewest bytes a KV pair / tensor info can take (empty key, one-byte value / no dims, empty name).
_MIN_KV, _MIN_INFO = 8 + 4 + 1, 8 + 4 + 4 + 8
_READ_AHEAD = 64 << 10


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]  # GGUF order: dims[0] is the fastest axis
    ggml_type: int
    offset: int  # from the start of the data section
    nbytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """The numpy/torch shape: GGUF dims reversed."""
        return tuple(reversed(self.dims))

    @property
    def dtype(self) -> str:
        return PLAIN.get(self.ggml_type, "U8")

    @property
    def group_shape(self) -> tuple[int, ...]:
        """The parameter group's shape: the real one, or [bytes] for a quantized tensor."""
        return self.shape if self.ggml_type in PLAIN else (self.nbytes,)

    @property
    def type_name(self) -> str:
        return BLOCKS[self.ggml_type][0] if self.ggml_type in BLOCKS else self.dtype


@dataclass(frozen=True)
class Header:
    header_end: int  # where the last tensor info ends
    data_start: int  # header bytes plus the padding up to the data section
    tensors: list[TensorInfo]  # sorted by offset

    def packed(self) -> dict[str, dict[str, Any]]:
        """The file section's `packed` map: quantized groups -> ggml type name and logical (numpy-order) shape."""
        return {t.name: {"shape": list(t.shape), "type": t.type_name} for t in self.tensors if t.ggml_type not in PLAIN}


class _Reader:
    """Reads the header from a stream in small pieces, keeping every byte (the skeleton starts with them)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.position = 0
        self.limit = MAX_HEADER_BYTES

    def left(self) -> int:
        return self.limit - self.position

    def skip(self, size: int) -> int:
        """Consume `size` bytes; their start in the buffer."""
        start, end = self.position, self.position + size
        if end > self.limit:
            raise LimitError(f"GGUF header is larger than the limit of {MAX_HEADER_BYTES} bytes")
        while len(self.buffer) < end:
            chunk = self.stream.read(max(end - len(self.buffer), _READ_AHEAD))
            if not chunk:
                raise CheckpointError(
                    f"file ends early, inside the GGUF header at byte {len(self.buffer)} (truncated?)"
                )
            self.buffer += chunk
        self.position = end
        return start

    def u32(self) -> int:
        return int(_U32.unpack_from(self.buffer, self.skip(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack_from(self.buffer, self.skip(8))[0])

    def string(self, what: str) -> bytes:
        size = self.u64()
        if size > self.left():
            raise LimitError(
                f"{what} declares a string of {size} bytes, more than the header limit of {MAX_HEADER_BYTES} can hold"
            )
        start = self.skip(size)
        return bytes(self.buffer[start : start + size])

    def name(self, what: str) -> str:
        raw = self.string(what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{what} {shown(raw)} is not valid UTF-8") from None

    def rest(self) -> bytes:
        """Bytes read ahead past the position (the start of what follows)."""
        return bytes(self.buffer[self.position :])


def _count(value: int, limit: int, smallest: int, reader: _Reader, what: str) -> int:
    if value > limit or value * smallest > reader.left():
        raise LimitError(
            f"GGUF header declares {value} {what}, more than the limit of {limit} or than the header can hold"
        )
    return value


def _skip_value(reader: _Reader, kind: int, key: str, depth: int = 0) -> None:
    if kind in _FIXED:
        reader.skip(_FIXED[kind])
    elif kind == _STRING:
        reader.string(f"value of {shown(key)}")
    elif kind == _ARRAY:
        item, count = reader.u32(), reader.u64()
        if depth >= MAX_ARRAY_DEPTH:
            raise LimitError(f"value of {shown(key)} nests arrays deeper than the limit of {MAX_ARRAY_DEPTH}")
        smallest = _FIXED.get(item, 8 if item == _STRING else 12)
        _count(count, MAX_HEADER_BYTES, smallest, reader, f"array items in {shown(key)}")
        if item in _FIXED:
            reader.skip(count * _FIXED[item])
            return
        for _ in range(count):
            _skip_value(reader, item, key, depth + 1)
    else:
        raise CheckpointError(f"key {shown(key)} has unknown GGUF value type {kind}")


def _version(reader: _Reader) -> None:
    if bytes(reader.buffer[reader.skip(4) : 4]) != MAGIC:
        raise CheckpointError("not a GGUF file (no GGUF magic)")
    version = reader.u32()
    if version in VERSIONS:
        return
    if version & 0xFFFF == 0 and version >> 16:
        raise CheckpointError(f"big-endian GGUF files are not supported (version field {version:#010x})")
    if version == 1:
        raise CheckpointError("GGUF version 1 is not supported (only 2 and 3); convert it with llama.cpp's tools")
    raise CheckpointError(f"unknown GGUF version {version} (known: 2, 3)")


def _alignment(reader: _Reader, kv_count: int) -> int:
    """Read every KV pair; the value of general.alignment (u32, a power of two) or the default."""
    alignment = DEFAULT_ALIGNMENT
    keys: set[str] = set()
    for _ in range(kv_count):
        key = reader.name("a metadata key")
        if key in keys:
            raise CheckpointError(f"metadata key {shown(key)} appears twice")
        keys.add(key)
        kind = reader.u32()
        if key != "general.alignment":
            _skip_value(reader, kind, key)
            continue
        if kind != _UINT32:
            raise CheckpointError(f"general.alignment has value type {kind}, not UINT32 ({_UINT32})")
        alignment = reader.u32()
        if not 0 < alignment <= MAX_ALIGNMENT or alignment & (alignment - 1):
            raise CheckpointError(
                f"general.alignment {alignment} is not a power of two up to the limit of {MAX_ALIGNMENT}"
            )
    return alignment


def _tensor_info(reader: _Reader) -> TensorInfo:
    name = reader.name("a tensor name")
    if not name:
        raise CheckpointError("a tensor has an empty name")
    n_dims = reader.u32()
    if n_dims > MAX_RANK:
        raise CheckpointError(f"tensor {shown(name)} has {n_dims} dimensions, more than the limit of {MAX_RANK}")
    dims = tuple(reader.u64() for _ in range(n_dims))
    ggml_type, offset = reader.u32(), reader.u64()
    if ggml_type in PLAIN:
        _, nbytes = checked_shape(list(reversed(dims)), PLAIN[ggml_type], f"tensor {shown(name)}")
    elif ggml_type in BLOCKS:
        type_name, block, size = BLOCKS[ggml_type]
        if any(n > MAX_TENSOR_BYTES for n in dims) or (n_dims and dims[0] % block):
            raise CheckpointError(
                f"tensor {shown(name)}: {type_name} needs dims[0] a multiple of {block}, got {list(dims)}"
            )
        nbytes = math.prod(dims) // block * size
        if nbytes > MAX_TENSOR_BYTES:
            raise CheckpointError(
                f"tensor {shown(name)}: {type_name} dims {list(dims)} exceed {MAX_TENSOR_BYTES} bytes"
            )
    else:
        raise CheckpointError(f"tensor {shown(name)} has unknown ggml type {ggml_type}")
    if offset > MAX_TENSOR_BYTES - nbytes:
        raise CheckpointError(f"tensor {shown(name)} has offset {offset}, past any file")
    return TensorInfo(name, dims, ggml_type, offset, nbytes)


def read_header(reader: _Reader) -> Header:
    """Parse and check the header; the reader stops where the data section starts (after the padding)."""
    _version(reader)
    tensor_count = _count(reader.u64(), MAX_TENSORS, _MIN_INFO, reader, "tensors")
    kv_count = _count(reader.u64(), MAX_KV, _MIN_KV, reader, "metadata keys")
    alignment = _alignment(reader, kv_count)
    _count(tensor_count, MAX_TENSORS, _MIN_INFO, reader, "tensors")
    infos, names = [], set()
    for _ in range(tensor_count):
        infos.append(_tensor_info(reader))
        if infos[-1].name in names:
            raise CheckpointError(f"tensor name {shown(infos[-1].name)} appears twice")
        names.add(infos[-1].name)
    header_end = reader.position
    data_start = header_end + (-header_end % alignment)
    reader.limit = data_start  # the padding may end past MAX_HEADER_BYTES (by less than the alignment)
    reader.skip(data_start - reader.position)
    infos.sort(key=lambda info: info.offset)
    skeleton = data_start
    end, last = 0, ""
    for info in infos:
        if info.offset < end:
            where = f"(offset {info.offset}) overlaps {shown(last)}, which ends at {end}"
            raise CheckpointError(f"tensor {shown(info.name)} {where}")
        skeleton += info.offset - end
        end, last = info.offset + info.nbytes, info.name
    if skeleton > MAX_SKELETON_BYTES:
        raise LimitError(
            f"GGUF header and gaps between tensors take {skeleton} bytes, more than the limit of {MAX_SKELETON_BYTES}"
        )
    return Header(header_end, data_start, infos)


class _Joined:
    """`head`, then the rest of `stream`: the bytes the header reader read ahead come first."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self.head = memoryview(head)
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        if self.head:
            piece = bytes(self.head[: size if size >= 0 else len(self.head)])
            self.head = self.head[len(piece) :]
            return piece
        return self.stream.read(size)


class GgufFormat(CheckpointFormat):
    name = "gguf"
    extensions = (".gguf",)

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        # Any version: a GGUF file of a version we do not read gets a clear error from `read`.
        return head[:4] == MAGIC

    def read(self, stream: BinaryIO, path: str, sink: ParamSink) -> dict[str, Any]:
        reader = _Reader(stream)
        header = read_header(reader)
        skeleton = bytearray(reader.buffer[: header.data_start])
        data = cast(IO[bytes], _Joined(reader.rest(), stream))
        del reader
        end = 0
        for info in header.tensors:
            gap = info.offset - end
            try:
                skeleton += read_into(data, gap)
                tensor = read_into(data, info.nbytes)
            except CheckpointError as error:
                raise CheckpointError(
                    f"tensor {shown(info.name)} (data offset {info.offset}, {info.nbytes} bytes): {error} (truncated?)"
                ) from None
            sink.add(info.name, Tensor(info.dtype, info.group_shape, tensor))
            del tensor
            end = info.offset + info.nbytes
        while trailing := data.read(READ_CHUNK):
            skeleton += trailing
            if len(skeleton) > MAX_SKELETON_BYTES:
                raise LimitError(
                    f"the bytes after the last tensor take the skeleton past the limit of {MAX_SKELETON_BYTES} bytes"
                )
        file: dict[str, Any] = {"skeleton": sink.put_blob(bytes(skeleton))}  # stored last: a truncated file leaves none
        packed = header.packed()
        if packed:
            file["packed"] = packed
        return file

    def write(
        self, file: Mapping[str, Any], params: Mapping[str, ParamEntry], source: ParamSource, out: BinaryIO
    ) -> None:
        skeleton = source.get_blob(file["skeleton"])
        reader = _Reader(io.BytesIO(skeleton))
        header = read_header(reader)
        for info in header.tensors:
            entry = params.get(info.name)
            if entry is None or (entry.dtype, entry.shape) != (info.dtype, info.group_shape):
                raise CheckpointError(f"metadata does not match the stored GGUF header for tensor {info.name!r}")
        if file.get("packed", {}) != header.packed():
            raise CheckpointError("the file section's `packed` map does not match the stored GGUF header")
        gaps = sum(b.offset - (a.offset + a.nbytes) for a, b in zip(header.tensors, header.tensors[1:]))
        gaps += header.tensors[0].offset if header.tensors else 0
        if len(skeleton) < header.data_start + gaps:
            raise CheckpointError("the stored GGUF skeleton is shorter than its header says")
        out.write(skeleton[: header.data_start])
        position, end = header.data_start, 0
        for info, tensor in zip(header.tensors, source.tensors([info.name for info in header.tensors])):
            gap = info.offset - end
            out.write(skeleton[position : position + gap])
            out.write(tensor.data)
            position, end = position + gap, info.offset + info.nbytes
        out.write(skeleton[position:])
