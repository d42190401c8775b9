"""TensorFlow tensor bundles' `.index` files: a LevelDB-style table of BundleEntryProto, read without TensorFlow.

The table (TensorFlow's tsl/lib/io/table, LevelDB's format): data blocks of prefix-compressed key/value entries
with a restart array, an index block mapping the last key of each data block to its handle (two varints: offset,
size), a meta-index block, and a 48-byte footer holding the two handles and the magic 0xdb4775248b80fb57. Every
block is followed by a type byte (0 = uncompressed; 1 = snappy, which TensorFlow never writes and git-theta
refuses) and the masked CRC-32C of block and type byte. The empty key holds a BundleHeaderProto; every other key
is a checkpoint key whose value is a BundleEntryProto: dtype, shape, shard, offset, size and masked CRC-32C of
the tensor's bytes in `<prefix>.data-<shard>-of-<shards>`.

Everything the file declares is checked against the file (handles inside it, entries inside their block) and
against the limits below before it is used (docs/formats.md, "Checkpoint files").
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from git_theta import crc32c
from git_theta.checkpoints.base import MAX_RANK, MAX_TENSOR_BYTES, LimitError
from git_theta.errors import CheckpointError

# The largest .index git-theta reads (it is held in memory and stored as one object): ~100 bytes a variable,
# so this is millions of variables.
MAX_INDEX_BYTES = 256 << 20
MAX_ENTRIES = 1_000_000
# A key is rebuilt from the previous one (prefix compression), so a few bytes of file can declare a long key: the
# length of one key and of all keys together are bounded (TensorFlow's keys are paths of ~50-200 bytes).
MAX_KEY_BYTES = 4 << 10
MAX_KEY_TOTAL_BYTES = 128 << 20
MAX_SHARDS = 100_000

MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER_BYTES = 5
_U32 = struct.Struct("<I")

# TensorFlow DataType enum values (types.proto) git-theta has a dtype for; the others (strings, resources,
# variants, complex, quantized) stay raw bytes in the data file.
DTYPES = {
    1: "F32",
    2: "F64",
    3: "I32",
    4: "U8",
    5: "I16",
    6: "I8",
    9: "I64",
    10: "BOOL",
    14: "BF16",
    17: "U16",
    19: "F16",
    22: "U32",
    23: "U64",
    24: "F8_E5M2",
    25: "F8_E4M3",
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One BundleEntryProto. `key` is None when it is not a name (see _key_name); `dtype` is git-theta's name, or
    None for a type kept raw; `shape` None when the rank is unknown; `sliced` for a partitioned variable's full
    entry (its data lives under slice keys)."""

    key: str | None
    dtype: str | None
    shape: tuple[int, ...] | None
    shard: int
    offset: int
    size: int
    masked_crc: int
    sliced: bool


@dataclass(frozen=True)
class Bundle:
    num_shards: int
    little_endian: bool
    entries: list[Entry]


def _varint(data: bytes, position: int, end: int) -> tuple[int, int]:
    """(value, next position) of a base-128 varint of at most 10 bytes inside data[:end]."""
    value = shift = 0
    while True:
        if position >= end or shift > 63:
            raise CheckpointError("bad varint (truncated or over 64 bits)")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, position
        shift += 7


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int | tuple[int, int]]]:
    """(field number, wire type, value) of a protobuf message; length-delimited values as (start, end)."""
    for number, wire, value, _ in _field_spans(data, start, end):
        yield number, wire, value


def _field_spans(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int | tuple[int, int], int]]:
    """As _fields, plus where each value's bytes start (rewrite_crcs patches a fixed32 in place)."""
    position = start
    while position < end:
        tag, position = _varint(data, position, end)
        number, wire = tag >> 3, tag & 7
        value_start = position
        value: int | tuple[int, int]
        if wire == 0:
            value, position = _varint(data, position, end)
        elif wire == 1 or wire == 5:
            width = 8 if wire == 1 else 4
            if position + width > end:
                raise CheckpointError("protobuf field runs past its message")
            value = int.from_bytes(data[position : position + width], "little")
            position += width
        elif wire == 2:
            length, position = _varint(data, position, end)
            if length > end - position:
                raise CheckpointError("protobuf field runs past its message")
            value = (position, position + length)
            position += length
        else:
            raise CheckpointError(f"protobuf wire type {wire} is not used by bundle entries")
        yield number, wire, value, value_start


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _shape(data: bytes, start: int, end: int, key: str | None) -> tuple[int, ...] | None:
    dims: list[int] = []
    for number, wire, value in _fields(data, start, end):
        if number == 3 and wire == 0 and value:
            return None  # unknown rank
        if number == 2 and isinstance(value, tuple):
            if len(dims) == MAX_RANK:
                raise LimitError(f"variable {str(key)[:80]!r} has more than {MAX_RANK} dimensions")
            size = 0
            for dim_number, dim_wire, dim_value in _fields(data, *value):
                if dim_number == 1 and dim_wire == 0 and isinstance(dim_value, int):
                    size = _signed(dim_value)
            if size < 0:
                return None  # a dimension of unknown size
            dims.append(size)
    return tuple(dims)


def _entry(key: str | None, data: bytes, start: int, end: int) -> Entry:
    dtype_enum = shard = offset = size = masked_crc = 0
    shape: tuple[int, ...] | None = ()
    sliced = False
    for number, _wire, value in _fields(data, start, end):
        if isinstance(value, tuple):
            if number == 2:
                shape = _shape(data, value[0], value[1], key)
            elif number == 7:
                sliced = True
        elif number == 1:
            dtype_enum = value
        elif number == 3:
            shard = _signed(value)
        elif number == 4:
            offset = _signed(value)
        elif number == 5:
            size = _signed(value)
        elif number == 6:
            masked_crc = value
    if not 0 <= offset <= MAX_TENSOR_BYTES or not 0 <= size <= MAX_TENSOR_BYTES or not 0 <= shard < MAX_SHARDS:
        raise CheckpointError(
            f"variable {str(key)[:80]!r} declares shard {shard}, offset {offset}, size {size}: out of range"
        )
    return Entry(key, DTYPES.get(dtype_enum), shape, shard, offset, size, masked_crc, sliced)


def _block(data: bytes, offset: int, size: int, what: str) -> tuple[int, int]:
    """(start, end) of a block's contents, after checking it lies inside the file and its CRC-32C."""
    limit = len(data) - FOOTER_BYTES
    if offset > limit or size > limit - offset or BLOCK_TRAILER_BYTES > limit - offset - size:
        raise CheckpointError(f"{what} block [{offset}, +{size}] lies outside the file ({len(data)} bytes)")
    kind = data[offset + size]
    if kind != 0:
        raise CheckpointError(
            f"{what} block is compressed (type {kind}); TensorFlow writes uncompressed blocks, "
            "git-theta reads only those"
        )
    (stored,) = _U32.unpack_from(data, offset + size + 1)
    if crc32c.unmask(stored) != crc32c.crc32c(memoryview(data)[offset : offset + size + 1]):
        raise CheckpointError(f"{what} block at byte {offset}: CRC-32C mismatch, the file is corrupt")
    return offset, offset + size


def _block_entries(data: bytes, start: int, end: int, what: str) -> Iterator[tuple[bytes, int, int]]:
    """(key, value start, value end) of each entry of a block: shared prefix + own bytes, then the restarts."""
    if end - start < 4:
        raise CheckpointError(f"{what} block is too short for its restart count")
    (restarts,) = _U32.unpack_from(data, end - 4)
    if restarts > (end - start - 4) // 4:
        raise CheckpointError(f"{what} block declares {restarts} restart points, more than it can hold")
    entries_end = end - 4 - 4 * restarts
    key = b""
    position = start
    while position < entries_end:
        shared, position = _varint(data, position, entries_end)
        own, position = _varint(data, position, entries_end)
        length, position = _varint(data, position, entries_end)
        if shared > len(key) or shared + own > MAX_KEY_BYTES:
            raise CheckpointError(
                f"{what} block has a key of {shared} + {own} bytes (previous key: {len(key)} bytes, "
                f"limit {MAX_KEY_BYTES})"
            )
        if own > entries_end - position or length > entries_end - position - own:
            raise CheckpointError(f"{what} block has an entry that runs past the block")
        key = key[:shared] + data[position : position + own]
        position += own
        yield key, position, position + length
        position += length


def parse_index(data: bytes) -> Bundle:
    """The bundle an .index file describes; CheckpointError (or LimitError) if it is not a valid one."""
    if len(data) > MAX_INDEX_BYTES:
        raise LimitError(f"the index is {len(data)} bytes, more than the limit of {MAX_INDEX_BYTES}")
    if len(data) < FOOTER_BYTES or int.from_bytes(data[-8:], "little") != MAGIC:
        raise CheckpointError("not a TensorFlow bundle index (no table footer magic 0xdb4775248b80fb57)")
    footer = len(data) - FOOTER_BYTES
    _, position = _varint(data, footer, footer + 40)  # meta-index offset and size: TensorFlow writes none it needs
    _, position = _varint(data, position, footer + 40)
    index_offset, position = _varint(data, position, footer + 40)
    index_size, _ = _varint(data, position, footer + 40)
    index_start, index_end = _block(data, index_offset, index_size, "index")
    entries: list[Entry] = []
    header: tuple[int, bool] | None = None
    previous: bytes | None = None
    next_block = key_bytes = 0
    for _, handle_start, handle_end in _block_entries(data, index_start, index_end, "index"):
        block_offset, after = _varint(data, handle_start, handle_end)
        block_size, _ = _varint(data, after, handle_end)
        if block_offset < next_block:  # the writer appends blocks: each is read (and its CRC computed) once
            raise CheckpointError(f"data block at byte {block_offset} overlaps or precedes the one before it")
        start, end = _block(data, block_offset, block_size, "data")
        next_block = end + BLOCK_TRAILER_BYTES
        for raw_key, value_start, value_end in _block_entries(data, start, end, "data"):
            if previous is not None and raw_key <= previous:
                raise CheckpointError("index keys are not in increasing order")
            previous = raw_key
            key_bytes += len(raw_key)
            if key_bytes > MAX_KEY_TOTAL_BYTES:
                raise LimitError(f"the index's keys add up to more than the limit of {MAX_KEY_TOTAL_BYTES} bytes")
            if not raw_key:
                header = _header(data, value_start, value_end)
                continue
            if len(entries) == MAX_ENTRIES:
                raise LimitError(f"the index declares more than the limit of {MAX_ENTRIES} variables")
            entries.append(_entry(_key_name(raw_key), data, value_start, value_end))
    if header is None:
        raise CheckpointError("the index has no bundle header (the entry under the empty key)")
    num_shards, little_endian = header
    for entry in entries:
        if entry.shard >= num_shards and not entry.sliced:
            raise CheckpointError(f"variable {str(entry.key)[:80]!r} is in shard {entry.shard} of {num_shards}")
    return Bundle(num_shards, little_endian, entries)


def _key_name(raw: bytes) -> str | None:
    """A key as a parameter group name. A slice of a partitioned variable (what a sharding policy writes) has the
    binary key NUL + variable name + NUL + the slice spec: named `<variable>#slice-<spec in hex>`. None for a key
    that is not UTF-8 otherwise: its tensor stays raw bytes."""
    try:
        if raw.startswith(b"\x00") and b"\x00" in raw[1:]:
            name, spec = raw[1:].split(b"\x00", 1)
            return f"{name.decode('utf-8')}#slice-{spec.hex()}"
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _header(data: bytes, start: int, end: int) -> tuple[int, bool]:
    num_shards, endianness = 0, 0
    for number, _wire, value in _fields(data, start, end):
        if number == 1 and isinstance(value, int):
            num_shards = _signed(value)
        elif number == 2 and isinstance(value, int):
            endianness = value
    if not 1 <= num_shards <= MAX_SHARDS:
        raise CheckpointError(f"the bundle header declares {num_shards} shards (1 to {MAX_SHARDS})")
    return num_shards, endianness == 0


def rewrite_crcs(data: bytes, crcs: Mapping[str, int]) -> bytes:
    """The index `data` with the masked CRC-32C of each entry named in `crcs` (by its group name, see _key_name)
    replaced, and the trailer of each block that changed recomputed.

    BundleEntryProto.crc32c is a fixed32, so only those 4 bytes of an entry change: keys, handles and the footer
    keep their places, and the file keeps its length. An entry without the field (proto3 omits a CRC of 0, which
    TensorFlow never writes for a tensor it saved) cannot be patched in place and is refused, as is a name the
    index does not hold.
    """
    parse_index(data)  # every handle and block checked, so the walk below only finds places
    out = bytearray(data)
    footer = len(data) - FOOTER_BYTES
    _, position = _varint(data, footer, footer + 40)
    _, position = _varint(data, position, footer + 40)
    index_offset, position = _varint(data, position, footer + 40)
    index_size, _ = _varint(data, position, footer + 40)
    index_start, index_end = _block(data, index_offset, index_size, "index")
    remaining = dict(crcs)
    for _, handle_start, handle_end in _block_entries(data, index_start, index_end, "index"):
        block_offset, after = _varint(data, handle_start, handle_end)
        block_size, _ = _varint(data, after, handle_end)
        start, end = _block(data, block_offset, block_size, "data")
        changed = False
        for raw_key, value_start, value_end in _block_entries(data, start, end, "data"):
            name = _key_name(raw_key) if raw_key else None
            if name is None or name not in remaining:
                continue
            crc = remaining.pop(name)
            spans = [at for number, _, _, at in _field_spans(data, value_start, value_end) if number == 6]
            if len(spans) != 1 or data[spans[0] - 1] != (6 << 3 | 5):
                raise CheckpointError(f"variable {name[:80]!r} has no single fixed32 CRC-32C field to rewrite")
            _U32.pack_into(out, spans[0], crc)
            changed = True
        if changed:  # the block's trailer: masked CRC-32C of its bytes and its type byte
            trailer = crc32c.mask(crc32c.crc32c(memoryview(out)[start : end + 1]))
            _U32.pack_into(out, end + 1, trailer)
    if remaining:
        raise CheckpointError(f"the index has no variable {next(iter(remaining))[:80]!r}")
    return bytes(out)
