"""Byte grouping of tensor chunks: plane k holds byte k of every element (docs/formats.md).

Exponent and high mantissa bytes sit together after grouping, which is what
lets zstd compress float tensors. The C extension git_theta._bytegroup does
the work; when it was not built (no compiler at install time) numpy does the
same, slower, and costs the numpy import that a checkout otherwise avoids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Buffer = bytes | bytearray | memoryview

_group: Callable[[Buffer, int], bytes] | None
_group_many: Callable[[Sequence[tuple[Buffer, int]]], bytes] | None
_ungroup_into: Callable[[Buffer, Buffer, int], None] | None
try:
    from git_theta._bytegroup import group as _group
    from git_theta._bytegroup import group_many as _group_many
    from git_theta._bytegroup import ungroup_into as _ungroup_into
except ImportError:
    _group = _group_many = _ungroup_into = None

IMPLEMENTATION = "numpy" if _group is None else "c"


def group(elements: Buffer, itemsize: int) -> bytes:
    """The planes of `elements` (whole elements of `itemsize` bytes), concatenated."""
    if _group is not None:
        return _group(elements, itemsize)
    return group_numpy(elements, itemsize)


def group_many(members: Sequence[tuple[Buffer, int]]) -> bytes:
    """group() of each (elements, itemsize) member, back to back, in one allocation."""
    if _group_many is not None:
        return _group_many(members)
    return b"".join(group_numpy(elements, itemsize) for elements, itemsize in members)


def ungroup_into(planes: Buffer, target: Buffer, itemsize: int) -> None:
    """Write the elements whose planes are `planes` into the writable buffer `target` of the same size."""
    if _ungroup_into is not None:
        _ungroup_into(planes, target, itemsize)
    else:
        ungroup_into_numpy(planes, target, itemsize)


def group_numpy(elements: Buffer, itemsize: int) -> bytes:
    """group() in numpy: the transposed (itemsize, n) view, copied."""
    import numpy as np

    _check(_length(elements), _length(elements), itemsize)
    raw = np.frombuffer(elements, dtype=np.uint8)
    return np.ascontiguousarray(raw.reshape(-1, itemsize).T).tobytes()


def ungroup_into_numpy(planes: Buffer, target: Buffer, itemsize: int) -> None:
    """ungroup_into() in numpy: one strided copy per plane (~2 GB/s; the transposed view at once runs at 0.2-0.4)."""
    import numpy as np

    _check(_length(planes), _length(target), itemsize)
    elements = np.frombuffer(target, dtype=np.uint8).reshape(-1, itemsize)
    grouped = np.frombuffer(planes, dtype=np.uint8).reshape(itemsize, -1)
    for k in range(itemsize):
        elements[:, k] = grouped[k]


def _length(data: Buffer) -> int:
    return memoryview(data).nbytes


def _check(source_len: int, target_len: int, itemsize: int) -> None:
    if itemsize < 1:
        raise ValueError("itemsize must be at least 1")
    if source_len != target_len or source_len % itemsize:
        raise ValueError(f"sizes do not match: {source_len} bytes in, {target_len} bytes out, itemsize {itemsize}")
