"""The object encoding (docs/formats.md, "Objects"), locked by golden bytes in tests/golden/."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import zstandard

from git_theta import buffer_pool, dtypes, objects
from git_theta.errors import StoreError
from git_theta.objects import Bundle
from git_theta.tensor import Tensor

GOLDEN = Path(__file__).parent / "golden"

# If an intentional format change breaks these, the format needs a new magic
# or codec name and docs/formats.md an update; then regenerate the files with
# b"".join(objects.encode(small_bundle())) and put the new sha256 here.
SMALL_SHA256 = "89eadd071e0464a918c23265c88922c0dca5ab6891f6f4dfc91bbdfd557ec98d"
CHUNKED_SHA256 = "176951f996d8b3aae8c1a2ee34af1cf6eb1102bced63f364b07c461cf2d5ee87"


def f32_tensor() -> Tensor:
    # -0.0, the largest finite float and the smallest subnormal must survive bit for bit
    bits = [0x3F800000, 0xC0200000, 0x00000000, 0x80000000, 0x7F7FFFFF, 0x00000001]
    return Tensor("F32", (2, 3), struct.pack("<6I", *bits))


def bf16_tensor() -> Tensor:
    # 1.0, -1.0, -0.0, a NaN with a payload, the smallest subnormal, +inf
    bits = [0x3F80, 0xBF80, 0x8000, 0x7FC1, 0x0001, 0x7F80]
    return Tensor("BF16", (3, 2), struct.pack("<6H", *bits))


def u8_tensor() -> Tensor:
    return Tensor("U8", (10,), bytes(range(0, 250, 25)))


def small_bundle() -> Bundle:
    # Buffer names given out of order: the encoding sorts them.
    return Bundle("dense", {"w": f32_tensor(), "b": bf16_tensor(), "mask": u8_tensor()}, {"note": "caf\u00e9", "n": 3})


def chunked_bundle() -> Bundle:
    # One element more than a chunk holds: two chunks (4 MiB and 4 bytes).
    values = np.zeros((objects.CHUNK_BYTES // 4) + 1, dtype="<f4")
    values[-1] = 1.0
    return Bundle("dense", {"value": Tensor.from_numpy(values)})


def encoded(bundle: Bundle) -> bytes:
    return b"".join(objects.encode(bundle))


def split(data: bytes) -> tuple[dict, bytes]:
    (size,) = struct.unpack_from("<I", data, 8)
    return json.loads(data[12 : 12 + size]), data[12 + size :]


def with_header(data: bytes, header: dict) -> bytes:
    """The object with its header replaced (frames kept)."""
    _, frames = split(data)
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return objects.MAGIC + struct.pack("<I", len(raw)) + raw + frames


def assert_golden(data: bytes, name: str, sha256: str) -> None:
    golden = (GOLDEN / name).read_bytes()
    header, frames = split(data)
    golden_header, golden_frames = split(golden)
    for buf in header["buffers"] + golden_header["buffers"]:
        buf.pop("frame_bytes")
    assert header == golden_header
    # The frames are what zstd 1.5.7 writes; another zstd may write other valid frames (see docs/formats.md).
    assert frames == golden_frames, f"zstd {zstandard.ZSTD_VERSION} wrote other frames than the golden file's"
    assert data == golden
    assert hashlib.sha256(data).hexdigest() == sha256


def test_small_object_matches_golden_bytes() -> None:
    assert_golden(encoded(small_bundle()), "object_small.bin", SMALL_SHA256)


def test_chunked_object_matches_golden_bytes() -> None:
    assert_golden(encoded(chunked_bundle()), "object_chunked.bin", CHUNKED_SHA256)


def test_layout_is_as_specified() -> None:
    data = (GOLDEN / "object_small.bin").read_bytes()
    assert data[:8] == b"gtheta\x00\x01"
    header, frames = split(data)
    raw_header = data[12 : 12 + struct.unpack_from("<I", data, 8)[0]]
    assert raw_header == json.dumps(header, sort_keys=True, separators=(",", ":")).encode("ascii")
    assert b"caf\\u00e9" in raw_header  # non-ASCII is escaped, the header is pure ASCII
    assert [b["name"] for b in header["buffers"]] == ["b", "mask", "w"]
    assert header["kind"] == "dense" and header["fields"] == {"n": 3, "note": "caf\u00e9"}
    assert header["buffers"][2] == {
        "chunk_bytes": [24],
        "codec": "bgzstd",
        "dtype": "F32",
        "frame_bytes": header["buffers"][2]["frame_bytes"],
        "name": "w",
        "shape": [2, 3],
    }
    # Frames follow the header in buffer order; each is one zstd frame of a byte-grouped chunk.
    position = 0
    expected_raw = {"b": bf16_tensor().data, "mask": u8_tensor().data, "w": f32_tensor().data}
    for buf in header["buffers"]:
        (frame_len,) = buf["frame_bytes"]
        frame = frames[position : position + frame_len]
        position += frame_len
        assert zstandard.frame_content_size(frame) == buf["chunk_bytes"][0]
        grouped = zstandard.ZstdDecompressor().decompress(frame)
        itemsize = {"BF16": 2, "U8": 1, "F32": 4}[buf["dtype"]]
        raw = bytes(expected_raw[buf["name"]])
        # plane k holds byte k (little-endian order) of every element
        assert grouped == b"".join(raw[k::itemsize] for k in range(itemsize))
    assert position == len(frames)


def test_chunked_layout() -> None:
    header, _ = split((GOLDEN / "object_chunked.bin").read_bytes())
    assert header["buffers"][0]["chunk_bytes"] == [4 << 20, 4]
    assert len(header["buffers"][0]["frame_bytes"]) == 2


@pytest.mark.parametrize("name", ["object_small.bin", "object_chunked.bin"])
def test_golden_objects_decode(name: str) -> None:
    bundle = objects.decode((GOLDEN / name).read_bytes())
    expected = small_bundle() if name == "object_small.bin" else chunked_bundle()
    assert bundle.kind == expected.kind and bundle.fields == expected.fields
    assert sorted(bundle.buffers) == sorted(expected.buffers)
    for key, tensor in expected.buffers.items():
        got = bundle.buffers[key]
        assert (got.dtype, got.shape, bytes(got.data)) == (tensor.dtype, tensor.shape, bytes(tensor.data))


def test_round_trip_of_every_dtype_and_empty_and_scalar() -> None:
    rng = np.random.default_rng(7)
    # (4, 6): 24 values fill whole bytes for the packed 4- and 6-bit types too.
    buffers = {
        name: Tensor(name, (4, 6), rng.integers(0, 256, dtypes.nbytes(name, (4, 6)), dtype=np.uint8).tobytes())
        for name in dtypes.BITS
    }
    buffers["empty"] = Tensor("F32", (0, 4), b"")
    buffers["scalar"] = Tensor("F64", (), struct.pack("<d", -0.0))
    bundle = objects.decode(encoded(Bundle("blob", buffers)))
    for key, tensor in buffers.items():
        assert (bundle.buffers[key].shape, bytes(bundle.buffers[key].data)) == (tensor.shape, bytes(tensor.data))


@pytest.mark.parametrize("chunks", [1, 3])  # the one-chunk path and the general one
def test_a_blob_is_decoded_into_its_own_buffer_and_a_tensor_into_the_pool(chunks: int) -> None:
    # A file's blob is read once per checkout; the pool would keep it idle while the file's tensors are written.
    size = chunks * objects.CHUNK_BYTES if chunks > 1 else buffer_pool.MIN_BYTES
    raw = np.random.default_rng(3).integers(0, 256, size, dtype=np.uint8).tobytes()
    buffer_pool.clear()
    try:
        blob = objects.decode(encoded(Bundle("blob", {"bytes": Tensor("U8", (size,), raw)})))
        assert bytes(blob.buffers["bytes"].data) == raw
        assert not any(held is blob.buffers["bytes"].data for held in buffer_pool._buffers)
        dense = objects.decode(encoded(Bundle("dense", {"values": Tensor("U8", (size,), raw)})))
        assert bytes(dense.buffers["values"].data) == raw
        assert any(held is dense.buffers["values"].data for held in buffer_pool._buffers)
    finally:
        buffer_pool.clear()


def test_encoding_is_deterministic() -> None:
    assert encoded(small_bundle()) == encoded(small_bundle())


# --- rejection of malformed objects -------------------------------------------------


def small() -> bytes:
    return (GOLDEN / "object_small.bin").read_bytes()


def rejects(data: bytes, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        objects.decode(data)


def test_bad_magic() -> None:
    rejects(b"gtheta\x00\x02" + small()[8:], "bad magic")
    rejects(b"version https://git-lfs.github.com/spec/v1\n", "bad magic")


def test_truncated_objects() -> None:
    data = small()
    rejects(data[:10], "truncated")
    rejects(data[:40], "truncated")
    rejects(data[:-1], "header describes")
    rejects(data + b"\0", "header describes")


def test_oversize_header_is_refused_before_reading_it() -> None:
    rejects(objects.MAGIC + struct.pack("<I", objects.MAX_HEADER_BYTES + 1), "exceeds the 16777216 byte limit")


def test_header_not_json() -> None:
    rejects(objects.MAGIC + struct.pack("<I", 3) + b"{x}", "not JSON")


def mutated(change: object) -> bytes:
    header, _ = split(small())
    change(header)  # type: ignore[operator]
    return with_header(small(), header)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: h.pop("kind"), "lacks a kind"),
        (lambda h: h.update(kind=""), "lacks a kind"),
        (lambda h: h.update(fields=[]), "lacks buffers or fields"),
        (lambda h: h.update(buffers={}), "lacks buffers or fields"),
        (lambda h: h["buffers"].append("x"), "without a name"),
        (lambda h: h["buffers"][0].update(codec="gzip"), "unknown codec 'gzip'"),
        (lambda h: h["buffers"][0].update(dtype="F128"), "unknown dtype 'F128'"),
        (lambda h: h["buffers"][0].update(shape=[3, -2]), "invalid shape"),
        (lambda h: h["buffers"][0].update(shape=[3, True]), "invalid shape"),
        (lambda h: h["buffers"][0].update(shape=[4, 2]), "sizes do not match its shape"),
        (lambda h: h["buffers"][0].update(chunk_bytes=[6, 6]), "sizes do not match its shape"),
        (lambda h: h["buffers"][0].update(chunk_bytes="12"), "positive integers"),
        (lambda h: h["buffers"][0].update(frame_bytes=[0]), "positive integers"),
        (lambda h: h["buffers"][0].pop("name"), "without a name"),
        (lambda h: h["buffers"][1].update(name="b"), "names buffer 'b' twice"),
    ],
)
def test_malformed_headers(change: object, message: str) -> None:
    rejects(mutated(change), message)


def test_wrong_chunk_sizes() -> None:
    data = (GOLDEN / "object_chunked.bin").read_bytes()
    header, _ = split(data)
    buf = header["buffers"][0]
    buf["chunk_bytes"] = [4, 4 << 20]  # same total, short chunk first
    rejects(with_header(data, header), "chunks must be 4194304 bytes each except a shorter last one")


def test_frame_declaring_another_size() -> None:
    header, frames = split(small())
    # Swap the frames of "b" (12 bytes) and "mask" (10 bytes), fixing up frame lengths.
    fb, fm = header["buffers"][0]["frame_bytes"][0], header["buffers"][1]["frame_bytes"][0]
    header["buffers"][0]["frame_bytes"], header["buffers"][1]["frame_bytes"] = [fm], [fb]
    swapped = frames[fb : fb + fm] + frames[:fb] + frames[fb + fm :]
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    rejects(objects.MAGIC + struct.pack("<I", len(raw)) + raw + swapped, "declares 10 bytes, expected 12")


def test_garbage_frame() -> None:
    header, frames = split(small())
    (last,) = header["buffers"][-1]["frame_bytes"]
    data = small()
    rejects(data[: len(data) - last] + b"\x00" * last, "corrupt compressed chunk")


def test_frame_without_a_content_size() -> None:
    raw = bytes(u8_tensor().data)
    frame = zstandard.ZstdCompressor(level=1, write_content_size=False).compress(raw)
    header = {
        "buffers": [
            {
                "chunk_bytes": [10],
                "codec": "bgzstd",
                "dtype": "U8",
                "frame_bytes": [len(frame)],
                "name": "x",
                "shape": [10],
            }
        ],
        "fields": {},
        "kind": "blob",
    }
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    data = objects.MAGIC + struct.pack("<I", len(head)) + head
    rejects(data + frame, "declares -1 bytes, expected 10")
    with_size = zstandard.ZstdCompressor(level=1).compress(raw)
    header["buffers"][0]["frame_bytes"] = [len(with_size)]
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    decoded = objects.decode(objects.MAGIC + struct.pack("<I", len(head)) + head + with_size)
    assert bytes(decoded.buffers["x"].data) == raw


@pytest.mark.parametrize(("dtype", "itemsize"), [("U8", 1), ("BF16", 2), ("F32", 4)])
@pytest.mark.parametrize("lie", [4, -4])
def test_frame_whose_data_is_not_its_declared_size(dtype: str, itemsize: int, lie: int) -> None:
    """A frame header that declares the chunk's size over data of another size: zstd's own end-of-frame check,
    reached whether the decompressed bytes go to the output (U8) or to the per-thread scratch buffer."""
    raw = bytes(range(256)) * 16
    frame = bytearray(zstandard.ZstdCompressor(level=1).compress(raw))
    assert frame[4] == 0b01100000  # single segment, 2-byte content size (stored minus 256) at offset 5
    declared = len(raw) + lie
    frame[5:7] = (declared - 256).to_bytes(2, "little")
    header = {
        "buffers": [
            {
                "chunk_bytes": [declared],
                "codec": "bgzstd",
                "dtype": dtype,
                "frame_bytes": [len(frame)],
                "name": "x",
                "shape": [declared // itemsize],
            }
        ],
        "fields": {},
        "kind": "blob",
    }
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    rejects(objects.MAGIC + struct.pack("<I", len(head)) + head + frame, "corrupt compressed chunk")


def test_decode_refuses_more_buffer_bytes_than_allowed_before_allocating() -> None:
    data = b"".join(objects.encode(Bundle("dense", {"value": Tensor("F32", (1024,), bytes(4096))})))
    assert len(objects.decode(data, 4096).buffers["value"].data) == 4096
    with pytest.raises(StoreError, match="declares 4096 bytes of buffers, more than the 4095"):
        objects.decode(data, 4095)


def _general_header(text: bytes) -> object:
    """What read_header's general path gives a header text: the header, or the error it raises."""
    try:
        header = objects.loads_bounded(text, objects.MAX_HEADER_DEPTH)
        objects._check_header(header)
        return header
    except (ValueError, StoreError) as error:
        return type(error)


def _fast_header(text: bytes) -> object:
    try:
        return objects._one_buffer_header(text)
    except StoreError:
        return StoreError


@pytest.mark.parametrize(
    "bundle",
    [
        Bundle("xor", {"xor": Tensor("U32", (32, 32), bytes(4096))}, {"base": "ab" * 32}),
        Bundle("xor", {"xor": Tensor("U16", (3,), bytes(6))}, {"base": "0" * 64}),
        Bundle("dense", {"value": Tensor("F32", (), bytes(4))}),
        Bundle("rescale", {"scale": Tensor("F32", (1,), bytes(4))}),
    ],
)
def test_a_one_buffer_header_is_read_fast_as_the_general_path_reads_it(bundle: Bundle) -> None:
    text = objects.encode(bundle)[2]
    assert _fast_header(text) == _general_header(text) == json.loads(text)
    # Near misses: another spelling, a base that is not 64 hex digits, other fields, wrong sizes.
    variants = [
        text.replace(b'"fields":{', b'"fields":{"other":1,'),
        text.replace(b'"kind":"', b'"kind":"X'),
        text.replace(b'"shape":[', b'"shape":[2,'),
        text.replace(b'"chunk_bytes":[', b'"chunk_bytes":[1'),
        text.replace(b'"frame_bytes":[', b'"frame_bytes":[0'),
        text.replace(b'"dtype":"', b'"dtype":"Q'),
        text.replace(b'"base":"', b'"base":"A'),
        text.replace(b'"base":"', b'"base":"0'),
        text + b" ",
    ]
    for variant in variants:
        fast = _fast_header(variant)
        assert fast is None or fast == _general_header(variant), variant
