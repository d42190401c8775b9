"""An example git-theta checkpoint format plugin: tensors written out as JSON.

    {
    "encoder.weight": {"dtype": "F32", "shape": [2, 2], "data": [0.5, -0.0, "inf", "nan:0x7fc00001"]},
    "step": {"dtype": "I64", "shape": [], "data": [1000]}
    }

Each key is a tensor; `data` lists its elements flat, in C order. Integers
are JSON integers, booleans true/false, finite floats JSON numbers, and the
non-finite floats strings: "inf", "-inf" and "nan:0x<bits>" (the element's
bit pattern, so NaN payloads survive). See README.md for the full spec.

Only git_theta.checkpoints.base, git_theta.dtypes, git_theta.tensor and
git_theta.errors are used: the public surface a format plugin needs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO

from git_theta import dtypes
from git_theta.checkpoints.base import CheckpointFormat, ParamSink, ParamSource
from git_theta.errors import CheckpointError, ThetaError
from git_theta.metadata import ParamEntry
from git_theta.tensor import Tensor

if TYPE_CHECKING:
    import numpy as np

__all__ = ["JsonFormat", "decode_tensor", "encode_tensor"]


def _unsigned(itemsize: int) -> Any:
    """The unsigned numpy type of this many bytes. numpy is imported where a tensor is converted, not with the
    plugin: git-theta loads every format plugin to sniff each file it adds, so an import here costs every user
    ~0.1 s on every `git add`, whatever the file."""
    import numpy as np

    return {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[itemsize]


def _float_token(value: float, bits: int, itemsize: int) -> Any:
    if math.isfinite(value):
        return value  # exact: every value of these dtypes is a double, and repr(double) round-trips
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"nan:0x{bits:0{itemsize * 2}x}"


def encode_tensor(tensor: Tensor) -> dict[str, Any]:
    """The JSON object for one tensor."""
    import numpy as np

    flat = tensor.numpy().reshape(-1)
    if dtypes.is_float(tensor.dtype):
        itemsize = dtypes.itemsize(tensor.dtype)
        bits = flat.view(_unsigned(itemsize)).tolist()
        data = [_float_token(v, b, itemsize) for v, b in zip(flat.astype(np.float64).tolist(), bits)]
    else:
        data = flat.tolist()
    return {"dtype": tensor.dtype, "shape": list(tensor.shape), "data": data}


def _float_array(name: str, dtype: str, data: list[Any]) -> np.ndarray[Any, Any]:
    import numpy as np

    numbers = [0.0 if isinstance(v, str) else v for v in data]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        raise CheckpointError(f"tensor {name!r}: {dtype} data must be numbers or 'inf', '-inf', 'nan:0x...'")
    array = np.array(numbers, dtype=np.float64).astype(dtypes.numpy_dtype(dtype))
    bits = array.view(_unsigned(dtypes.itemsize(dtype)))
    for index, value in enumerate(data):
        if isinstance(value, str):
            bits[index] = _special_bits(name, dtype, value)
    return array


def _special_bits(name: str, dtype: str, token: str) -> int:
    if token in ("inf", "-inf"):
        import numpy as np

        value = np.array(float(token), dtype=np.float64).astype(dtypes.numpy_dtype(dtype))
        return int(value.view(_unsigned(dtypes.itemsize(dtype))))
    if token.startswith("nan:0x"):
        try:
            return int(token[6:], 16)
        except ValueError:
            pass
    raise CheckpointError(f"tensor {name!r}: {token!r} is not a number, 'inf', '-inf' or 'nan:0x<bits>'")


def decode_tensor(name: str, value: Any) -> Tensor:
    """The tensor a JSON object describes, validated."""
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data"}:
        raise CheckpointError(f"tensor {name!r} must be an object with exactly dtype, shape and data")
    dtype, shape, data = value["dtype"], value["shape"], value["data"]
    try:
        numpy_dtype = dtypes.numpy_dtype(dtype)
    except ThetaError as error:
        raise CheckpointError(f"tensor {name!r}: {error}") from None
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise CheckpointError(f"tensor {name!r} has an invalid shape {shape!r}")
    if not isinstance(data, list) or len(data) != math.prod(shape):
        raise CheckpointError(
            f"tensor {name!r}: shape {shape} needs {math.prod(shape)} values, data has "
            f"{len(data) if isinstance(data, list) else 'none'}"
        )
    if dtypes.is_float(dtype):
        array = _float_array(name, dtype, data)
    else:
        import numpy as np

        try:
            array = np.array(data, dtype=numpy_dtype)
        except (TypeError, ValueError, OverflowError) as error:
            raise CheckpointError(f"tensor {name!r}: values do not fit {dtype}: {error}") from None
        if dtype == "BOOL" and not all(isinstance(v, bool) for v in data):
            raise CheckpointError(f"tensor {name!r}: BOOL data must be true or false")
    return Tensor.from_numpy(array.reshape(shape), dtype)


def _write_document(items: Iterable[tuple[str, Tensor]], count: int, out: BinaryIO) -> None:
    out.write(b"{\n")
    for index, (name, tensor) in enumerate(items):
        line = json.dumps(name) + ": " + json.dumps(encode_tensor(tensor))
        out.write((line + (",\n" if index < count - 1 else "\n")).encode("utf-8"))
    out.write(b"}\n")


class JsonFormat(CheckpointFormat):
    """Registered as `json` through the git_theta.checkpoints entry point (see setup.py)."""

    name = "json"
    extensions = (".json",)

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        return head.lstrip().startswith(b"{") and b'"dtype"' in head

    def read(self, stream: BinaryIO, path: str, sink: ParamSink) -> dict[str, Any]:
        try:
            document = json.load(stream)
        except (ValueError, UnicodeDecodeError) as error:
            raise CheckpointError(f"not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise CheckpointError("the top level must be a JSON object of tensors")
        for name, value in document.items():
            sink.add(name, decode_tensor(name, value))
        return {"order": list(document)}

    def write(
        self, file: Mapping[str, Any], params: Mapping[str, ParamEntry], source: ParamSource, out: BinaryIO
    ) -> None:
        names = file["order"]
        _write_document(zip(names, source.tensors(names)), len(names), out)

    def write_new(self, tensors: Mapping[str, Tensor], out: BinaryIO) -> None:
        """A new file (git_theta.save): the tensors in name order."""
        _write_document(((name, tensors[name]) for name in sorted(tensors)), len(tensors), out)

    def file_for_params(
        self,
        file: Mapping[str, Any],
        before: Mapping[str, ParamEntry],
        after: Mapping[str, ParamEntry],
        source: ParamSource,
        sink: ParamSink,
    ) -> dict[str, Any]:
        """Any set of tensors fits: keep the old order, append new names sorted."""
        kept = [name for name in file["order"] if name in after]
        return {"order": kept + sorted(set(after) - set(kept))}
