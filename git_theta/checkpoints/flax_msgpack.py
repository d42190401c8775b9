"""Flax msgpack state dicts (flax.serialization.to_bytes / msgpack_serialize), rebuilt byte for byte.

The file is one msgpack value, usually nested maps. Flax writes each array leaf as an ExtType 1 whose payload is
itself msgpack: the 3-array (shape, dtype name, bin of the C-order bytes). The bin's bytes become a parameter group
named by the leaf's key path joined with "/" (flax.traverse_util.flatten_dict(sep="/"): `params/Dense_0/kernel`);
every other byte (map and array headers, keys, non-array leaves, the ext and bin headers around each array) goes
into one skeleton blob, and the layout says how skeleton runs and arrays interleave. Arrays flax chunked (above
2**30 bytes: `__msgpack_chunked_array__` maps) follow the same rule: each chunk is a 1-D group `<path>/chunks/<i>`.

msgpack is parsed here, without the msgpack package, by a reader that streams, never allocates from a declared
length before the bytes arrived, and bounds nesting and item counts (docs/formats.md, "Checkpoint files").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, BinaryIO

from git_theta import dtypes
from git_theta.checkpoints import flax_encode
from git_theta.checkpoints.base import (
    MAX_RANK,
    READ_CHUNK,
    CheckpointFormat,
    LimitError,
    ParamSink,
    ParamSource,
    read_exact,
)
from git_theta.checkpoints.flax_encode import EXT_NDARRAY, NUMPY_NAMES
from git_theta.errors import CheckpointError
from git_theta.metadata import ParamEntry
from git_theta.objects import MAX_BLOB_BYTES
from git_theta.tensor import Tensor

# Limits on what a file declares (docs/formats.md, "Checkpoint files"). Every length is also bounded by the bytes
# that actually arrive: buffers grow with the stream, never from a declared size.
MAX_MSGPACK_DEPTH = 256
# Items also bound the time a walk takes: ~1 us per scalar, ~3 us per small container (Python), so a hostile file
# of tiny nested containers is refused within about half a minute; a flax state dict holds a few items per array.
MAX_MSGPACK_ITEMS = 10_000_000
MAX_FLAX_ARRAYS = 1_000_000
# Bytes read ahead into the walker's buffer.
READ_BUFFER = 64 << 10
# A leaf whose path is longer than this (bytes of the joined name) stays in the skeleton, unnamed.
MAX_FLAX_NAME_BYTES = 4096
# Longest dtype name read from an array header; numpy's longest is shorter ("float8_e4m3b11fnuz").
_LONGEST_DTYPE_NAME = 32


_MAP_HEADERS = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])
# fmt: off
# Marker -> (what it is, bytes of the length or value that follow). Fixed-size items are skipped whole.
_SIZED = {0xC4: ("bin", 1), 0xC5: ("bin", 2), 0xC6: ("bin", 4), 0xD9: ("str", 1), 0xDA: ("str", 2), 0xDB: ("str", 4),
          0xC7: ("ext", 1), 0xC8: ("ext", 2), 0xC9: ("ext", 4), 0xDC: ("array", 2), 0xDD: ("array", 4),
          0xDE: ("map", 2), 0xDF: ("map", 4)}
_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4,
          0xD3: 8}
_FIXEXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
# Marker -> the whole value's size in bytes for numbers, nil, bools and fixstr (0: anything else).
_SCALAR_SIZE = [
    1 if marker <= 0x7F or marker >= 0xE0 else 1 + _FIXED[marker] if marker in _FIXED else
    1 + (marker & 0x1F) if 0xA0 <= marker <= 0xBF else 0
    for marker in range(256)
]
# fmt: on


def _escape(key: str) -> str:
    """A key as one path component: "/" and "%" percent-escaped and the empty key as "%" (which no other key gives),
    so different key paths give different names."""
    return key.replace("%", "%25").replace("/", "%2F") if key else "%"


class _Budget(Exception):
    """An array header ran past its ext payload: the leaf is not an array git-theta reads."""


class _Walker:
    """Walks one msgpack value from a stream, copying every byte to the skeleton except array leaves' data."""

    def __init__(self, stream: BinaryIO, sink: ParamSink | None) -> None:
        self.stream = stream
        self.buffer = b""
        self.offset = 0
        self.sink = sink
        self.skeleton = bytearray()
        self.layout: list[dict[str, Any]] = []
        self.run = 0  # skeleton bytes since the last array
        self.items = 0
        self.names: set[str] = set()
        self.saw_array = False

    def read(self, size: int) -> bytes:
        """`size` bytes of the file, through a small buffer: msgpack is mostly one-byte reads."""
        end = self.offset + size
        if end <= len(self.buffer):
            data = self.buffer[self.offset : end]
            self.offset = end
            return data
        data = self.buffer[self.offset :]
        self.buffer, self.offset = b"", 0
        missing = size - len(data)
        if missing >= READ_BUFFER:
            return data + read_exact(self.stream, missing)
        chunk = self.stream.read(READ_BUFFER)
        while len(chunk) < missing:  # a raw stream may return less than asked
            more = self.stream.read(READ_BUFFER)
            if not more:
                raise CheckpointError(f"file ends early: needed {size} more bytes, got {len(data) + len(chunk)}")
            chunk += more
        self.buffer, self.offset = chunk, missing
        return data + chunk[:missing]

    def read_array(self, size: int) -> bytearray:
        """Array data: what the buffer holds, then the stream, growing with the bytes that arrive (never `size`)."""
        data = bytearray(self.buffer[self.offset : self.offset + size])
        self.offset += len(data)
        while len(data) < size:
            chunk = self.stream.read(min(size - len(data), READ_CHUNK))
            if not chunk:
                raise CheckpointError(f"file ends early: needed {size} bytes, got {len(data)}")
            data += chunk  # in place, like base.read_into: no second buffer of the array's size
        return data

    def at_end(self) -> bool:
        return self.offset == len(self.buffer) and not self.stream.read(1)

    def take(self, size: int) -> bytes:
        data = self.read(size) if size else b""
        self.skeleton += data
        self.run += size
        self.check_skeleton()
        return data

    def check_skeleton(self) -> None:
        # Checkout refuses a blob larger than this, so `git add` must refuse to store one.
        if len(self.skeleton) > MAX_BLOB_BYTES:
            limit = MAX_BLOB_BYTES >> 20
            raise LimitError(f"the file's bytes that are not array data exceed {limit} MiB, the limit for a skeleton")

    def byte(self) -> int:
        if self.offset < len(self.buffer):  # the common case, kept short: most items are a marker byte alone
            value = self.buffer[self.offset]
            self.offset += 1
            self.skeleton.append(value)
            self.run += 1
            return value
        return self.take(1)[0]

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def value(self, parent: str | None, component: str | None, depth: int) -> str | None:
        """Walk one value at `component` under `parent` (either None: unnamed). Returns a str value, for keys.

        The name is built only for a map, an array or an ext: a million floats in a list cost no names."""
        self.items += 1
        if self.items > MAX_MSGPACK_ITEMS:
            raise LimitError(f"the file holds more than the limit of {MAX_MSGPACK_ITEMS} msgpack items")
        if depth > MAX_MSGPACK_DEPTH:
            raise LimitError(f"msgpack values are nested deeper than the limit of {MAX_MSGPACK_DEPTH}")
        marker = self.byte()
        if marker <= 0x7F or marker >= 0xE0 or marker in _FIXED:
            self.take(_FIXED.get(marker, 0))
            return None
        if marker == 0xC1:
            raise CheckpointError("byte 0xc1 is not a msgpack value (never used)")
        if 0xA0 <= marker <= 0xBF:
            return self.string(marker & 0x1F)
        if 0x80 <= marker <= 0x8F:
            self.map(marker & 0x0F, self.child(parent, component), depth)
        elif 0x90 <= marker <= 0x9F:
            self.array(marker & 0x0F, self.child(parent, component), depth)
        elif marker in _FIXEXT:
            self.ext(_FIXEXT[marker], self.child(parent, component))
        else:
            kind, width = _SIZED[marker]
            length = self.number(width)
            if kind == "str":
                return self.string(length)
            if kind == "map":
                self.map(length, self.child(parent, component), depth)
            elif kind == "array":
                self.array(length, self.child(parent, component), depth)
            elif kind == "ext":
                self.ext(length, self.child(parent, component))
            else:
                self.take(length)
        return None

    def string(self, length: int) -> str | None:
        data = self.take(length)
        if length > MAX_FLAX_NAME_BYTES:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return None  # an invalid key cannot name anything; its bytes stay in the skeleton

    def check_count(self, count: int) -> None:
        if count > MAX_MSGPACK_ITEMS:
            raise LimitError(
                f"a msgpack map or array declares {count} items, more than the limit of {MAX_MSGPACK_ITEMS}"
            )

    def map(self, count: int, path: str | None, depth: int) -> None:
        self.check_count(count)
        for _ in range(count):
            key = self.value(None, None, depth + 1)
            if not self.inline_scalar():
                self.value(path, None if key is None else _escape(key), depth + 1)

    def array(self, count: int, path: str | None, depth: int) -> None:
        self.check_count(count)
        for index in range(count):
            if not self.inline_scalar():
                self.value(path, str(index), depth + 1)

    def inline_scalar(self) -> bool:
        """Consume the next value if it is a number, nil, a bool or a short string already buffered: a list of a
        million floats then costs one short call per item (a plain walk costs several)."""
        if self.offset >= len(self.buffer):
            return False
        size = _SCALAR_SIZE[self.buffer[self.offset]]
        end = self.offset + size
        if not size or end > len(self.buffer):
            return False
        self.items += 1
        if self.items > MAX_MSGPACK_ITEMS:
            raise LimitError(f"the file holds more than the limit of {MAX_MSGPACK_ITEMS} msgpack items")
        self.skeleton += self.buffer[self.offset : end]
        self.offset = end
        self.run += size
        return True

    @staticmethod
    def child(path: str | None, component: str | None) -> str | None:
        """The name of `component` under `path`. The root is component "" under path "" (a key's component is
        never "": the empty key is "%")."""
        if path is None or component is None:
            return None
        if component == "":
            return path
        name = f"{path}/{component}" if path else component
        return name if len(name.encode("utf-8", "surrogatepass")) <= MAX_FLAX_NAME_BYTES else None

    def ext(self, length: int, path: str | None) -> None:
        code = self.byte()
        if code != EXT_NDARRAY or not path or path in self.names:
            self.take(length)
            return
        budget = [length]
        try:
            leaf = self.array_header(budget)
        except _Budget:
            leaf = None
        if leaf is None or leaf[2] != budget[0]:
            self.take(budget[0])  # not an array git-theta reads (or its bin does not fill the payload): kept raw
            return
        self.saw_array = True  # for sniff: the array's data may lie beyond the bytes it is shown
        self.add_array(path, *leaf)

    def small(self, budget: list[int], size: int) -> bytes:
        """`size` bytes of an array header, inside the ext payload's `budget`."""
        if size > budget[0]:
            raise _Budget()
        budget[0] -= size
        return self.take(size)

    def small_number(self, budget: list[int], size: int) -> int:
        return int.from_bytes(self.small(budget, size), "big")

    def array_header(self, budget: list[int]) -> tuple[str, tuple[int, ...], int] | None:
        """(dtype, shape, data bytes) from the payload's (shape, dtype name, bin header), or None if it is not one."""
        if self.small(budget, 1) != b"\x93":
            return None
        shape = self.shape(budget)
        if shape is None:
            return None
        marker = self.small(budget, 1)[0]
        if 0xA0 <= marker <= 0xBF:
            name_length = marker & 0x1F
        elif marker == 0xD9:
            name_length = self.small_number(budget, 1)
        else:
            return None
        if name_length > _LONGEST_DTYPE_NAME:
            return None
        ours = NUMPY_NAMES.get(self.small(budget, name_length).decode("ascii", "replace"))
        widths = {0xC4: 1, 0xC5: 2, 0xC6: 4}
        marker = self.small(budget, 1)[0]
        if ours not in dtypes.ITEMSIZE or marker not in widths:
            return None
        size = self.small_number(budget, widths[marker])
        if size != math.prod(shape) * dtypes.itemsize(ours):
            return None
        return ours, shape, size

    def shape(self, budget: list[int]) -> tuple[int, ...] | None:
        marker = self.small(budget, 1)[0]
        if 0x90 <= marker <= 0x9F:
            rank = marker & 0x0F
        elif marker == 0xDC:
            rank = self.small_number(budget, 2)
        else:
            return None
        if rank > MAX_RANK:
            return None
        widths = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
        shape = []
        for _ in range(rank):
            marker = self.small(budget, 1)[0]
            if marker <= 0x7F:
                shape.append(marker)
            elif marker in widths:
                shape.append(self.small_number(budget, widths[marker]))
            else:
                return None  # negative or not an integer: not an array shape
        return tuple(shape)

    def add_array(self, name: str, dtype: str, shape: tuple[int, ...], size: int) -> None:
        if len(self.names) >= MAX_FLAX_ARRAYS:
            raise LimitError(f"the file holds more than the limit of {MAX_FLAX_ARRAYS} arrays")
        try:
            data = self.read_array(size)
        except CheckpointError as error:
            raise CheckpointError(f"array {name!r}: {error} (truncated?)") from None
        self.layout += [{"raw": self.run}, {"array": name, "bytes": size}]
        self.run = 0
        self.names.add(name)
        if self.sink is not None:
            self.sink.add(name, Tensor(dtype, shape, data))


def _head_has_array(head: bytes) -> bool:
    """True if walking the first bytes of a file reaches an array leaf flax would write."""
    import io

    walker = _Walker(io.BytesIO(head), None)
    try:
        walker.value("", "", 0)
    except CheckpointError:
        pass
    return walker.saw_array


class FlaxMsgpackFormat(CheckpointFormat):
    name = "flax"
    extensions = (".msgpack", ".flax")

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        if not head or head[0] not in _MAP_HEADERS:
            return False
        return path.lower().endswith(cls.extensions) or _head_has_array(head)

    def read(self, stream: BinaryIO, path: str, sink: ParamSink) -> dict[str, Any]:
        walker = _Walker(stream, sink)
        walker.value("", "", 0)
        walker.check_skeleton()
        if not walker.at_end():
            end = len(walker.skeleton) + _data_bytes(walker.layout)
            raise CheckpointError(f"file has bytes after its msgpack value, which ends at byte {end}")
        layout = [*walker.layout, {"raw": walker.run}]
        # Stored last: a file that turns out truncated leaves no skeleton object behind.
        return {"layout": layout, "skeleton": sink.put_blob(bytes(walker.skeleton))}

    def write_new(self, tensors: Mapping[str, Tensor], out: BinaryIO) -> None:
        """The bytes flax.serialization.msgpack_serialize writes for the nested dict the names spell, keys sorted."""
        for piece in flax_encode.encode(flax_encode.nested(tensors, sorted(tensors))):
            if isinstance(piece, bytes):
                out.write(piece)
            else:
                name, start, end = piece
                out.write(memoryview(tensors[name].data).cast("B")[start:end])

    def file_for_params(
        self,
        file: Mapping[str, Any],
        before: Mapping[str, ParamEntry],
        after: Mapping[str, ParamEntry],
        source: ParamSource,
        sink: ParamSink,
    ) -> dict[str, Any]:
        """Values changed in place: the same skeleton. Arrays added, removed or reshaped: a new skeleton, if the
        file is a plain state dict (nested maps of arrays, as flax writes it), in the old order with new arrays
        appended by name; anything else in the file (numbers, strings, lists) cannot be placed, so it is refused.
        """
        if {n: (e.dtype, e.shape) for n, e in before.items()} == {n: (e.dtype, e.shape) for n, e in after.items()}:
            return dict(file)
        old_order = [segment["array"] for segment in file["layout"] if "array" in segment]
        try:
            plain = flax_encode.plan(before, old_order) == (source.get_blob(file["skeleton"]), file["layout"])
        except CheckpointError:
            plain = False
        if not plain:
            raise CheckpointError(
                "the flax file holds more than nested maps of arrays (numbers, strings, lists, empty maps or "
                "chunked arrays): a merge cannot add, remove or reshape arrays in it"
            )
        order = [name for name in old_order if name in after] + sorted(set(after) - set(old_order))
        skeleton, layout = flax_encode.plan(after, order)
        return {"layout": layout, "skeleton": sink.put_blob(skeleton)}

    def write(
        self, file: Mapping[str, Any], params: Mapping[str, ParamEntry], source: ParamSource, out: BinaryIO
    ) -> None:
        skeleton = memoryview(source.get_blob(file["skeleton"]))
        layout = file["layout"]
        arrays = [segment for segment in layout if "array" in segment]
        if sum(segment.get("raw", 0) for segment in layout) != len(skeleton):
            raise CheckpointError("the stored flax layout does not fit its skeleton")
        for segment in arrays:
            entry = params.get(segment["array"])
            if entry is None or math.prod(entry.shape) * dtypes.itemsize(entry.dtype) != segment["bytes"]:
                raise CheckpointError(f"metadata does not match the stored flax layout for array {segment['array']!r}")
        tensors = source.tensors([segment["array"] for segment in arrays])
        position = 0
        for segment in layout:
            if "raw" in segment:
                out.write(skeleton[position : position + segment["raw"]])
                position += segment["raw"]
            else:
                out.write(next(tensors).data)


def _data_bytes(layout: list[dict[str, Any]]) -> int:
    return sum(segment.get("bytes", 0) for segment in layout)
