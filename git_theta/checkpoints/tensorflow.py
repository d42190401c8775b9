"""TensorFlow checkpoints (tensor bundles): `<prefix>.index` plus `<prefix>.data-<k>-of-<n>`, read without TensorFlow.

One format, "tensorflow", for both kinds of file, told apart by name (docs/checkpoint-formats.md, "TensorFlow"):

- the `.index` (small: ~100 bytes a variable) is kept byte for byte as one blob, after checking it is a valid
  bundle index (git_theta/checkpoints/tensor_bundle.py);
- a data shard is split into one parameter group per variable of that shard, named by its checkpoint key, with
  dtype and shape from the sibling `.index` in the working tree; every other byte (string tensors such as the
  object graph, anything the index does not describe) is kept as raw `U8` groups named `@bytes/<file offset>`.
  The layout lists them in file order, so checkout writes the file back byte for byte from the metadata alone.

The index is only a guide when adding: missing, unreadable or not matching the shard (a key that collides with a
raw group's name, overlapping entries), the data file is stored as raw chunks; a tensor whose CRC-32C does not
match its entry, or that runs past the end of the file, is kept as raw bytes. Adding a data file never fails
because of its index. Importing TensorFlow costs ~6 s of every filter start here (docs/design.md), so it is
never imported.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO

from git_theta import crc32c, dtypes, git
from git_theta.checkpoints.base import (
    READ_CHUNK,
    CheckpointFormat,
    LimitError,
    ParamSink,
    ParamSource,
    shown,
)
from git_theta.checkpoints.tensor_bundle import (
    MAX_INDEX_BYTES,
    Bundle,
    Entry,
    parse_index,
)
from git_theta.errors import CheckpointError, ThetaError
from git_theta.metadata import ParamEntry
from git_theta.tensor import Tensor

# Bytes the index does not describe are stored in groups of at most this size, so memory stays bounded.
RAW_CHUNK_BYTES = 64 << 20
RAW_PREFIX = "@bytes/"
_DATA_NAME = re.compile(r"\.data-(\d{5,})-of-(\d{5,})$")
INDEX_SUFFIX = ".index"


def data_shard(path: str) -> tuple[str, int, int] | None:
    """(prefix, shard, shard count) of a data file's name `<prefix>.data-<k>-of-<n>`, or None."""
    match = _DATA_NAME.search(path)
    if match is None:
        return None
    return path[: match.start()], int(match.group(1)), int(match.group(2))


class TensorflowFormat(CheckpointFormat):
    name = "tensorflow"
    extensions = (INDEX_SUFFIX,)

    @classmethod
    def claims(cls, path: str) -> bool:
        # A data shard's first bytes are any tensor's: e.g. an int64 save counter of 2, then a float starting with
        # 0x7b, looks like a safetensors header. Its name says what it is, so it is sniffed first.
        return super().claims(path) or data_shard(path) is not None

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        # An index starts with the bundle header, under the empty key: an entry with no shared and no own key bytes.
        if path.endswith(INDEX_SUFFIX):
            return head[:2] == b"\x00\x00"
        return data_shard(path) is not None

    def read(self, stream: BinaryIO, path: str, sink: ParamSink) -> dict[str, Any]:
        if data_shard(path) is None:
            return _read_index(stream, sink)
        return _read_data(stream, path, sink)

    def write(
        self, file: Mapping[str, Any], params: Mapping[str, ParamEntry], source: ParamSource, out: BinaryIO
    ) -> None:
        if file.get("bundle") == "index":
            out.write(source.get_blob(file["index"]))
            return
        layout = file.get("layout")
        if file.get("bundle") != "data" or not isinstance(layout, list) or not all(isinstance(n, str) for n in layout):
            raise CheckpointError("the metadata's file section is not a TensorFlow bundle's")
        missing = [name for name in layout if name not in params]
        if missing or len(set(layout)) != len(layout) or set(layout) != set(params):
            raise CheckpointError(
                f"the layout does not list each parameter group exactly once ({shown(missing)} missing)"
            )
        for tensor in source.tensors(layout):  # noqa: FURB122 -- smudge's `out` offers write() only
            out.write(tensor.data)

    def file_for_params(
        self,
        file: Mapping[str, Any],
        before: Mapping[str, ParamEntry],
        after: Mapping[str, ParamEntry],
        source: ParamSource,
        sink: ParamSink,
    ) -> dict[str, Any]:
        """Refuse any change: the `.index` holds each tensor's CRC-32C, which TensorFlow checks when it restores,
        and this data file alone cannot rewrite the index (another file). git_theta/merge/bundle.py merges the
        bundle as a unit (data shards, then the index's CRC-32Cs) and uses `values_file_section` instead."""
        changed = sorted(
            name
            for name in before.keys() | after.keys()
            if name not in before or name not in after or before[name].hash != after[name].hash
        )
        if changed:
            raise CheckpointError(
                f"TensorFlow bundle: the .index holds a CRC-32C of each tensor, so changing {shown(changed[0], 120)}"
                f"{f' and {len(changed) - 1} more' if len(changed) > 1 else ''} in this file alone would leave the "
                "index stale; `git theta merge --redo` on it merges the whole bundle and rewrites the index's "
                "CRC-32Cs (or take one side for every file of the bundle)"
            )
        return dict(file)

    def merge_refusal(self, files: Sequence[Mapping[str, Any]], base: Mapping[str, Any] | None) -> str | None:
        """An .index changed on several sides (any tensor change changes its CRC-32Cs) is merged only with its data
        shards, by `git theta merge --redo`: keeping one side's would describe the other side's tensors wrongly."""
        if any(file.get("bundle") != "index" for file in files):
            return None
        changed = {_canonical(file) for file in files if base is None or file != base}
        if len(changed) < 2:
            return None
        return (
            "TensorFlow bundle: the .index changed on both sides (it holds each tensor's CRC-32C), so it is merged "
            "with its data shards as one checkpoint by `git theta merge --redo` on it"
        )


def _canonical(file: Mapping[str, Any]) -> str:
    return json.dumps(file, sort_keys=True)


def values_file_section(
    file: Mapping[str, Any], before: Mapping[str, ParamEntry], after: Mapping[str, ParamEntry]
) -> dict[str, Any]:
    """A data shard's file section when only values changed (the same groups, dtypes and shapes): the same layout.

    Only for a merge that rewrites the .index's CRC-32Cs too (git_theta/merge/bundle.py)."""
    if file.get("bundle") != "data":
        raise CheckpointError("not a TensorFlow data shard's file section")
    same = before.keys() == after.keys() and all(
        (before[name].dtype, before[name].shape) == (after[name].dtype, after[name].shape) for name in before
    )
    if not same:
        raise CheckpointError(
            "TensorFlow bundle: a merge of a data shard may change values only, not add, remove or reshape variables"
        )
    return dict(file)


def _read_index(stream: IO[bytes], sink: ParamSink) -> dict[str, Any]:
    data = bytes(_read_upto(stream, MAX_INDEX_BYTES + 1))  # one byte over the limit is enough to refuse
    if len(data) > MAX_INDEX_BYTES:
        raise LimitError(f"the index is more than the limit of {MAX_INDEX_BYTES} bytes")
    bundle = parse_index(data)
    return {
        "bundle": "index",
        "index": sink.put_blob(data),
        "shards": bundle.num_shards,
        "variables": len(bundle.entries),
    }


def _plan(path: str) -> list[Entry]:
    """The tensors of this shard that the sibling .index describes, in file order; [] if it describes none."""
    prefix, shard, shards = data_shard(path) or ("", 0, 0)
    bundle = _sibling_index(prefix + INDEX_SUFFIX)
    if bundle is None or bundle.num_shards != shards or not bundle.little_endian:
        return []
    names = [entry.key for entry in bundle.entries if entry.key is not None]
    if any(name.startswith(RAW_PREFIX) for name in names) or len(set(names)) != len(names):
        return []
    planned = sorted(
        (
            e
            for e in bundle.entries
            if e.shard == shard
            and not e.sliced
            and e.key is not None
            and e.dtype is not None
            and e.shape is not None
            and _fits(e)
        ),
        key=lambda e: (e.offset, e.size),
    )
    for earlier, later in itertools.pairwise(planned):
        if earlier.offset + earlier.size > later.offset:
            return []
    return planned


def _fits(entry: Entry) -> bool:
    assert entry.dtype is not None and entry.shape is not None
    count = 1
    for n in entry.shape:
        count *= n
    return count * dtypes.itemsize(entry.dtype) == entry.size


def _sibling_index(index_path: str) -> Bundle | None:
    """The parsed .index beside the data file in the working tree (git runs filters at its top), or None."""
    candidates = [Path(index_path)]
    if not candidates[0].is_absolute():
        try:
            candidates.append(git.toplevel(Path.cwd()) / index_path)
        except (ThetaError, OSError):
            pass
    for candidate in candidates:
        try:
            with open(candidate, "rb") as handle:
                data = handle.read(MAX_INDEX_BYTES + 1)
        except OSError:
            continue
        try:
            return parse_index(data)
        except ThetaError:
            return None
    return None


def _read_upto(stream: IO[bytes], size: int) -> bytearray:
    """Up to `size` bytes: fewer only where the stream ends. Grows with what arrives, not with `size`."""
    buffer = bytearray()
    while len(buffer) < size:
        chunk = stream.read(min(size - len(buffer), READ_CHUNK))
        if not chunk:
            break
        buffer += chunk
    return buffer


class _Layout:
    """Builds the file-order list of group names, storing raw runs as U8 chunks named by their offset."""

    def __init__(self, sink: ParamSink) -> None:
        self.sink = sink
        self.names: list[str] = []
        self.position = 0

    def tensor(self, entry: Entry, data: bytearray) -> None:
        assert entry.key is not None and entry.dtype is not None and entry.shape is not None
        self.sink.add(entry.key, Tensor(entry.dtype, entry.shape, data))
        self.names.append(entry.key)
        self.position += len(data)

    def raw(self, data: bytearray) -> None:
        if data:
            name = f"{RAW_PREFIX}{self.position}"
            self.sink.add(name, Tensor("U8", (len(data),), data))
            self.names.append(name)
            self.position += len(data)

    def raw_run(self, stream: IO[bytes], size: int | None) -> bool:
        """Copy `size` bytes (None: the rest) as raw chunks; False if the stream ended first."""
        remaining = size
        while remaining is None or remaining > 0:
            want = RAW_CHUNK_BYTES if remaining is None else min(remaining, RAW_CHUNK_BYTES)
            data = _read_upto(stream, want)
            self.raw(data)
            if len(data) < want:
                return False
            if remaining is not None:
                remaining -= len(data)
        return True


def _read_data(stream: IO[bytes], path: str, sink: ParamSink) -> dict[str, Any]:
    layout = _Layout(sink)
    for entry in _plan(path):
        if entry.offset > layout.position and not layout.raw_run(stream, entry.offset - layout.position):
            break
        data = _read_upto(stream, entry.size)
        if len(data) == entry.size and crc32c.crc32c(data) == crc32c.unmask(entry.masked_crc):
            layout.tensor(entry, data)
        else:
            layout.raw(data)  # not what the index says (truncated, or another save's data): kept, not typed
            if len(data) < entry.size:
                break
    layout.raw_run(stream, None)
    return {"bundle": "data", "layout": layout.names}
