"""Element types, named as safetensors names them, and their numpy views.

Tensors travel through git-theta as raw little-endian bytes plus a dtype name
and a shape; numpy (with ml_dtypes for bf16/fp8) is only a view for arithmetic.

The names are every dtype of safetensors 0.8 (its Rust `Dtype` enum). Packed
types (F4, F6_*) hold several elements per byte: a tensor of them is
`numel * bits / 8` bytes (safetensors refuses a count that does not fill
whole bytes, and so does nbytes here); git-theta keeps those bytes exactly (hash, dedup, xor
deltas) but has no numeric view of them, so value merges and numeric diffs
refuse them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from git_theta.errors import ThetaError

# Bits per element, as safetensors' Dtype::bitsize gives them.
BITS: dict[str, int] = {
    "F64": 64,
    "F32": 32,
    "F16": 16,
    "BF16": 16,
    "C64": 64,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "F8_E8M0": 8,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "F4": 4,
    "I64": 64,
    "I32": 32,
    "I16": 16,
    "I8": 8,
    "U64": 64,
    "U32": 32,
    "U16": 16,
    "U8": 8,
    "BOOL": 8,
}
# Several elements share a byte: no numpy view, no element-wise (sparse) update, no arithmetic.
PACKED: frozenset[str] = frozenset(name for name, bits in BITS.items() if bits < 8)
# Bytes per unit of the byte-level codecs (byte grouping, xor): one element, or one byte of a packed type.
# Not a tensor's size: that is nbytes(), the one place that knows packed types.
ITEMSIZE: dict[str, int] = {name: max(1, bits // 8) for name, bits in BITS.items()}

# Our (safetensors') names -> torch dtype attribute names: the one table for reading and writing torch tensors
# (the .pt format, side-loaded torch update files, the API's framework="torch"). Every name torch has; look the
# attribute up with getattr, an older torch may lack the float8 types. Not the packed types: torch's
# float4_e2m1fn_x2 is one element per byte (a pair of values), so its shape differs from safetensors' F4.
TORCH_NAMES: dict[str, str] = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E8M0": "float8_e8m0fnu",
    "C64": "complex64",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}
# torch dtype names (str(dtype) without "torch.") -> ours.
FROM_TORCH: dict[str, str] = {theirs: ours for ours, theirs in TORCH_NAMES.items()}

_NUMPY_NAMES: dict[str, str] = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "C64": "<c8",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
}


def _known(dtype: str) -> int:
    try:
        return BITS[dtype]
    except KeyError:
        raise ThetaError(f"unknown dtype {dtype!r}; known: {', '.join(sorted(BITS))}") from None


def itemsize(dtype: str) -> int:
    """Bytes per unit of the byte-level codecs: an element's size, 1 for packed types (see ITEMSIZE)."""
    _known(dtype)
    return ITEMSIZE[dtype]


def nbytes(dtype: str, shape: Sequence[int]) -> int:
    """The byte size of a `dtype` tensor of `shape`: numel * bits / 8, which must be whole (as in safetensors)."""
    bits = math.prod(shape) * _known(dtype)
    if bits % 8:
        raise ThetaError(f"{math.prod(shape)} elements of {dtype} ({BITS[dtype]} bits each) do not fill whole bytes")
    return bits // 8


def packed_refusal(dtype: str) -> str | None:
    """Why `dtype` has no numeric view (a packed type), or None."""
    if dtype in PACKED:
        bits = BITS[dtype]
        return f"{dtype} is packed ({bits}-bit values sharing bytes): its bytes are kept exactly, with no numeric view"
    return None


def arithmetic_refusal(dtype: str) -> str | None:
    """Why value arithmetic (merges that average, diffs' norms) cannot run on `dtype`: packed or complex; or None."""
    if dtype == "C64":
        return "C64 is complex: value merges compute in real numbers and would drop the imaginary parts"
    return packed_refusal(dtype)


def numpy_dtype(dtype: str) -> np.dtype[Any]:
    """The numpy dtype that views raw bytes of `dtype` without conversion; ThetaError for packed types."""
    import numpy as np  # imported here so that reading metadata (textconv, log, show) never loads numpy

    if dtype in _NUMPY_NAMES:
        return np.dtype(_NUMPY_NAMES[dtype])
    refusal = packed_refusal(dtype)
    if refusal is not None:
        raise ThetaError(refusal)
    import ml_dtypes  # only needed for bf16 / fp8

    extra: dict[str, type[Any]] = {
        "BF16": ml_dtypes.bfloat16,
        "F8_E4M3": ml_dtypes.float8_e4m3fn,
        "F8_E5M2": ml_dtypes.float8_e5m2,
        "F8_E4M3FNUZ": ml_dtypes.float8_e4m3fnuz,
        "F8_E5M2FNUZ": ml_dtypes.float8_e5m2fnuz,
        "F8_E8M0": ml_dtypes.float8_e8m0fnu,
    }
    if dtype in extra:
        return np.dtype(extra[dtype])
    raise ThetaError(f"unknown dtype {dtype!r}; known: {', '.join(sorted(BITS))}")


def from_numpy(dtype: np.dtype[Any]) -> str:
    """Our dtype name for a numpy dtype (byte order must be little or none)."""
    if dtype.byteorder == ">":
        raise ThetaError(f"big-endian arrays are not supported ({dtype.str})")
    for name in BITS:
        if name not in PACKED and numpy_dtype(name) == dtype.newbyteorder("<"):
            return name
    raise ThetaError(f"unsupported array dtype {dtype.str}")


def is_float(dtype: str) -> bool:
    """A real floating-point type numpy can compute with (not complex, not packed)."""
    return (dtype.startswith("F") or dtype == "BF16") and dtype not in PACKED
