"""safetensors: an 8-byte header length, a JSON header, then tensor bytes back to back.

The header is kept byte for byte as a blob (it holds offsets, dtypes, shapes,
`__metadata__` and any padding), so the rebuilt file is identical to the
added one. Tensors are read in file order straight from the stream.
"""

from __future__ import annotations

import json
import math
import re
import struct
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from git_theta import dtypes
from git_theta.checkpoints.base import (
    MAX_TENSOR_BYTES,
    CheckpointFormat,
    ParamSink,
    ParamSource,
    checked_shape,
    read_exact,
    read_into,
    shown,
    tensor_bytes,
)
from git_theta.errors import CheckpointError, ThetaError
from git_theta.metadata import ParamEntry, unique_keys
from git_theta.tensor import Tensor

# The entry matcher compiled from git_theta/_stheader.c (optional in setup.py): when it was not built,
# _matched_entries does the same in Python, with ~10 times the CPU (~4.5 us an entry at 10^6 entries).
_Entries = list[tuple[str, str, tuple[int, ...], int, int]]
_match_entries: Callable[[bytes, int, int, dict[str, tuple[int, int]], int, int], _Entries | None] | None
try:
    from git_theta._stheader import match_entries as _match_entries
except ImportError:
    _match_entries = None

IMPLEMENTATION = "python" if _match_entries is None else "c"

# Limits on what a header declares (docs/formats.md, "Checkpoint files"). The header length is checked before
# anything is read; the entry count is checked on the parsed header (whose size the length cap bounds).
MAX_HEADER_BYTES = 100 << 20
MAX_TENSORS = 1_000_000
_U64 = struct.Struct("<Q")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _load_header(header_bytes: bytes, adding: bool) -> dict[str, Any]:
    """The header as a JSON object, not nested deeply; when adding, strict JSON (no NaN/Infinity, no repeated keys)."""
    try:
        # At checkout a repeated key keeps the last value (json's own rule), as it did when the header was added.
        if adding:
            header = json.loads(header_bytes, object_pairs_hook=unique_keys, parse_constant=_refuse_constant)
        else:
            header = json.loads(header_bytes)
    except RecursionError:
        raise CheckpointError("safetensors header is nested too deeply to be a safetensors header") from None
    except ValueError as error:  # includes UnicodeDecodeError: names and values must be UTF-8
        raise CheckpointError(f"safetensors header is not valid JSON: {error}") from None
    if not isinstance(header, dict):
        raise CheckpointError("safetensors header is not a JSON object")
    if len(header) > MAX_TENSORS + 1:
        raise CheckpointError(
            f"safetensors header declares {len(header)} entries, more than the limit of {MAX_TENSORS} tensors"
        )
    return header


def _check_metadata(value: Any) -> None:
    """`__metadata__` is a map of strings to strings (the safetensors specification)."""
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise CheckpointError(f"safetensors __metadata__ must map strings to strings, not {shown(value)}")


def _offsets(name: str, value: Any) -> tuple[int, int]:
    if (
        type(value) is not list
        or len(value) != 2
        or not all(type(n) is int for n in value)
        or not 0 <= value[0] <= value[1]
    ):
        raise CheckpointError(
            f"tensor {shown(name)} has invalid data_offsets {shown(value)}: two integers 0 <= begin <= end"
        )
    return value[0], value[1]


def _entry(name: str, info: Any, adding: bool) -> tuple[str, str, tuple[int, ...], int, int]:
    try:
        if adding:
            name.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointError(f"tensor name {shown(name)} is not valid Unicode (it holds a lone surrogate)") from None
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise CheckpointError(
            f"tensor {shown(name)} has a malformed header entry: it needs dtype, shape and data_offsets"
        )
    dtype = info["dtype"]
    if not isinstance(dtype, str) or dtype not in dtypes.ITEMSIZE:
        raise CheckpointError(
            f"tensor {shown(name)} has unsupported dtype {shown(dtype)}; known: {', '.join(sorted(dtypes.ITEMSIZE))}"
        )
    shape, nbytes = checked_shape(info["shape"], dtype, f"tensor {shown(name)}")
    begin, end = _offsets(name, info["data_offsets"])
    if end - begin != nbytes:
        raise CheckpointError(
            f"tensor {shown(name)}: data_offsets [{begin}, {end}] do not fit {dtype}{list(shape)} ({nbytes} bytes)"
        )
    return name, dtype, shape, begin, end


def parse_header(
    header_bytes: bytes, *, adding: bool = True, start: int = 0
) -> list[tuple[str, str, tuple[int, ...], int, int]]:
    """(name, dtype, shape, begin, end) for each tensor of the JSON header header_bytes[start:], sorted by offset,
    validated. `start` spares the caller a copy of a stored header without its length (8 MB at 10^5 tensors).

    `adding=False` (checkout, merge: a header git-theta stored earlier) keeps every check that guards memory
    and offsets but not the stricter rules `git add` learned later (repeated keys, `__metadata__` values, lone
    surrogates in names), so a header an older git-theta committed still checks out.
    """
    matched = _matched_header(header_bytes, start)
    # What _parse_json_header gives such a header, in either mode, for a fraction of its time and memory.
    return matched if matched is not None else _parse_json_header(header_bytes[start:], adding)


def _parse_json_header(header_bytes: bytes, adding: bool) -> list[tuple[str, str, tuple[int, ...], int, int]]:
    """parse_header of any header, decoded as JSON; its errors name what is wrong."""
    header = _load_header(header_bytes, adding)
    if adding and "__metadata__" in header:
        _check_metadata(header["__metadata__"])
    header.pop("__metadata__", None)
    # Taken out of the decoded header one at a time, so each entry's JSON objects are freed as its tuple is made
    # (a 10^5-tensor header decodes to ~50 MB of them); dtype names and shapes are shared, as most repeat.
    entries = []
    shapes: dict[tuple[int, ...], tuple[int, ...]] = {}
    while header:
        name, dtype, shape, begin, end = _entry(*header.popitem(), adding)
        entries.append((name, sys.intern(dtype), shapes.setdefault(shape, shape), begin, end))
    entries.sort(key=lambda e: (e[3], e[4]))
    position = 0
    for name, _, _, begin, end in entries:
        if begin != position:
            raise CheckpointError(
                f"tensor {shown(name)} starts at byte {begin}, expected {position} (offsets must be contiguous)"
            )
        position = end
    return entries


def checkout_order(stored_header: bytes, params: Mapping[str, ParamEntry]) -> list[str]:
    """The tensor names of a stored header (its u64 length, then its JSON) in file order, after checking that
    each entry's dtype and shape are its parameter group's. parse_header matches a header in the library's
    spelling entry by entry, without decoding it (~600 bytes of Python objects an entry, 600 MB at 10^6
    tensors)."""
    entries = parse_header(stored_header, adding=False, start=8)
    for name, dtype, shape, _, _ in entries:
        entry = params.get(name)
        if entry is None or entry.dtype != dtype or entry.shape != shape:
            raise CheckpointError(f"metadata does not match the stored safetensors header for tensor {name!r}")
    return [e[0] for e in entries]


# A header as the safetensors library spells it: `__metadata__` (a map of strings) first if at all, then entries
# with their keys in this order, numbers as JSON writes them, names as raw UTF-8 without escapes.
_NUMBER = rb"(?:0|[1-9][0-9]{0,18})"
_HEADER_ENTRY = re.compile(
    rb'"([^"\\\x00-\x1f]*)":\{"dtype":"([A-Z0-9_]{1,16})","shape":\[((?:'
    + _NUMBER
    + rb"(?:,"
    + _NUMBER
    + rb'){0,63})?)\],"data_offsets":\[('
    + _NUMBER
    + rb"),("
    + _NUMBER
    + rb")\]\}"
)
_JSON_STRING = rb'"(?:[^"\\\x00-\x1f]|\\.)*"'
_METADATA_KEY = b'"__metadata__":'
_METADATA = re.compile(
    re.escape(_METADATA_KEY)
    + rb"\{(?:"
    + _JSON_STRING
    + b":"
    + _JSON_STRING
    + rb"(?:,"
    + _JSON_STRING
    + b":"
    + _JSON_STRING
    + rb")*)?\}"
)


def _matched_header(header_bytes: bytes, start: int = 0) -> list[tuple[str, str, tuple[int, ...], int, int]] | None:
    """parse_header's result for a header in the library's spelling, matched entry by entry (never decoded into
    JSON objects: ~600 bytes an entry, 600 MB at 10^6 tensors, and a Python hook per object when adding); None
    for any other spelling and for anything a check refuses, so that the JSON path gives the error. The header is
    header_bytes[start:].

    What it accepts passes the strict checks of `git add` too: a regular name decoded from UTF-8 holds no lone
    surrogate, numbers as JSON writes them are no NaN, the seen set refuses a repeated name, and `__metadata__`
    is matched as a map of strings and decoded with the repeated-key check.
    """
    end = _last_non_space(header_bytes)  # the closing brace; safetensors pads with spaces
    if header_bytes[start : start + 1] != b"{" or end <= start or header_bytes[end : end + 1] != b"}":
        return None
    position = start + 1
    metadata = _METADATA.match(header_bytes, position, end)
    if metadata is not None:
        try:
            json.loads(metadata.group(0)[len(_METADATA_KEY) :], object_pairs_hook=unique_keys)
        except ValueError:
            return None
        position = metadata.end()
        if position < end:
            if header_bytes[position : position + 1] != b"," or position + 1 == end:
                return None  # not a comma, or a trailing one
            position += 1
    if _match_entries is not None:
        return _match_entries(header_bytes, position, end, _DTYPE_SIZES, MAX_TENSORS, MAX_TENSOR_BYTES)
    return _matched_entries(header_bytes, position, end)


def _last_non_space(data: bytes) -> int:
    """len(data.rstrip(b" ")) - 1, without copying data (100 MB at 10^6 tensors) unless its tail is all spaces."""
    cut = max(0, len(data) - 64)
    tail = data[cut:].rstrip(b" ")
    return cut + len(tail) - 1 if tail or cut == 0 else len(data.rstrip(b" ")) - 1


# What the C matcher needs of each dtype, keyed by dtypes.ITEMSIZE's own key objects (results share them).
_DTYPE_SIZES = {name: (size, dtypes.BITS[name]) for name, size in dtypes.ITEMSIZE.items()}


def _matched_entries(
    header_bytes: bytes, position: int, end: int
) -> list[tuple[str, str, tuple[int, ...], int, int]] | None:
    """_matched_header's entries, from `position` to the closing brace at `end`, in file order; or None.

    git_theta/_stheader.c matches the same bytes in the same way and gives the same result (None included)."""
    entries: list[tuple[str, str, tuple[int, ...], int, int]] = []
    seen: set[str] = set()
    shapes: dict[tuple[int, ...], tuple[int, ...]] = {}
    while position < end:
        match = _HEADER_ENTRY.match(header_bytes, position, end)
        if match is None or len(entries) >= MAX_TENSORS:
            return None
        name_bytes, dtype_bytes, shape_bytes, begin_bytes, stop_bytes = match.groups()
        try:
            name = name_bytes.decode("utf-8")
        except UnicodeDecodeError:
            return None
        dtype = dtype_bytes.decode("ascii")
        shape = tuple(map(int, shape_bytes.split(b","))) if shape_bytes else ()
        if name in seen or name == "__metadata__" or dtype not in dtypes.ITEMSIZE:
            return None
        if any(n > MAX_TENSOR_BYTES for n in shape) or math.prod(shape) * dtypes.ITEMSIZE[dtype] > MAX_TENSOR_BYTES:
            return None
        try:
            nbytes = dtypes.nbytes(dtype, shape)
        except ThetaError:
            return None
        begin, stop = int(begin_bytes), int(stop_bytes)
        if stop - begin != nbytes:
            return None
        seen.add(name)
        entries.append((name, sys.intern(dtype), shapes.setdefault(shape, shape), begin, stop))
        position = match.end()
        if position < end:
            if header_bytes[position : position + 1] != b"," or position + 1 == end:
                return None  # not a comma, or a trailing one
            position += 1
    if position != end:
        return None
    # The JSON path's order: it takes entries last first, then sorts stably (tensors of 0 bytes share offsets).
    entries.reverse()
    entries.sort(key=lambda e: (e[3], e[4]))
    position = 0
    for _, _, _, begin, stop in entries:
        if begin != position:
            return None
        position = stop
    return entries


class SafetensorsFormat(CheckpointFormat):
    name = "safetensors"
    extensions = (".safetensors",)

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        if len(head) < 10:
            return False
        (size,) = _U64.unpack_from(head)
        return 2 <= size <= MAX_HEADER_BYTES and head[8:9] == b"{"

    def write_new(
        self, tensors: Mapping[str, Tensor], out: BinaryIO, metadata: Mapping[str, str] | None = None
    ) -> None:
        """The safetensors layout: u64 header length, JSON header (space-padded to 8 bytes), data in name order.

        `metadata` becomes the header's `__metadata__` (first, as the safetensors library writes it).
        """
        header: dict[str, Any] = {}
        if metadata:
            _check_metadata(dict(metadata))
            header["__metadata__"] = dict(metadata)
        offset = 0
        for name in sorted(tensors):
            tensor = tensors[name]
            header[name] = {
                "dtype": tensor.dtype,
                "shape": list(tensor.shape),
                "data_offsets": [offset, offset + tensor.nbytes],
            }
            offset += tensor.nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)
        out.write(_U64.pack(len(encoded)) + encoded)
        for name in sorted(tensors):
            out.write(tensors[name].data)

    def read(self, stream: BinaryIO, path: str, sink: ParamSink) -> dict[str, Any]:
        size_bytes = stream.read(8)
        if len(size_bytes) != 8:
            raise CheckpointError("file is too short to be safetensors")
        (size,) = _U64.unpack(size_bytes)
        if not 2 <= size <= MAX_HEADER_BYTES:
            raise CheckpointError(
                f"safetensors header length {size} is not between 2 and the limit of {MAX_HEADER_BYTES} bytes"
            )
        header_bytes = read_exact(stream, size)
        entries = parse_header(header_bytes)
        for index, (name, dtype, shape, begin, end) in enumerate(entries):
            try:
                data = read_into(stream, end - begin)
            except CheckpointError as error:
                raise CheckpointError(
                    f"tensor {shown(name)} (data_offsets [{begin}, {end}]): {error} (truncated?)"
                ) from None
            if index == len(entries) - 1 and stream.read(1):
                raise CheckpointError(f"file has bytes after the last tensor, which ends at data offset {end}")
            sink.add(name, Tensor.of_size(dtype, shape, data, end - begin))  # parse_header checked that size
        if not entries and stream.read(1):
            raise CheckpointError("file has bytes after its header, which declares no tensors")
        # Stored last: a file that turns out truncated leaves no header object behind.
        return {"header": sink.put_blob(size_bytes + header_bytes)}

    def write(
        self, file: Mapping[str, Any], params: Mapping[str, ParamEntry], source: ParamSource, out: BinaryIO
    ) -> None:
        header = source.get_blob(file["header"])
        names = checkout_order(header, params)
        out.write(header)
        del header  # not held while the tensors are written
        for data in tensor_bytes(source, names):
            out.write(data)

    def file_for_params(
        self,
        file: Mapping[str, Any],
        before: Mapping[str, ParamEntry],
        after: Mapping[str, ParamEntry],
        source: ParamSource,
        sink: ParamSink,
    ) -> dict[str, Any]:
        """Keep the header as is when the layout is unchanged, else write a new one.

        A new header keeps `__metadata__`, keeps the old file order for the
        groups that stay and appends new groups by name, with contiguous
        offsets and space padding to a multiple of 8 bytes (as safetensors does).
        """
        if _layout(before) == _layout(after):
            return dict(file)
        old_bytes = source.get_blob(file["header"])[8:]
        old_order = [entry[0] for entry in parse_header(old_bytes, adding=False)]
        old = json.loads(old_bytes)
        names = [name for name in old_order if name in after] + sorted(set(after) - set(old_order))
        header: dict[str, Any] = {"__metadata__": old["__metadata__"]} if "__metadata__" in old else {}
        position = 0
        for name in names:
            entry = after[name]
            end = position + dtypes.nbytes(entry.dtype, entry.shape)
            header[name] = {"dtype": entry.dtype, "shape": list(entry.shape), "data_offsets": [position, end]}
            position = end
        encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
        encoded += b" " * (-len(encoded) % 8)
        return {**file, "header": sink.put_blob(_U64.pack(len(encoded)) + encoded)}


def _layout(params: Mapping[str, ParamEntry]) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {name: (entry.dtype, entry.shape) for name, entry in params.items()}


def file_metadata(path: Path) -> dict[str, str] | None:
    """The `__metadata__` of the safetensors file at `path`, or None (no such file, none there, not safetensors)."""
    try:
        with path.open("rb") as file:
            size_bytes = file.read(8)
            if len(size_bytes) != 8:
                return None
            (size,) = _U64.unpack(size_bytes)
            if not 2 <= size <= MAX_HEADER_BYTES:
                return None
            header = _load_header(read_exact(file, size), adding=False)
    except (OSError, CheckpointError):
        return None
    value = header.get("__metadata__")
    return dict(value) if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()) else None
