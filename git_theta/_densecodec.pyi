# The C extension built from _densecodec.c (lists, not sequences: it reads them without copying).

def decode_dense(
    members: list[bytes | bytearray | memoryview],
    dtypes: list[str],
    shapes: list[tuple[int, ...]],
    bits: dict[str, int],
    magic: bytes,
    parts: tuple[bytes, ...],
    chunk_bytes: int,
) -> list[bytearray | None]: ...
