"""CRC-32C (Castagnoli) and the "masked" form LevelDB-style tables and TensorFlow bundles store.

The C extension git_theta._crc32c does the work; without it (no compiler at install time) a pure-Python
table loop gives the same values, slowly (~2 MB/s: minutes for a large TensorFlow checkpoint, whose every
tensor is verified). pip builds the extension wherever a C compiler is present.
"""

from __future__ import annotations

from collections.abc import Callable

Buffer = bytes | bytearray | memoryview

_MASK_DELTA = 0xA282EAD8

_extend: Callable[[int, Buffer], int] | None
try:
    from git_theta._crc32c import extend as _extend
except ImportError:
    _extend = None

IMPLEMENTATION = "python" if _extend is None else "c"


def _make_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE: list[int] = []


def extend_python(crc: int, data: Buffer) -> int:
    """The pure-Python fallback of `extend`."""
    if not _TABLE:
        _TABLE.extend(_make_table())
    value = crc ^ 0xFFFFFFFF
    table = _TABLE
    for byte in bytes(data):
        value = (value >> 8) ^ table[(value ^ byte) & 0xFF]
    return value ^ 0xFFFFFFFF


def extend(crc: int, data: Buffer) -> int:
    """The CRC-32C of the bytes whose CRC-32C is `crc`, followed by `data`."""
    return _extend(crc, data) if _extend is not None else extend_python(crc, data)


def crc32c(data: Buffer) -> int:
    return extend(0, data)


def mask(crc: int) -> int:
    """LevelDB's masking (a CRC stored next to the bytes it covers is rotated and offset)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rotated = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF
