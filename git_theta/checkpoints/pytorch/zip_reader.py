"""The torch-free fast path for zip-layout `torch.save` files: read without torch, rebuilt byte for byte.

`<prefix>/data.pkl` is read by a restricted unpickler whose globals are local
stand-ins for what a weights-only state dict uses (OrderedDict, plain
tensors and Parameters, storage type markers, torch.Size/device/dtype, a few
builtins); anything else, or anything unexpected in the archive (compressed
or encrypted members, a big-endian byteorder, storages of odd sizes), makes
`read` return None and the caller falls back to torch.load.

Each storage `<prefix>/data/<key>` becomes one parameter group, named and
typed exactly as the torch path names it (see pytorch.py), so the metadata
is the same either way. Every other byte goes into the skeleton blob
(zip_layout.py); storage segments also record where the storage's CRC-32
sits in the skeleton, so a merge that changes values in place can patch it.
"""

from __future__ import annotations

import bisect
import io
import itertools
import math
import pickle
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import IO, Any, BinaryIO

import blake3

from git_theta.checkpoints.base import LimitError, ParamSink, ParamSource, read_exact, read_into
from git_theta.checkpoints.torch_tree import TensorNode, encode_tree, unique_name
from git_theta.checkpoints import zip_layout
from git_theta.checkpoints.zip_layout import SkeletonBuilder, check_members, data_start
from git_theta.errors import CheckpointError
from git_theta.tensor import Tensor

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
# The pickle is read whole into memory (and its objects are several times its size): a state dict's pickle
# takes ~100 bytes per tensor, so this admits millions of tensors (docs/formats.md, "Checkpoint files").
MAX_PICKLE_BYTES = 256 << 20
_ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1, "bool": 1}
_ITEMSIZE.update({f"{kind}{bits}": bits // 8 for kind in ("int", "uint") for bits in (8, 16, 32, 64)})


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
class _Storage:
    key: str
    dtype: str
    numel: int

    @property
    def nbytes(self) -> int:
        return self.numel * _ITEMSIZE[self.dtype]


class _Tensor:
    """What encode_tree needs of a tensor: where it sits in which storage."""

    __slots__ = ("storage", "offset", "shape", "strides", "requires_grad", "dtype")
    layout = _STRIDED
    is_quantized = False
    device = _CPU

    def __init__(self, storage: _Storage, offset: int, shape: tuple[int, ...], strides: tuple[int, ...], requires_grad: bool, dtype: str) -> None:
        self.storage, self.offset, self.shape, self.strides, self.requires_grad = storage, offset, shape, strides, requires_grad
        self.dtype = dtype  # a torch dtype name: "float32"

    def storage_offset(self) -> int:
        return self.offset

    def stride(self) -> tuple[int, ...]:
        return self.strides


class _Parameter(_Tensor):
    __slots__ = ()


def _ints(value: Any, count: int | None = None) -> tuple[int, ...]:
    if type(value) is not tuple or not all(type(n) is int for n in value) or (count is not None and len(value) != count):
        raise Unsupported("tensor size or stride is not a tuple of ints")
    return value


def _empty_hooks(hooks: Any) -> None:
    if type(hooks) is not OrderedDict or hooks:
        raise Unsupported("tensor with backward hooks")


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, metadata: Any = None) -> _Tensor:
    if type(storage) is not _Storage or type(offset) is not int or type(requires_grad) is not bool or metadata:
        raise Unsupported("tensor with unusual arguments")
    _empty_hooks(hooks)
    shape = _ints(size)
    return _Tensor(storage, offset, shape, _ints(stride, len(shape)), requires_grad, storage.dtype)


def _rebuild_tensor_v3(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, dtype: Any, metadata: Any = None) -> _Tensor:
    """Newer dtypes (uint16, ...) sit on an untyped (byte) storage; the tensor names its dtype."""
    if type(dtype) is not _DType or type(storage) is not _Storage or storage.dtype != "uint8":
        raise Unsupported("tensor with unusual arguments")
    tensor = _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, metadata)
    tensor.dtype = dtype.name
    return tensor


def _rebuild_parameter(data: Any, requires_grad: Any, hooks: Any) -> _Parameter:
    if type(data) is not _Tensor or type(requires_grad) is not bool:
        raise Unsupported("Parameter with unusual arguments")
    _empty_hooks(hooks)
    return _Parameter(data.storage, data.offset, data.shape, data.strides, requires_grad, data.dtype)


def _encode(text: Any, encoding: Any) -> bytes:
    """How protocol-2 pickles spell bytes: _codecs.encode(str, 'latin1')."""
    if type(text) is not str or encoding != "latin1":
        raise Unsupported("_codecs.encode with unusual arguments")
    return text.encode("latin1")


def _bytearray(content: Any = b"", encoding: Any = None) -> bytearray:
    """bytearray(bytes) or bytearray(str, 'latin-1'), as pickles spell it; never bytearray(n), which allocates n bytes."""
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
_GLOBALS.update({("torch", dtype): _DType(dtype) for dtype in _ITEMSIZE})

# The torch namespace encode_tree sees: the stand-in types above.
FAKE_TORCH = SimpleNamespace(Tensor=_Tensor, nn=SimpleNamespace(Parameter=_Parameter), Size=_Size, dtype=_DType, device=_Device, strided=_STRIDED)


class _Unpickler(pickle.Unpickler):
    """Never imports anything: globals resolve to the stand-ins, storages to their zip keys."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocol-2 pickles name Python 2's module
            module = "builtins"
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise Unsupported(f"global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> _Storage:
        if type(pid) is not tuple or len(pid) != 5 or pid[0] != "storage":
            raise Unsupported("unknown persistent id")
        _, kind, key, _location, numel = pid
        dtype = kind.dtype if type(kind) is _StorageType else kind.name if type(kind) is _DType else None
        if dtype is None or type(key) is not str or type(numel) is not int or numel < 0:
            raise Unsupported("unusual storage reference")
        storage = self.storages.setdefault(key, _Storage(key, dtype, numel))
        if (storage.dtype, storage.numel) != (dtype, numel):
            raise Unsupported(f"storage {key} is used with two dtypes")
        return storage


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of a C-order tensor of this shape."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


@dataclass
class _Group:
    """One parameter group: a whole storage, named and typed like pytorch._params does."""

    name: str
    dtype: str  # git-theta's dtype name
    shape: tuple[int, ...]
    storage: _Storage


def _groups(nodes: list[TensorNode], dtype_names: Mapping[str, str]) -> dict[str, _Group]:
    """Storage key -> its group; non-owning tensors get their view recorded in the tree."""
    by_key: dict[str, list[TensorNode]] = {}
    for node in nodes:
        by_key.setdefault(node.tensor.storage.key, []).append(node)
    taken = {node.name for node in nodes}
    groups = {}
    for key, members in by_key.items():
        storage = members[0].tensor.storage

        def owns(t: _Tensor) -> bool:
            whole = math.prod(t.shape) * _ITEMSIZE.get(t.dtype, 0) == storage.nbytes
            return t.dtype in dtype_names and t.offset == 0 and t.strides == contiguous_strides(t.shape) and whole

        owner = next((n for n in members if owns(n.tensor)), None)
        if owner is not None:
            groups[key] = _Group(owner.name, dtype_names[owner.tensor.dtype], owner.tensor.shape, storage)
        else:
            groups[key] = _Group(unique_name(members[0].name + "@storage", taken), "U8", (storage.nbytes,), storage)
        for node in members:
            if node is not owner:
                node.record_view(groups[key].name, node.tensor.dtype)
    return groups


def _central_crc_offsets(file: IO[bytes], archive: zipfile.ZipFile, size: int) -> dict[str, int]:
    """Member name -> file offset of its CRC-32 in the central directory."""
    start = getattr(archive, "start_dir", None)
    if type(start) is not int:
        raise Unsupported("central directory not found")
    file.seek(start)
    directory = read_exact(file, size - start)
    found, at = {}, 0
    for _ in archive.infolist():
        if directory[at : at + 4] != b"PK\x01\x02":
            raise Unsupported("unexpected central directory entry")
        name_length, extra_length, comment_length = (int.from_bytes(directory[at + i : at + i + 2], "little") for i in (28, 30, 32))
        name = directory[at + 46 : at + 46 + name_length].decode("utf-8", "replace")
        found[name] = start + at + 16
        at += 46 + name_length + extra_length + comment_length
    return found


def _crc_offsets(file: IO[bytes], info: zipfile.ZipInfo, start: int, central: int) -> list[int]:
    """File offsets holding this member's CRC-32: local header or data descriptor, and central directory."""
    end = start + info.compress_size
    if info.flag_bits & 0x08:  # sizes and CRC follow the data, in a data descriptor
        file.seek(end)
        head = file.read(4)
        places = [end + 4 if head == b"PK\x07\x08" else end, central]
    else:
        places = [info.header_offset + 14, central]
    for place in places:
        file.seek(place)
        if file.read(4) != info.CRC.to_bytes(4, "little"):
            raise Unsupported(f"member {info.filename} does not hold its CRC-32 where expected")
    return places


def check_limits(infos: list[zipfile.ZipInfo], size: int) -> None:
    """LimitError if the archive's directory declares more than a file of `size` bytes can hold or a pickle
    larger than MAX_PICKLE_BYTES: final for torch.load too, so pytorch.py checks it before that as well."""
    check_members(infos, size)
    for info in infos:
        if info.filename.endswith(".pkl") and info.file_size > MAX_PICKLE_BYTES:
            raise LimitError(f"{info.filename} declares {info.file_size} bytes, more than the limit of {MAX_PICKLE_BYTES} for a pickle")


def _plan(file: IO[bytes], size: int, dtype_names: Mapping[str, str]) -> tuple[Any, dict[str, zipfile.ZipInfo], dict[str, _Group], dict[str, list[int]]]:
    """Check the archive and its pickle; raise Unsupported for anything the fast path does not handle."""
    archive = zipfile.ZipFile(file)
    infos = sorted(archive.infolist(), key=lambda info: info.header_offset)
    check_limits(infos, size)
    by_name = {info.filename: info for info in infos}
    if not infos or len(by_name) != len(infos) or not infos[0].filename.endswith("/data.pkl"):
        raise Unsupported("unexpected member list")
    if any(info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1 for info in infos):
        raise Unsupported("compressed or encrypted members")
    prefix = infos[0].filename[: -len("data.pkl")]
    if prefix + "byteorder" in by_name and archive.read(prefix + "byteorder") != b"little":
        raise Unsupported("big-endian storages")
    unpickler = _Unpickler(archive.read(infos[0].filename))
    tree, nodes = encode_tree(unpickler.load(), FAKE_TORCH)
    groups = _groups(nodes, dtype_names)
    if groups.keys() != unpickler.storages.keys():
        raise Unsupported("a storage no tensor uses")
    central = _central_crc_offsets(file, archive, size)
    members, crcs = {}, {}
    for key, group in groups.items():
        info = by_name.get(f"{prefix}data/{key}")
        if info is None or info.file_size != group.storage.nbytes:
            raise Unsupported(f"storage {key} is missing or not {group.storage.nbytes} bytes")
        members[key] = info
        crcs[key] = _crc_offsets(file, info, data_start(file, info), central[info.filename])
    storage_members = {info.filename for info in members.values()}
    ends = [info.header_offset for info in infos[1:]] + [archive.start_dir]
    for info, limit in zip(infos, ends):
        if info.filename in storage_members and data_start(file, info) + info.compress_size > limit:
            raise Unsupported(f"member {info.filename} overlaps what follows it")
    return tree, members, groups, crcs


def read(file: IO[bytes], size: int, whole_digest: str, sink: ParamSink, dtype_names: Mapping[str, str]) -> tuple[Any, dict[str, Any]] | None:
    """(structure tree, zip section) for a spooled torch zip, or None if torch.load must read it.

    Nothing reaches `sink` before the archive and its pickle have been
    checked, so returning None leaves no trace. `whole_digest` is the BLAKE3
    of the file: the skeleton and storages must put it back together exactly.
    """
    try:
        tree, members, groups, crcs = _plan(file, size, dtype_names)
    except LimitError:
        raise  # torch.load would meet the same limit, after loading torch and the whole pickle
    except (Unsupported, CheckpointError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError, RecursionError, NotImplementedError, OSError):
        return None
    builder = SkeletonBuilder(file)
    check, hashed = blake3.blake3(), 0
    payloads: list[tuple[int, int]] = []  # (file offset, length) of every storage payload
    segments: list[tuple[dict[str, Any], list[int]]] = []
    for key, info in sorted(members.items(), key=lambda item: item[1].header_offset):
        start = data_start(file, info)
        builder.raw_until(start)
        check.update(builder.skeleton[hashed:])
        hashed = len(builder.skeleton)
        file.seek(start)
        data = read_into(file, info.compress_size)
        if zlib.crc32(data) != info.CRC:
            raise CheckpointError(f"member {info.filename!r}: CRC-32 mismatch, the file is corrupt")
        check.update(data)
        group = groups[key]
        sink.add(group.name, Tensor(group.dtype, group.shape, data))
        segment = {"storage": group.name, "bytes": info.compress_size}
        segments.append((segment, crcs[key]))
        payloads.append((start, info.compress_size))
        builder.payload(segment, start + info.compress_size)
    builder.raw_until(size)
    check.update(builder.skeleton[hashed:])
    if len(builder.skeleton) + sum(n for _, n in payloads) != size or check.hexdigest() != whole_digest:
        raise CheckpointError("internal error: the zip skeleton and storages do not reassemble the file")
    starts, before = [at for at, _ in payloads], list(itertools.accumulate((n for _, n in payloads), initial=0))
    for segment, places in segments:
        # Skeleton offset = file offset minus the payload bytes before it (CRCs never sit inside a payload).
        segment["crc"] = [place - before[bisect.bisect_left(starts, place)] for place in places]
    return tree, {"layout": builder.layout, "skeleton": sink.put_blob(bytes(builder.skeleton))}


def _storage_names(layout: list[dict[str, Any]]) -> list[str]:
    return [segment["storage"] for segment in layout if "storage" in segment]


def write(file: Mapping[str, Any], source: ParamSource, out: BinaryIO) -> None:
    """Skeleton runs and storages, interleaved as the layout says."""
    reader = zip_layout.SkeletonReader(source.get_blob(file["skeleton"]), "zip")
    storages = source.tensors(_storage_names(file["layout"]))
    for _, tensor in reader.payloads(file["layout"], storages, out, lambda segment: f"parameter {segment['storage']!r}"):
        out.write(memoryview(tensor.data))


def patch_crcs(file: Mapping[str, Any], source: ParamSource, sink: ParamSink) -> dict[str, Any]:
    """The section for the same layout holding new storage values: only the CRC-32s in the skeleton change."""
    skeleton = bytearray(source.get_blob(file["skeleton"]))
    storages = [segment for segment in file["layout"] if "storage" in segment]
    for segment, tensor in zip(storages, source.tensors(_storage_names(file["layout"]))):
        crc = zlib.crc32(memoryview(tensor.data)).to_bytes(4, "little")
        for place in segment["crc"]:
            skeleton[place : place + 4] = crc
    return {**file, "skeleton": sink.put_blob(bytes(skeleton))}
