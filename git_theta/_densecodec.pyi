# The C extension built from _densecodec.c (lists, not sequences: it reads them without copying).
from collections.abc import Callable

from typing_extensions import Buffer

def decode_dense(
    members: list[bytes | bytearray | memoryview],
    dtypes: list[str],
    shapes: list[tuple[int, ...]],
    bits: dict[str, int],
    magic: bytes,
    parts: tuple[bytes, ...],
    chunk_bytes: int,
    take: Callable[[int], bytearray] | None = None,
    take_min: int = 0,
) -> list[bytearray | None]: ...
def decompress_into(frame: Buffer, target: Buffer, itemsize: int, scratch: Buffer) -> bool: ...
