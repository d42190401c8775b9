"""The restricted unpickler of the torch-free fast path: it reads a weights-only `data.pkl` and imports nothing.

Its globals are local stand-ins for what a weights-only state dict uses (OrderedDict, plain tensors and
Parameters, storage type markers, torch.Size/device/dtype, a few builtins); anything else raises Unsupported,
and the caller (zip_reader.py) falls back to torch.load. Storages resolve to their zip keys.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

# torch's legacy storage classes and (for newer dtypes) torch.<dtype> name the storage dtype.
_STORAGE_TYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}
ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1, "bool": 1}
ITEMSIZE.update({f"{kind}{bits}": bits // 8 for kind in ("int", "uint") for bits in (8, 16, 32, 64)})


class Unsupported(Exception):
    """The file uses something the fast path does not handle; torch.load must read it."""


class _DType:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return f"torch.{self.name}"


class _StorageType:
    __slots__ = ("dtype",)

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype


class _Size(tuple):  # type: ignore[type-arg]
    __slots__ = ()


class _Device:
    __slots__ = ("spec", "type")

    def __init__(self, spec: Any, index: Any = None) -> None:
        if type(spec) is not str or index is not None:
            raise Unsupported("torch.device with an index")
        self.spec, self.type = spec, spec.split(":")[0]

    def __str__(self) -> str:
        return self.spec


_STRIDED = object()
_CPU = _Device("cpu")


@dataclass
class Storage:
    key: str
    dtype: str
    numel: int

    @property
    def nbytes(self) -> int:
        return self.numel * ITEMSIZE[self.dtype]


class FakeTensor:
    """What encode_tree needs of a tensor: where it sits in which storage."""

    __slots__ = ("storage", "offset", "shape", "strides", "requires_grad", "dtype")
    layout = _STRIDED
    is_quantized = False
    device = _CPU

    def __init__(
        self,
        storage: Storage,
        offset: int,
        shape: tuple[int, ...],
        strides: tuple[int, ...],
        requires_grad: bool,
        dtype: str,
    ) -> None:
        self.storage, self.offset, self.shape, self.strides, self.requires_grad = (
            storage,
            offset,
            shape,
            strides,
            requires_grad,
        )
        self.dtype = dtype  # a torch dtype name: "float32"

    def storage_offset(self) -> int:
        return self.offset

    def stride(self) -> tuple[int, ...]:
        return self.strides


class _Parameter(FakeTensor):
    __slots__ = ()


def _ints(value: Any, count: int | None = None) -> tuple[int, ...]:
    if (
        type(value) is not tuple
        or not all(type(n) is int for n in value)
        or (count is not None and len(value) != count)
    ):
        raise Unsupported("tensor size or stride is not a tuple of ints")
    return value


def _empty_hooks(hooks: Any) -> None:
    if type(hooks) is not OrderedDict or hooks:
        raise Unsupported("tensor with backward hooks")


def _rebuild_tensor_v2(
    storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, metadata: Any = None
) -> FakeTensor:
    if type(storage) is not Storage or type(offset) is not int or type(requires_grad) is not bool or metadata:
        raise Unsupported("tensor with unusual arguments")
    _empty_hooks(hooks)
    shape = _ints(size)
    return FakeTensor(storage, offset, shape, _ints(stride, len(shape)), requires_grad, storage.dtype)


def _rebuild_tensor_v3(
    storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, dtype: Any, metadata: Any = None
) -> FakeTensor:
    """Newer dtypes (uint16, ...) sit on an untyped (byte) storage; the tensor names its dtype."""
    if type(dtype) is not _DType or type(storage) is not Storage or storage.dtype != "uint8":
        raise Unsupported("tensor with unusual arguments")
    tensor = _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, metadata)
    tensor.dtype = dtype.name
    return tensor


def _rebuild_parameter(data: Any, requires_grad: Any, hooks: Any) -> _Parameter:
    if type(data) is not FakeTensor or type(requires_grad) is not bool:
        raise Unsupported("Parameter with unusual arguments")
    _empty_hooks(hooks)
    return _Parameter(data.storage, data.offset, data.shape, data.strides, requires_grad, data.dtype)


def _encode(text: Any, encoding: Any) -> bytes:
    """How protocol-2 pickles spell bytes: _codecs.encode(str, 'latin1')."""
    if type(text) is not str or encoding != "latin1":
        raise Unsupported("_codecs.encode with unusual arguments")
    return text.encode("latin1")


def _bytearray(content: Any = b"", encoding: Any = None) -> bytearray:
    """bytearray(bytes) or bytearray(str, 'latin-1'), as pickles spell it; never bytearray(n), which allocates n
    bytes."""
    if type(content) is bytes and encoding is None:
        return bytearray(content)
    if type(content) is str and encoding == "latin-1":
        return bytearray(content, "latin-1")
    raise Unsupported("bytearray with unusual arguments")


def _size(dims: Any) -> _Size:
    return _Size(_ints(dims))


_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "UntypedStorage"): _StorageType("uint8"),
    ("torch", "Size"): _size,
    ("torch", "device"): _Device,
    ("builtins", "set"): set,
    ("builtins", "bytearray"): _bytearray,
    ("builtins", "complex"): complex,
    ("_codecs", "encode"): _encode,
}
_GLOBALS.update({("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_TYPES.items()})
_GLOBALS.update({("torch", dtype): _DType(dtype) for dtype in ITEMSIZE})

# The torch namespace encode_tree sees: the stand-in types above.
FAKE_TORCH = SimpleNamespace(
    Tensor=FakeTensor,
    nn=SimpleNamespace(Parameter=_Parameter),
    Size=_Size,
    dtype=_DType,
    device=_Device,
    strided=_STRIDED,
)


class Unpickler(pickle.Unpickler):
    """Never imports anything: globals resolve to the stand-ins, storages to their zip keys."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.storages: dict[str, Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocol-2 pickles name Python 2's module
            module = "builtins"
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise Unsupported(f"global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Storage:
        if type(pid) is not tuple or len(pid) != 5 or pid[0] != "storage":
            raise Unsupported("unknown persistent id")
        _, kind, key, _location, numel = pid
        dtype = kind.dtype if type(kind) is _StorageType else kind.name if type(kind) is _DType else None
        if dtype is None or type(key) is not str or type(numel) is not int or numel < 0:
            raise Unsupported("unusual storage reference")
        storage = self.storages.setdefault(key, Storage(key, dtype, numel))
        if (storage.dtype, storage.numel) != (dtype, numel):
            raise Unsupported(f"storage {key} is used with two dtypes")
        return storage
