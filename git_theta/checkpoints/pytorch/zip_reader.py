"""The torch-free fast path for zip-layout `torch.save` files: read without torch, rebuilt byte for byte.

`<prefix>/data.pkl` is read by the restricted unpickler (unpickler.py); anything
it does not know, or anything unexpected in the archive (compressed or
encrypted members, a big-endian byteorder, storages of odd sizes), makes
`read` return None and the caller falls back to torch.load.

Each storage `<prefix>/data/<key>` becomes one parameter group, named and
typed exactly as the torch path names it (see format.py), so the metadata
is the same either way. Every other byte goes into the skeleton blob
(checkpoints/zip_layout.py); storage segments also record where the storage's CRC-32
sits in the skeleton, so a merge that changes values in place can patch it.
"""

from __future__ import annotations

import bisect
import itertools
import math
import pickle
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

import blake3

from git_theta.checkpoints import zip_layout
from git_theta.checkpoints.base import LimitError, ParamSink, ParamSource, read_exact, read_into
from git_theta.checkpoints.pytorch.tree import TensorNode, encode_tree, unique_name
from git_theta.checkpoints.pytorch.unpickler import FAKE_TORCH, ITEMSIZE, FakeTensor, Storage, Unpickler, Unsupported
from git_theta.checkpoints.zip_layout import SkeletonBuilder, check_members, data_start
from git_theta.errors import CheckpointError
from git_theta.tensor import Tensor

# The pickle is read whole into memory (and its objects are several times its size): a state dict's pickle
# takes ~100 bytes per tensor, so this admits millions of tensors (docs/formats.md, "Checkpoint files").
MAX_PICKLE_BYTES = 256 << 20


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of a C-order tensor of this shape."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


@dataclass
class _Group:
    """One parameter group: a whole storage, named and typed like format._params does."""

    name: str
    dtype: str  # git-theta's dtype name
    shape: tuple[int, ...]
    storage: Storage


def _groups(nodes: list[TensorNode], dtype_names: Mapping[str, str]) -> dict[str, _Group]:
    """Storage key -> its group; non-owning tensors get their view recorded in the tree."""
    by_key: dict[str, list[TensorNode]] = {}
    for node in nodes:
        by_key.setdefault(node.tensor.storage.key, []).append(node)
    taken = {node.name for node in nodes}
    groups = {}
    for key, members in by_key.items():
        storage = members[0].tensor.storage

        def owns(t: FakeTensor, storage: Storage = storage) -> bool:
            whole = math.prod(t.shape) * ITEMSIZE.get(t.dtype, 0) == storage.nbytes
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
        name_length, extra_length, comment_length = (
            int.from_bytes(directory[at + i : at + i + 2], "little") for i in (28, 30, 32)
        )
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
    larger than MAX_PICKLE_BYTES: final for torch.load too, so format.py checks it before that as well."""
    check_members(infos, size)
    for info in infos:
        if info.filename.endswith(".pkl") and info.file_size > MAX_PICKLE_BYTES:
            raise LimitError(
                f"{info.filename} declares {info.file_size} bytes, more than the limit of {MAX_PICKLE_BYTES} for a "
                "pickle"
            )


def _plan(
    file: IO[bytes], size: int, dtype_names: Mapping[str, str]
) -> tuple[Any, dict[str, zipfile.ZipInfo], dict[str, _Group], dict[str, list[int]]]:
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
    unpickler = Unpickler(archive.read(infos[0].filename))
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


def read(
    file: IO[bytes], size: int, whole_digest: str, sink: ParamSink, dtype_names: Mapping[str, str]
) -> tuple[Any, dict[str, Any]] | None:
    """(structure tree, zip section) for a spooled torch zip, or None if torch.load must read it.

    Nothing reaches `sink` before the archive and its pickle have been
    checked, so returning None leaves no trace. `whole_digest` is the BLAKE3
    of the file: the skeleton and storages must put it back together exactly.
    """
    try:
        tree, members, groups, crcs = _plan(file, size, dtype_names)
    except LimitError:
        raise  # torch.load would meet the same limit, after loading torch and the whole pickle
    except (
        Unsupported,
        CheckpointError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
        RecursionError,
        NotImplementedError,
        OSError,
    ):
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
    for _, tensor in reader.payloads(
        file["layout"], storages, out, lambda segment: f"parameter {segment['storage']!r}"
    ):
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
