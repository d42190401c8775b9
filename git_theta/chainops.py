"""In-place steps of an update chain: xor a delta into a tensor's bytes, set a sparse link's entries.

smudge.rebuild applies sparse and xor links into the chain's own buffer through these. The C extension
git_theta._chainops does the work without numpy, whose import (~0.1 s of CPU) a dense checkout never pays
and a chain's checkout then need not either; when it was not built, numpy does the same.
"""

from __future__ import annotations

from collections.abc import Callable

Buffer = bytes | bytearray | memoryview

_xor_into: Callable[[Buffer, Buffer], None] | None
_scatter_into: Callable[[Buffer, Buffer, int, Buffer, int], None] | None
try:
    from git_theta._chainops import scatter_into as _scatter_into
    from git_theta._chainops import xor_into as _xor_into
except ImportError:
    _xor_into = _scatter_into = None

IMPLEMENTATION = "numpy" if _xor_into is None else "c"


def xor_into(target: Buffer, delta: Buffer) -> None:
    """target ^= delta, bytewise, in place (same length); ValueError otherwise."""
    if _xor_into is not None:
        _xor_into(target, delta)
        return
    import numpy as np

    out, other = np.frombuffer(target, dtype=np.uint8), np.frombuffer(delta, dtype=np.uint8)
    if out.size != other.size:
        raise ValueError(f"xor of {other.size} bytes into {out.size} bytes")
    np.bitwise_xor(out, other, out=out)


def scatter_into(target: Buffer, gaps: Buffer, gap_size: int, values: Buffer, itemsize: int) -> None:
    """Element number sum(gaps[: i + 1]) of `target` becomes values[i] (little-endian gaps of `gap_size` bytes).

    ValueError, with nothing written, when an index falls outside `target` or repeats.
    """
    if _scatter_into is not None:
        _scatter_into(target, gaps, gap_size, values, itemsize)
        return
    import numpy as np

    steps = np.frombuffer(gaps, dtype={4: "<u4", 8: "<u8"}[gap_size])
    elements = np.frombuffer(target, dtype=np.uint8).reshape(-1, itemsize)
    new = np.frombuffer(values, dtype=np.uint8).reshape(-1, itemsize)
    if len(new) != len(steps):
        raise ValueError("gaps and values differ in count")
    if len(steps) > 1 and steps[1:].min() == 0:
        raise ValueError("indices repeat")
    indices = steps.astype(np.uint64).cumsum()
    if len(indices) and (indices[-1] >= len(elements) or indices[-1] < steps[-1]):  # the second: wrapped around
        raise ValueError("indices out of range")
    elements[indices.astype(np.int64)] = new
