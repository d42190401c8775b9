"""ONNX models (.onnx) and their external data files, rebuilt byte for byte, read without the onnx package.

An .onnx file is one protobuf ModelProto. The reader walks the protobuf wire format itself (importing onnx,
and protobuf with it, would cost every `git add` its start-up): ModelProto.graph -> GraphProto.initializer and
sparse_initializer -> TensorProto, and on into the subgraphs that node attributes hold (If/Loop/Scan bodies),
the attribute tensors (Constant values), training_info graphs and functions. Each TensorProto whose values are
in `raw_data`, of a dtype git-theta names, becomes a parameter group named by the tensor's name; every other
byte (the graph, the other TensorProto fields, tensors in typed fields such as float_data, dtypes we do not
name) goes into one "skeleton" blob, and the file section's layout says how skeleton runs and payloads
interleave, as in checkpoints/zip_layout.py. Checkout writes them back in order: the file is the added one.

External data (`onnx.save_model(..., save_as_external_data=True)`) is a raw concatenation of tensors at the
offsets the .onnx declares. OnnxDataFormat reads that file: it finds the sibling .onnx in the working tree that
refers to it and cuts the data at the declared boundaries; where there is no such sibling or it does not fit
the data, the bytes go into fixed-size U8 chunks, still exact. The file section holds the whole layout, so
checkout never needs the sibling.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

from git_theta.checkpoints.base import (
    MAX_RANK,
    SNIFF_BYTES,
    CheckpointFormat,
    LimitError,
    ParamSink,
    ParamSource,
    checked_shape,
    read_into,
    shown,
    spool,
)
from git_theta.checkpoints.zip_layout import SkeletonBuilder, SkeletonReader
from git_theta.errors import CheckpointError
from git_theta.metadata import ParamEntry
from git_theta.tensor import Tensor

# Limits on what a model declares (docs/formats.md, "Checkpoint files"). Protobuf cannot serialize a message of
# 2 GiB or more, so a larger .onnx is not a model; a varint has at most 10 bytes; subgraphs (an If branch inside a
# Loop body ...) nest at most MAX_GRAPH_DEPTH deep; a model holds at most MAX_TENSORS tensors (of any kind).
MAX_MODEL_BYTES = (2 << 30) - 1
MAX_VARINT_BYTES = 10
MAX_GRAPH_DEPTH = 32
MAX_TENSORS = 1_000_000
# External data: the size of the U8 chunks for bytes no sibling model describes, how many .onnx files next to a
# data file are looked at for one that refers to it, and how many gap bytes (alignment padding) the skeleton takes
# before further gaps become chunks too.
DATA_CHUNK_BYTES = 16 << 20
MAX_SIBLINGS = 64
MAX_DATA_SKELETON_BYTES = 16 << 20

# TensorProto.DataType -> our dtype names; the others (STRING, COMPLEX*, FLOAT8*FNUZ, 4-bit and 2-bit types, ...)
# stay in the skeleton.
DATA_TYPES: dict[int, str] = {
    1: "F32",
    2: "U8",
    3: "I8",
    4: "U16",
    5: "I16",
    6: "I32",
    7: "I64",
    9: "BOOL",
    10: "F16",
    11: "F64",
    12: "U32",
    13: "U64",
    16: "BF16",
    17: "F8_E4M3",
    19: "F8_E5M2",
}
# The field numbers of ModelProto and the wire type each has: sniff checks that a file starts with these.
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
_RELEASE_BYTES = 1 << 20
_Buffer = bytes | memoryview | mmap.mmap


def _varint(buf: _Buffer, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`, which must end before `end`."""
    result = 0
    for index in range(MAX_VARINT_BYTES):
        if pos + index >= end:
            raise CheckpointError(f"protobuf varint at byte {pos} runs past the end of its message (truncated?)")
        byte = buf[pos + index]
        result |= (byte & 0x7F) << (7 * index)
        if byte < 0x80:
            if result >> 64:
                raise CheckpointError(f"protobuf varint at byte {pos} does not fit 64 bits")
            return result, pos + index + 1
    raise CheckpointError(f"protobuf varint at byte {pos} is longer than {MAX_VARINT_BYTES} bytes")


def _fields(buf: _Buffer, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value or payload start, payload end) of each field of the message in [start, end)."""
    pos = start
    while pos < end:
        tag = buf[pos]
        if tag < 0x80:  # one-byte tags and lengths are nearly all of them: no call
            pos += 1
        else:
            tag, pos = _varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise CheckpointError(f"protobuf field number 0 at byte {pos} (not a protobuf message)")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, pos
        elif wire == 2:
            length = buf[pos] if pos < end else 0x80
            if length < 0x80:
                pos += 1
            else:
                length, pos = _varint(buf, pos, end)
            if length > end - pos:
                raise CheckpointError(
                    f"protobuf field {number} at byte {pos} declares {length} bytes, "
                    f"its message has {end - pos} left (truncated?)"
                )
            yield number, wire, pos, pos + length
            pos += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if size > end - pos:
                raise CheckpointError(f"protobuf field {number} at byte {pos} runs past the end of its message")
            yield number, wire, pos, pos + size
            pos += size
        else:
            raise CheckpointError(f"protobuf field {number} at byte {pos} has wire type {wire}, which ONNX never uses")


def _int64(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


@dataclass(slots=True)
class _Found:
    """A TensorProto with raw_data or external data: its name, dtype (ours, or None), dims and where its bytes are."""

    name: str
    dtype: str | None
    dims: list[int]
    raw: tuple[int, int] | None
    external: dict[str, str] | None


class _Walker:
    """Finds every TensorProto in a ModelProto, in file order."""

    def __init__(self, buf: _Buffer) -> None:
        self.buf = buf
        self.tensors: list[_Found] = []  # only those with raw_data or external data: the others cost no memory
        self.count = 0

    def model(self, start: int, end: int) -> None:
        for number, wire, a, b in _fields(self.buf, start, end):
            if wire != 2:
                continue
            if number == 7:
                self.graph(a, b, 1)
            elif number == 20:  # TrainingInfoProto: initialization(1), algorithm(2)
                for inner, inner_wire, c, d in _fields(self.buf, a, b):
                    if inner in (1, 2) and inner_wire == 2:
                        self.graph(c, d, 1)
            elif number == 25:  # FunctionProto: node(7)
                for inner, inner_wire, c, d in _fields(self.buf, a, b):
                    if inner == 7 and inner_wire == 2:
                        self.node(c, d, 1)

    def graph(self, start: int, end: int, depth: int) -> None:
        if depth > MAX_GRAPH_DEPTH:
            raise LimitError(f"subgraphs nest more than the limit of {MAX_GRAPH_DEPTH} deep")
        for number, wire, a, b in _fields(self.buf, start, end):
            if wire != 2:
                continue
            if number == 1:
                self.node(a, b, depth)
            elif number == 5:
                self.tensor(a, b)
            elif number == 15:
                self.sparse(a, b)

    def node(self, start: int, end: int, depth: int) -> None:
        """A NodeProto's attributes; a tensor attribute without a name (a Constant's value) is named
        `<node name or first output>.<attribute name>`."""
        label = output = ""
        unnamed: list[tuple[_Found, str]] = []
        for number, wire, a, b in _fields(self.buf, start, end):
            if wire != 2:
                continue
            if number == 3:
                label = self.text(a, b)
            elif number == 2 and not output:
                output = self.text(a, b)
            elif number == 5:  # AttributeProto
                attribute, found = "", []
                for inner, inner_wire, c, d in _fields(self.buf, a, b):
                    if inner_wire != 2:
                        continue
                    if inner == 1:
                        attribute = self.text(c, d)
                    elif inner in (5, 10):  # t, tensors
                        found.append(self.tensor(c, d))
                    elif inner in (6, 11):  # g, graphs
                        self.graph(c, d, depth + 1)
                    elif inner in (22, 23):  # sparse_tensor, sparse_tensors
                        self.sparse(c, d)
                unnamed += [(tensor, attribute) for tensor in found if tensor is not None and not tensor.name]
        for tensor, attribute in unnamed:
            tensor.name = f"{label or output}.{attribute}" if label or output else attribute

    def sparse(self, start: int, end: int) -> None:
        """A SparseTensorProto: values(1) and indices(2); indices without a name are `<values name>.indices`."""
        values = indices = None
        for number, wire, a, b in _fields(self.buf, start, end):
            if number == 1 and wire == 2:
                values = self.tensor(a, b)
            elif number == 2 and wire == 2:
                indices = self.tensor(a, b)
        if indices is not None and not indices.name and values is not None and values.name:
            indices.name = f"{values.name}.indices"

    def text(self, start: int, end: int) -> str:
        """A string field, cut to 4 KiB (names are labels; the bytes stay in the skeleton as they are)."""
        return bytes(self.buf[start : min(end, start + 4096)]).decode("utf-8", errors="replace")

    def tensor(self, start: int, end: int) -> _Found | None:
        """Records a TensorProto that has raw_data or external data (and returns it); others only count."""
        self.count += 1
        if self.count > MAX_TENSORS:
            raise LimitError(f"the model holds more than the limit of {MAX_TENSORS} tensors")
        dims: list[int] = []
        data_type, name, raw, location = 0, "", None, 0
        external: dict[str, str] = {}
        for number, wire, a, b in _fields(self.buf, start, end):
            if number == 1:
                if wire == 0:
                    dims.append(_int64(a))
                elif wire == 2:  # packed
                    pos = a
                    while pos < b and len(dims) <= MAX_RANK:
                        dim, pos = _varint(self.buf, pos, b)
                        dims.append(_int64(dim))
                if len(dims) > MAX_RANK:
                    raise CheckpointError(f"a tensor declares more than {MAX_RANK} dimensions")
            elif number == 2 and wire == 0:
                data_type = a
            elif number == 8 and wire == 2:
                name = self.text(a, b)
            elif number == 9 and wire == 2:
                raw = (a, b)  # a repeated raw_data: the last wins, as in protobuf; the earlier stay in the skeleton
            elif number == 13 and wire == 2:
                key, value = self.entry(a, b)
                external[key] = value
            elif number == 14 and wire == 0:
                location = a
        self.release(start, end)
        if location != _EXTERNAL and raw is None:
            return None
        found = _Found(
            name,
            DATA_TYPES.get(data_type),
            dims,
            None if location == _EXTERNAL else raw,
            external if location == _EXTERNAL else None,
        )
        self.tensors.append(found)
        return found

    def release(self, start: int, end: int) -> None:
        """Unmap a large tensor's pages once its fields are read. A fault on a file mapping can map a whole large
        folio (2 MiB here), so touching each tensor's header would make most of the file resident."""
        if isinstance(self.buf, mmap.mmap) and end - start >= _RELEASE_BYTES:
            first = start - start % mmap.PAGESIZE
            self.buf.madvise(mmap.MADV_DONTNEED, first, min(end, len(self.buf)) - first)

    def entry(self, start: int, end: int) -> tuple[str, str]:
        """A StringStringEntryProto: key(1), value(2)."""
        key = value = ""
        for number, wire, a, b in _fields(self.buf, start, end):
            if wire == 2 and number in (1, 2):
                text = self.text(a, b)
                key, value = (text, value) if number == 1 else (key, text)
        return key, value


def _unique(name: str, taken: dict[str, int]) -> str:
    """`name`, or `name#2`, `name#3`, ... if it is taken (two tensors of one name, in file order)."""
    name = name or "tensor"
    if name not in taken:
        taken[name] = 1
        return name
    count = taken[name]
    while True:
        count += 1
        candidate = f"{name}#{count}"
        if candidate not in taken:
            taken[name] = count
            taken[candidate] = 1
            return candidate


def _model_tensors(buf: _Buffer, size: int) -> tuple[list[_Found], int]:
    """The tensors with raw or external data, in file order, and how many tensors the model holds in all."""
    walker = _Walker(buf)
    walker.model(0, size)
    return walker.tensors, walker.count


class _Map:
    """A read-only view of a whole file (mmap; an empty file has none)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.size = os.fstat(file.fileno()).st_size
        self.map: mmap.mmap | None = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) if self.size else None

    @property
    def buf(self) -> _Buffer:
        return self.map if self.map is not None else b""

    def close(self) -> None:
        if self.map is not None:
            self.map.close()


def _check_layout(file: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The file section's layout, checked: committed metadata is untrusted too."""
    layout = file.get("layout")
    if type(layout) is not list:
        raise CheckpointError("onnx file section has no layout list")
    for segment in layout:
        if type(segment) is not dict:
            raise CheckpointError(f"onnx layout segment {shown(segment)} is not an object")
        if "raw" in segment:
            if type(segment["raw"]) is not int or segment["raw"] < 0:
                raise CheckpointError(f"onnx layout run {shown(segment)} is not a byte count")
        elif type(segment.get("tensor")) is not str or type(segment.get("bytes")) is not int:
            raise CheckpointError(f"onnx layout segment {shown(segment)} names no tensor and byte count")
    return layout


def write_layout(file: Mapping[str, Any], params: Mapping[str, ParamEntry], source: ParamSource, out: BinaryIO) -> None:
    """Skeleton runs and tensors in layout order: a model or a data file, as it was added."""
    layout = _check_layout(file)
    names = [segment["tensor"] for segment in layout if "raw" not in segment]
    for name in names:
        if name not in params:
            raise CheckpointError(f"the onnx layout names tensor {shown(name)}, which the metadata does not have")
    reader = SkeletonReader(source.get_blob(file["skeleton"]), "onnx")
    for _, tensor in reader.payloads(layout, source.tensors(names), out, lambda s: f"tensor {shown(s['tensor'])}"):
        out.write(tensor.data)


class OnnxFormat(CheckpointFormat):
    name = "onnx"
    extensions = (".onnx",)

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        """A .onnx name and a start that parses as ModelProto fields (protobuf has no magic number)."""
        if not path.lower().endswith(".onnx") or not head:
            return False
        end = min(len(head), SNIFF_BYTES)
        pos = 0
        try:
            while pos < end:
                tag, pos = _varint(head, pos, end)
                if _MODEL_FIELDS.get(tag >> 3) != tag & 7:
                    return False
                length, pos = _varint(head, pos, end)
                if tag & 7 == 2:
                    pos += length
        except CheckpointError:
            return pos > 0  # the head ended inside a field: what was there was plausible
        return True

    def read(self, stream: BinaryIO, path: str, sink: ParamSink) -> dict[str, Any]:
        with spool(stream) as file:
            view = _Map(file)
            try:
                if view.size > MAX_MODEL_BYTES:
                    raise LimitError(f"the file has {view.size} bytes; a protobuf model is smaller than 2 GiB")
                return self._read(file, view, sink)
            finally:
                view.close()

    def _read(self, file: IO[bytes], view: _Map, sink: ParamSink) -> dict[str, Any]:
        taken: dict[str, int] = {}
        found_tensors, count = _model_tensors(view.buf, view.size)
        external = sum(1 for found in found_tensors if found.external is not None)
        payloads: list[tuple[str, str, tuple[int, ...], int, int]] = []
        for found in found_tensors:  # every check before the first tensor is stored
            if found.raw is None or found.dtype is None:
                continue
            begin, end = found.raw
            shape, nbytes = checked_shape(found.dims, found.dtype, f"tensor {shown(found.name)}")
            if nbytes != end - begin:
                raise CheckpointError(
                    f"tensor {shown(found.name)}: raw_data has {end - begin} bytes, "
                    f"{found.dtype}{list(shape)} needs {nbytes}"
                )
            payloads.append((_unique(found.name, taken), found.dtype, shape, begin, end))
        builder = SkeletonBuilder(file)
        for name, dtype, shape, begin, end in payloads:
            builder.raw_until(begin)
            file.seek(begin)  # read, not sliced from the map: mapped pages would count as resident memory
            sink.add(name, Tensor(dtype, shape, read_into(file, end - begin)))
            builder.payload({"tensor": name, "bytes": end - begin}, end)
        builder.raw_until(view.size)
        kept = count - external - len(payloads)  # tensors in typed fields (float_data ...) or of dtypes we do not name
        skeleton = sink.put_blob(bytes(builder.skeleton))
        return {"skeleton": skeleton, "layout": builder.layout, "kept": kept, "external": external}

    def write(
        self, file: Mapping[str, Any], params: Mapping[str, ParamEntry], source: ParamSource, out: BinaryIO
    ) -> None:
        write_layout(file, params, source, out)


@dataclass
class _Planned:
    """A tensor the sibling model places in the data file: its group name, dtype, shape and byte range."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int


def _plan(data_path: str) -> list[_Planned]:
    """The tensors a sibling .onnx places in the data file at `data_path`, by offset, without overlaps; [] if none.

    Never fails: a sibling that cannot be read or parsed, or entries that do not fit, are left out (their bytes
    become chunks)."""
    folder = os.path.dirname(data_path) or "."
    try:
        names = sorted(entry for entry in os.listdir(folder) if entry.lower().endswith(".onnx"))[:MAX_SIBLINGS]
    except OSError:
        return []
    target = os.path.normpath(os.path.abspath(data_path))
    for entry in names:
        model = os.path.join(folder, entry)
        try:
            with open(model, "rb") as handle:
                view = _Map(handle)
                try:
                    if view.size > MAX_MODEL_BYTES:
                        continue
                    tensors, _ = _model_tensors(view.buf, view.size)
                finally:
                    view.close()
        except (OSError, ValueError, CheckpointError):
            continue
        planned = _planned_in(tensors, folder, target)
        if planned:
            return planned
    return []


def _planned_in(tensors: list[_Found], folder: str, target: str) -> list[_Planned]:
    planned: list[_Planned] = []
    taken: dict[str, int] = {}
    for found in tensors:
        info = found.external
        if info is None or found.dtype is None or "location" not in info:
            continue
        if os.path.normpath(os.path.abspath(os.path.join(folder, info["location"]))) != target:
            continue
        try:
            shape, nbytes = checked_shape(found.dims, found.dtype, "tensor")
            offset = int(info.get("offset", "0"))
            length = int(info.get("length", str(nbytes)))
        except (CheckpointError, ValueError):
            continue
        if offset < 0 or length != nbytes or nbytes == 0:
            continue
        planned.append(_Planned(_unique(found.name, taken), found.dtype, shape, offset, nbytes))
    planned.sort(key=lambda p: p.offset)
    kept: list[_Planned] = []
    for item in planned:
        if not kept or item.offset >= kept[-1].offset + kept[-1].nbytes:
            kept.append(item)
    return kept


class _DataReader:
    """Cuts a forward-only data stream into planned tensors, skeleton gaps and U8 chunks."""

    def __init__(self, stream: BinaryIO, sink: ParamSink) -> None:
        self.stream = stream
        self.sink = sink
        self.position = 0
        self.skeleton = bytearray()
        self.layout: list[dict[str, Any]] = []
        self.ended = False

    def take(self, size: int) -> bytearray:
        """The next `size` bytes, fewer at the end of the stream (then `ended`); the buffer grows as they arrive."""
        buffer = bytearray()
        while len(buffer) < size:
            chunk = self.stream.read(min(size - len(buffer), 16 << 20))
            if not chunk:
                self.ended = True
                break
            buffer += chunk
        return buffer

    def gap(self, size: int) -> None:
        """`size` bytes between tensors: into the skeleton while it is small, else chunks."""
        if len(self.skeleton) + size <= MAX_DATA_SKELETON_BYTES:
            data = self.take(size)
            self.skeleton += data
            if self.layout and "raw" in self.layout[-1]:
                self.layout[-1]["raw"] += len(data)
            elif data:
                self.layout.append({"raw": len(data)})
            self.position += len(data)
        else:
            self.chunks(size)

    def chunks(self, size: int | None) -> None:
        """The next `size` bytes (all the rest if None) as U8 chunks named by their offset."""
        remaining = size
        while remaining is None or remaining > 0:
            want = DATA_CHUNK_BYTES if remaining is None else min(remaining, DATA_CHUNK_BYTES)
            data = self.take(want)
            if data:
                self.emit(f"bytes@{self.position}", "U8", (len(data),), data)
            if remaining is not None:
                remaining -= len(data)
            if self.ended:
                return

    def emit(self, name: str, dtype: str, shape: tuple[int, ...], data: bytearray) -> None:
        self.sink.add(name, Tensor(dtype, shape, data))
        self.layout.append({"tensor": name, "bytes": len(data)})
        self.position += len(data)

    def tensor(self, item: _Planned) -> None:
        data = self.take(item.nbytes)
        if len(data) == item.nbytes:
            self.emit(item.name, item.dtype, item.shape, data)
        elif data:  # the file ends inside the tensor: what is there is a chunk
            self.emit(f"bytes@{self.position}", "U8", (len(data),), data)


class OnnxDataFormat(CheckpointFormat):
    """An ONNX external data file: `model.onnx.data`, `model.onnx_data`, or `<stem>.data` beside `<stem>.onnx`."""

    name = "onnx-data"
    extensions = (".onnx.data", ".onnx_data")

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        lower = path.lower()
        if lower.endswith(cls.extensions):
            return True
        return lower.endswith(".data") and os.path.isfile(path[: -len(".data")] + ".onnx")

    def read(self, stream: BinaryIO, path: str, sink: ParamSink) -> dict[str, Any]:
        reader = _DataReader(stream, sink)
        planned = _plan(path)
        for item in planned:
            if reader.ended:
                break
            reader.gap(item.offset - reader.position)
            if reader.ended:
                break
            reader.tensor(item)
        if not reader.ended:
            reader.chunks(None)
        skeleton = sink.put_blob(bytes(reader.skeleton))
        return {"skeleton": skeleton, "layout": reader.layout, "described": len(planned) > 0}

    def write(
        self, file: Mapping[str, Any], params: Mapping[str, ParamEntry], source: ParamSource, out: BinaryIO
    ) -> None:
        write_layout(file, params, source, out)
