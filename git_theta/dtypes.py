"""Element types, named as safetensors names them, and their numpy views.

Tensors travel through git-theta as raw little-endian bytes plus a dtype name
and a shape; numpy (with ml_dtypes for bf16/fp8) is only a view for arithmetic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from git_theta.errors import ThetaError

ITEMSIZE: dict[str, int] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}

# Our (safetensors') names -> torch dtype attribute names: the one table for reading and writing torch tensors
# (the .pt format, side-loaded torch update files, the API's framework="torch"). Every name torch has; look the
# attribute up with getattr, an older torch may lack the float8 types.
TORCH_NAMES: dict[str, str] = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
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


def itemsize(dtype: str) -> int:
    try:
        return ITEMSIZE[dtype]
    except KeyError:
        raise ThetaError(f"unknown dtype {dtype!r}; known: {', '.join(sorted(ITEMSIZE))}") from None


def numpy_dtype(dtype: str) -> np.dtype[Any]:
    """The numpy dtype that views raw bytes of `dtype` without conversion."""
    import numpy as np  # imported here so that reading metadata (textconv, log, show) never loads numpy

    if dtype in _NUMPY_NAMES:
        return np.dtype(_NUMPY_NAMES[dtype])
    import ml_dtypes  # only needed for bf16 / fp8

    extra: dict[str, type[Any]] = {"BF16": ml_dtypes.bfloat16, "F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2}
    if dtype in extra:
        return np.dtype(extra[dtype])
    raise ThetaError(f"unknown dtype {dtype!r}; known: {', '.join(sorted(ITEMSIZE))}")


def from_numpy(dtype: np.dtype[Any]) -> str:
    """Our dtype name for a numpy dtype (byte order must be little or none)."""
    if dtype.byteorder == ">":
        raise ThetaError(f"big-endian arrays are not supported ({dtype.str})")
    for name in ITEMSIZE:
        if numpy_dtype(name) == dtype.newbyteorder("<"):
            return name
    raise ThetaError(f"unsupported array dtype {dtype.str}")


def is_float(dtype: str) -> bool:
    return dtype.startswith("F") or dtype == "BF16"
