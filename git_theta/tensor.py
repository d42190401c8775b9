"""A tensor as git-theta sees it: dtype name, shape and raw little-endian bytes."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import blake3

from git_theta import dtypes

if TYPE_CHECKING:
    import numpy as np

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class Tensor:
    """Raw tensor bytes in C order; `numpy()` gives a zero-copy view."""

    dtype: str
    shape: tuple[int, ...]
    data: Buffer

    def __post_init__(self) -> None:
        expected = self.nbytes_expected()
        if len(memoryview(self.data).cast("B")) != expected:
            raise ValueError(
                f"tensor data has {len(memoryview(self.data).cast('B'))} bytes, "
                f"{self.dtype}{list(self.shape)} needs {expected}"
            )
        self.__dict__["nbytes"] = expected  # the cached_property below, filled in (a frozen dataclass's dict)

    @classmethod
    def of_size(cls, dtype: str, shape: tuple[int, ...], data: bytearray, nbytes: int) -> Tensor:
        """The tensor, given its size nbytes(dtype, shape) (known to a caller building many of one shape): skips
        __post_init__'s size computation and memoryview, ~1 us of a 4 KB tensor's ~10 at checkout."""
        if len(data) != nbytes:
            raise ValueError(f"tensor data has {len(data)} bytes, {dtype}{list(shape)} needs {nbytes}")
        tensor = cls.__new__(cls)
        tensor.__dict__.update(dtype=dtype, shape=shape, data=data, nbytes=nbytes)  # frozen: set as __init__ does
        return tensor

    def nbytes_expected(self) -> int:
        return dtypes.nbytes(self.dtype, self.shape)

    @functools.cached_property
    def nbytes(self) -> int:
        # Cached (a frozen tensor's size never changes): asked several times per tensor on every path.
        return self.nbytes_expected()

    def numpy(self) -> np.ndarray[Any, Any]:
        import numpy as np  # here, not at the top: a checkout never needs numpy (~0.1 s to import)

        return np.frombuffer(self.data, dtype=dtypes.numpy_dtype(self.dtype)).reshape(self.shape)

    @classmethod
    def from_numpy(cls, array: np.ndarray[Any, Any], dtype: str | None = None) -> Tensor:
        """Wrap an array; a non-contiguous or big-endian array is copied first."""
        import numpy as np

        name = dtype or dtypes.from_numpy(array.dtype)
        # asarray, not ascontiguousarray: the latter turns a 0-d array into shape (1,).
        contiguous = np.asarray(array, dtype=dtypes.numpy_dtype(name), order="C")
        # A uint8 view: the buffer protocol rejects ml_dtypes (bf16) formats and zero-size N-d casts.
        raw = contiguous.reshape(-1).view(np.uint8)
        return cls(name, tuple(int(n) for n in contiguous.shape), memoryview(raw))  # type: ignore[arg-type]

    def hash(self) -> str:
        return tensor_hash(self.dtype, self.shape, self.data)


def tensor_hash(dtype: str, shape: tuple[int, ...], data: Buffer) -> str:
    """BLAKE3 of "<dtype> <d0>,<d1>,...\\n" followed by the raw bytes, hex.

    Dtype and shape are part of the hash so that the same bytes viewed as
    another type or shape are a different tensor.
    """
    return hash_with_prefix(hash_prefix(dtype, shape), data)


def hash_prefix(dtype: str, shape: tuple[int, ...]) -> bytes:
    """What tensor_hash hashes before the bytes (a caller hashing many tensors of one shape makes it once).

    Cached for shapes of plain ints (a model's tensors have few distinct dtypes and shapes, and formatting one
    costs ~1 us, a quarter of hashing a 4 KB tensor). Only those: True == 1 as a cache key, not as text."""
    return _cached_prefix(dtype, shape) if plain_shape(shape) else _prefix(dtype, shape)


def plain_shape(shape: tuple[int, ...]) -> bool:
    """A tuple of plain ints: a shape that may key a cache of text spelled from it (True == 1 as a key, not as
    text, and a list is no key at all)."""
    return type(shape) is tuple and set(map(type, shape)) <= _INT


_INT = {int}


@functools.lru_cache(maxsize=1024)
def _cached_prefix(dtype: str, shape: tuple[int, ...]) -> bytes:
    return _prefix(dtype, shape)


def _prefix(dtype: str, shape: tuple[int, ...]) -> bytes:
    return f"{dtype} {','.join(str(n) for n in shape)}\n".encode("ascii")


# Up to this many bytes, the prefix and the bytes are hashed as one concatenated piece: blake3 hashes a 4 KB tensor
# in ~2.5 us so, and in ~4.5 us as two updates (the bytes then start mid-chunk); the copy costs less than that.
ONE_PIECE_HASH_BYTES = 64 << 10


def hash_with_prefix(prefix: bytes, data: Buffer) -> str:
    """tensor_hash given its hash_prefix."""
    if len(data) <= ONE_PIECE_HASH_BYTES:
        return blake3.blake3(prefix + data).hexdigest()
    hasher = blake3.blake3(prefix, max_threads=blake3.blake3.AUTO if len(data) > (8 << 20) else 1)
    hasher.update(data)
    return hasher.hexdigest()
