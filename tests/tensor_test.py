"""The tensor hash (docs/formats.md, "Tensor hash"): BLAKE3 of a documented preimage.

The expected digests are checked twice: against literals, and against a small
pure-Python BLAKE3 (single chunk, inputs up to 1024 bytes) written from the
BLAKE3 paper, so the definition does not rest on the library under test.
"""

from __future__ import annotations

import struct

import blake3
import numpy as np
import pytest

from git_theta.tensor import ONE_PIECE_HASH_BYTES, Tensor, hash_prefix, hash_with_prefix, tensor_hash

_IV = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19]
_PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8]
_CHUNK_START, _CHUNK_END, _ROOT = 1, 2, 8
_MASK = 0xFFFFFFFF


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & _MASK


def _g(s: list[int], a: int, b: int, c: int, d: int, x: int, y: int) -> None:
    s[a] = (s[a] + s[b] + x) & _MASK
    s[d] = _rotr(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & _MASK
    s[b] = _rotr(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b] + y) & _MASK
    s[d] = _rotr(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & _MASK
    s[b] = _rotr(s[b] ^ s[c], 7)


def _compress(cv: list[int], block: bytes, flags: int) -> list[int]:
    m = list(struct.unpack("<16I", block.ljust(64, b"\0")))
    s = cv + _IV[:4] + [0, 0, len(block), flags]  # chunk counter 0
    for round_index in range(7):
        for a, b, c, d, i in ((0, 4, 8, 12, 0), (1, 5, 9, 13, 2), (2, 6, 10, 14, 4), (3, 7, 11, 15, 6)):
            _g(s, a, b, c, d, m[i], m[i + 1])
        for a, b, c, d, i in ((0, 5, 10, 15, 8), (1, 6, 11, 12, 10), (2, 7, 8, 13, 12), (3, 4, 9, 14, 14)):
            _g(s, a, b, c, d, m[i], m[i + 1])
        if round_index < 6:
            m = [m[i] for i in _PERMUTATION]
    return [s[i] ^ s[i + 8] for i in range(8)]


def reference_blake3(data: bytes) -> str:
    """BLAKE3-256 of at most one chunk (1024 bytes): the chunk is the root."""
    assert len(data) <= 1024
    blocks = [data[i : i + 64] for i in range(0, len(data), 64)] or [b""]
    cv = list(_IV)
    for index, block in enumerate(blocks):
        flags = (_CHUNK_START if index == 0 else 0) | ((_CHUNK_END | _ROOT) if index == len(blocks) - 1 else 0)
        cv = _compress(cv, block, flags)
    return struct.pack("<8I", *cv).hex()


def test_reference_blake3_matches_published_vectors() -> None:
    assert reference_blake3(b"") == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert reference_blake3(b"abc") == "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    sample = bytes(i % 251 for i in range(1000))
    assert reference_blake3(sample) == blake3.blake3(sample).hexdigest()


F32_DATA = struct.pack("<6f", 1.0, -2.5, 0.0, -0.0, 3.0, 0.5)
# Literal digests of the documented preimages below.
F32_PREIMAGE = b"F32 2,3\n" + F32_DATA
F32_DIGEST = "ca0f34cc347350a2ee8bcfec561688bed64cfd4d6a552b2c41e6f8ae233296a8"
SCALAR_PREIMAGE = b"BF16 \n" + b"\x80\x3f"
SCALAR_DIGEST = "209b141f98119fddcab51bf95aa874fa07a10d3834b1875e072799442c38115d"


def test_hash_of_f32_matrix() -> None:
    assert reference_blake3(F32_PREIMAGE) == F32_DIGEST
    assert tensor_hash("F32", (2, 3), F32_DATA) == F32_DIGEST
    tensor = Tensor.from_numpy(np.array([[1.0, -2.5, 0.0], [-0.0, 3.0, 0.5]], dtype="<f4"))
    assert tensor.hash() == F32_DIGEST


def test_hash_of_scalar_has_empty_shape() -> None:
    assert reference_blake3(SCALAR_PREIMAGE) == SCALAR_DIGEST
    assert tensor_hash("BF16", (), b"\x80\x3f") == SCALAR_DIGEST


@pytest.mark.parametrize(
    ("dtype", "shape"),
    [("I32", (2, 3)), ("F32", (3, 2)), ("F32", (6,)), ("F32", (1, 2, 3)), ("U8", (24,))],
)
def test_same_bytes_as_another_type_or_shape_differ(dtype: str, shape: tuple[int, ...]) -> None:
    assert tensor_hash(dtype, shape, F32_DATA) != F32_DIGEST


def test_every_bit_counts() -> None:
    # -0.0 vs 0.0 and two NaN payloads are different tensors.
    assert tensor_hash("F32", (1,), struct.pack("<f", 0.0)) != tensor_hash("F32", (1,), struct.pack("<f", -0.0))
    assert tensor_hash("F32", (1,), struct.pack("<I", 0x7FC00000)) != tensor_hash(
        "F32", (1,), struct.pack("<I", 0x7FC00001)
    )


def test_large_tensors_hash_the_same_with_threads() -> None:
    # Above 8 MiB the hash runs multi-threaded; the digest must not change.
    data = np.arange((9 << 20) // 4, dtype="<u4").tobytes()
    shape = (len(data) // 4,)
    expected = blake3.blake3(f"U32 {shape[0]}\n".encode() + data).hexdigest()
    assert tensor_hash("U32", shape, data) == expected


def test_tensor_rejects_wrong_byte_count() -> None:
    with pytest.raises(ValueError, match="F32\\[2, 3\\] needs 24"):
        Tensor("F32", (2, 3), b"\0" * 20)


@pytest.mark.parametrize("size", [0, 4, 4096, ONE_PIECE_HASH_BYTES, ONE_PIECE_HASH_BYTES + 4, 1 << 20])
def test_one_piece_and_two_updates_hash_the_same(size: int) -> None:
    # Small tensors hash prefix + bytes as one copy, larger ones as two updates: the digest is blake3 of both.
    data = np.random.default_rng(size).bytes(size)
    shape = (2, size // 2)
    hasher = blake3.blake3(f"U8 2,{size // 2}\n".encode())
    hasher.update(data)
    for buffer in (data, bytearray(data), memoryview(data)):
        assert tensor_hash("U8", shape, buffer) == hasher.hexdigest()
        assert hash_with_prefix(hash_prefix("U8", shape), buffer) == hasher.hexdigest()


def test_of_size_is_the_tensor_and_checks_the_size() -> None:
    data = bytearray(range(24))
    made = Tensor.of_size("F32", (2, 3), data, 24)
    assert made == Tensor("F32", (2, 3), data) and made.nbytes == 24 and made.hash() == tensor_hash("F32", (2, 3), data)
    with pytest.raises(ValueError, match="F32\\[2, 3\\] needs 20"):
        Tensor.of_size("F32", (2, 3), data, 20)
