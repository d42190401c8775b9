# The C extension built from _crc32c.c. Buffer comes from typing_extensions: collections.abc has it from 3.12 only.
from typing_extensions import Buffer

def extend(crc: int, data: Buffer) -> int: ...
