"""The .index reader on tables built here byte by byte (valid and hostile); real TensorFlow files are read in
tensorflow_test.py. `build_index` writes the LevelDB table layout TensorFlow's writer uses."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pytest

from git_theta import crc32c
from git_theta.checkpoints import tensor_bundle
from git_theta.checkpoints.base import LimitError
from git_theta.checkpoints.tensor_bundle import MAGIC, Entry, parse_index
from git_theta.errors import CheckpointError


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, bytes):
        return varint(number << 3 | 2) + varint(len(value)) + value
    return varint(number << 3) + varint(value)


def entry_proto(dtype: int, shape: Sequence[int], offset: int, size: int, crc: int, shard: int = 0) -> bytes:
    dims = b"".join(field(2, field(1, n)) for n in shape)
    return (
        field(1, dtype)
        + field(2, dims)
        + field(3, shard)
        + field(4, offset)
        + field(5, size)
        + varint(6 << 3 | 5)
        + struct.pack("<I", crc32c.mask(crc))
    )


def header_proto(shards: int = 1, endianness: int = 0) -> bytes:
    return field(1, shards) + field(2, endianness) + field(3, field(1, 1))


def block(items: Sequence[tuple[bytes, bytes]], kind: int = 0) -> bytes:
    """A block with prefix-compressed keys and one restart point, plus its trailer."""
    body = bytearray()
    previous = b""
    for key, value in items:
        shared = 0
        while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
            shared += 1
        body += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        previous = key
    body += struct.pack("<II", 0, 1)
    return bytes(body) + bytes([kind]) + struct.pack("<I", crc32c.mask(crc32c.crc32c(bytes(body) + bytes([kind]))))


def build_index(items: Sequence[tuple[bytes, bytes]], kind: int = 0) -> bytes:
    data = block(items, kind)
    meta = block([])
    index = block([(items[-1][0] if items else b"", varint(0) + varint(len(data) - 5))])
    handles = varint(len(data)) + varint(len(meta) - 5) + varint(len(data) + len(meta)) + varint(len(index) - 5)
    return data + meta + index + handles + bytes(40 - len(handles)) + struct.pack("<Q", MAGIC)


def sample(extra: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    items = [
        (b"", header_proto()),
        (b"layer/bias", entry_proto(1, [3], 0, 12, 0x1234)),
        (b"layer/kernel", entry_proto(14, [2, 3], 12, 12, 0x5678)),
        (b"text", entry_proto(7, [1], 24, 9, 0)),
        *extra,
    ]
    return build_index(sorted(items))


def test_reads_entries_and_header() -> None:
    bundle = parse_index(sample())
    assert bundle.num_shards == 1 and bundle.little_endian
    assert bundle.entries == [
        Entry("layer/bias", "F32", (3,), 0, 0, 12, crc32c.mask(0x1234), False),
        Entry("layer/kernel", "BF16", (2, 3), 0, 12, 12, crc32c.mask(0x5678), False),
        Entry("text", None, (1,), 0, 24, 9, crc32c.mask(0), False),
    ]


def _refused(data: bytes, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        parse_index(data)


def test_slice_keys_are_named_and_other_binary_keys_are_not() -> None:
    bundle = parse_index(
        build_index(
            [
                (b"", header_proto()),
                (b"\x00w\x00\x01\x02", entry_proto(1, [1], 0, 4, 0)),
                (b"\xff", entry_proto(1, [1], 4, 4, 0)),
            ]
        )
    )
    assert [entry.key for entry in bundle.entries] == ["w#slice-0102", None]


def test_hostile_tables_are_refused() -> None:
    good = sample()
    _refused(good[:-1], "footer magic")
    _refused(b"", "footer magic")
    flipped = bytearray(good)
    flipped[5] ^= 1
    _refused(bytes(flipped), "CRC-32C mismatch")
    _refused(build_index([(b"", header_proto())], kind=1), "compressed")
    # the index handle points past the end of the file
    footer = len(good) - 48
    far = good[:footer] + varint(0) + varint(0) + varint(1 << 40) + varint(10) + bytes(40 - 9) + good[-8:]
    _refused(far, "outside the file")
    _refused(build_index([(b"", header_proto(shards=0))]), "declares 0 shards")
    _refused(build_index([(b"a", entry_proto(1, [1], 0, 4, 0))]), "no bundle header")
    _refused(build_index([(b"", header_proto()), (b"a", entry_proto(1, [1], 0, 4, 0, shard=3))]), "shard 3 of 1")
    _refused(build_index([(b"", header_proto()), (b"a", entry_proto(1, [1], -1, 4, 0))]), "out of range")


def test_absurd_counts_and_lengths_are_refused() -> None:
    # a restart count larger than the block, a key sharing more than the previous key has, a value past the block
    body = varint(0) + varint(0) + varint(2) + header_proto()[:2] + struct.pack("<I", 1 << 30)
    data = body + b"\x00" + struct.pack("<I", crc32c.mask(crc32c.crc32c(body + b"\x00")))
    index = block([(b"", varint(0) + varint(len(body)))])
    meta = block([])
    handles = varint(len(data)) + varint(len(meta) - 5) + varint(len(data) + len(meta)) + varint(len(index) - 5)
    _refused(data + meta + index + handles + bytes(40 - len(handles)) + struct.pack("<Q", MAGIC), "restart points")
    shared = bytearray(block([(b"", header_proto())]))
    shared[0] = 5  # shares 5 bytes with a previous key of none
    body = bytes(shared[:-5])
    fixed = body + b"\x00" + struct.pack("<I", crc32c.mask(crc32c.crc32c(body + b"\x00")))
    index = block([(b"", varint(0) + varint(len(body)))])
    handles = varint(len(fixed)) + varint(len(meta) - 5) + varint(len(fixed) + len(meta)) + varint(len(index) - 5)
    _refused(fixed + meta + index + handles + bytes(40 - len(handles)) + struct.pack("<Q", MAGIC), "key of 5")
    with pytest.raises(LimitError, match="more than 64 dimensions"):
        parse_index(build_index([(b"", header_proto()), (b"a", entry_proto(1, [1] * 65, 0, 4, 0))]))


def test_entry_count_and_key_total_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensor_bundle, "MAX_ENTRIES", 2)
    with pytest.raises(LimitError, match="more than the limit of 2 variables"):
        parse_index(sample())
    monkeypatch.setattr(tensor_bundle, "MAX_KEY_TOTAL_BYTES", 20)
    with pytest.raises(LimitError, match="keys add up to more than the limit of 20 bytes"):
        parse_index(sample())


def test_a_data_block_is_read_once() -> None:
    """An index block naming one data block twice would make the reader checksum it again for every name."""
    data = block([(b"", header_proto())])
    meta = block([])
    handle = varint(0) + varint(len(data) - 5)
    index = block([(b"a", handle), (b"b", handle)])
    handles = varint(len(data)) + varint(len(meta) - 5) + varint(len(data) + len(meta)) + varint(len(index) - 5)
    table = data + meta + index + handles + bytes(40 - len(handles)) + struct.pack("<Q", MAGIC)
    _refused(table, "overlaps or precedes")


def test_rewrite_crcs_changes_only_the_fields_and_the_block_trailer() -> None:
    """Golden bytes: the 4-byte CRC-32C fields of the entries named, and the data block's trailer, nothing else."""
    import hashlib

    original = sample()
    rewritten = tensor_bundle.rewrite_crcs(original, {"layer/bias": crc32c.mask(0xDEADBEEF), "text": crc32c.mask(1)})
    assert hashlib.sha256(rewritten).hexdigest() == "13b6a98c8cbfb70e962c299a3068d28693f3759b2d1098c4ac6b105985a22c3b"
    assert len(rewritten) == len(original)
    # bias's field (4 bytes), text's field (mask(0) and mask(1) share 3 bytes), the data block's masked CRC-32C
    assert [i for i, (a, b) in enumerate(zip(original, rewritten)) if a != b] == [
        39,
        40,
        41,
        42,
        99,
        110,
        111,
        112,
        113,
    ]
    entries = {entry.key: entry for entry in parse_index(rewritten).entries}  # the block trailer checks out
    assert entries["layer/bias"].masked_crc == crc32c.mask(0xDEADBEEF)
    assert entries["text"].masked_crc == crc32c.mask(1)
    assert entries["layer/kernel"].masked_crc == crc32c.mask(0x5678)
    assert tensor_bundle.rewrite_crcs(original, {}) == original


def test_rewrite_crcs_refuses_what_it_cannot_patch_in_place() -> None:
    with pytest.raises(CheckpointError, match="the index has no variable 'missing'"):
        tensor_bundle.rewrite_crcs(sample(), {"missing": 1})
    no_crc = field(1, 1) + field(2, field(2, field(1, 3))) + field(5, 12)  # proto3 leaves out a CRC of 0
    twice = entry_proto(1, [3], 0, 12, 5) + varint(6 << 3 | 5) + struct.pack("<I", 7)
    for value in (no_crc, twice):
        index = build_index([(b"", header_proto()), (b"w", value)])
        with pytest.raises(CheckpointError, match="'w' has no single fixed32 CRC-32C field to rewrite"):
            tensor_bundle.rewrite_crcs(index, {"w": 1})
    with pytest.raises(CheckpointError, match="not a TensorFlow bundle index"):
        tensor_bundle.rewrite_crcs(sample()[:-1], {"layer/bias": 1})
