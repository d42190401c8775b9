"""CRC-32C: the published check value, C and Python agree, extend chains, LevelDB masking round-trips."""

from __future__ import annotations

import os
from collections.abc import Callable

from git_theta import crc32c


def _implementations() -> list[Callable[[int, bytes | memoryview], int]]:
    """The Python fallback, and the C extension's hardware and software paths (the extension is built by pip
    wherever a compiler exists, and CI has one: its absence is a failure here, not a skip)."""
    from git_theta import _crc32c

    return [crc32c.extend_python, _crc32c.extend, _crc32c.extend_software]


def test_check_values() -> None:
    # The CRC-32C check value (RFC 3720, iSCSI) and its test vectors of 32 zero and 32 0xFF bytes.
    for implementation in _implementations():
        assert implementation(0, b"123456789") == 0xE3069283
        assert implementation(0, bytes(32)) == 0x8A9136AA
        assert implementation(0, b"\xff" * 32) == 0x62A8AB43
        assert implementation(0, b"") == 0


def test_c_and_python_agree_at_every_alignment() -> None:
    data = os.urandom(300)
    for start in range(9):
        for end in (start, start + 1, start + 7, start + 8, start + 9, 300):
            view = memoryview(data)[start:end]
            assert len({implementation(0, view) for implementation in _implementations()}) == 1


def test_extend_chains() -> None:
    data = os.urandom(1000)
    assert crc32c.extend(crc32c.crc32c(data[:333]), data[333:]) == crc32c.crc32c(data)


def test_mask() -> None:
    # LevelDB's mask: rotate right by 15, add 0xa282ead8; undone exactly.
    assert crc32c.mask(0) == 0xA282EAD8 and crc32c.mask(1) == (1 << 17) + 0xA282EAD8
    for value in (0, 1, 0xFFFFFFFF, crc32c.crc32c(b"foo")):
        assert crc32c.unmask(crc32c.mask(value)) == value
