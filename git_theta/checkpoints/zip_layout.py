"""Splitting a zip archive into one "skeleton" blob and payload runs, and putting it back together.

Shared by the .npz and PyTorch zip formats, which both keep every byte that
is not tensor data (local headers, small members, central directory) in the
skeleton, and a layout list saying how skeleton runs and payloads interleave:
`{"raw": n}` is the next n skeleton bytes; any other segment is a payload.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from git_theta.checkpoints.base import LimitError, read_exact
from git_theta.errors import CheckpointError
from git_theta.tensor import Tensor

LOCAL_MAGIC = b"PK\x03\x04"
# Limits on what a zip's directory declares (docs/formats.md, "Checkpoint files"), checked by `check_members`
# before any member is read. Deflate cannot expand data more than 1032:1 (zlib's documented maximum), so a member
# declaring more than that is lying; the count bounds the per-member work a small directory can ask for.
MAX_MEMBERS = 1_000_000
MAX_DEFLATE_RATIO = 1032
_LOCAL_HEADER = struct.Struct("<4s22xHH")


def data_start(file: IO[bytes], info: zipfile.ZipInfo) -> int:
    """Where a member's (compressed) data begins: after its local header, name and extra field."""
    file.seek(info.header_offset)
    magic, name_length, extra_length = _LOCAL_HEADER.unpack(read_exact(file, _LOCAL_HEADER.size))
    if magic != LOCAL_MAGIC:
        raise CheckpointError(f"zip member {info.filename!r} has no local header at byte {info.header_offset}")
    return info.header_offset + _LOCAL_HEADER.size + int(name_length) + int(extra_length)


def check_members(infos: list[zipfile.ZipInfo], size: int) -> None:
    """LimitError unless every member's declared place and sizes fit a file of `size` bytes."""
    if len(infos) > MAX_MEMBERS:
        raise LimitError(f"zip declares {len(infos)} members, more than the limit of {MAX_MEMBERS}")
    for info in infos:
        if info.header_offset < 0 or info.header_offset + _LOCAL_HEADER.size + info.compress_size > size:
            raise LimitError(
                f"zip member {info.filename!r} declares {info.compress_size} bytes at byte {info.header_offset}, "
                f"outside the {size}-byte file (truncated?)"
            )
        if (
            info.compress_type == zipfile.ZIP_DEFLATED
            and info.file_size > info.compress_size * MAX_DEFLATE_RATIO + 1024
        ):
            raise LimitError(
                f"zip member {info.filename!r} declares {info.file_size} bytes from {info.compress_size} deflated "
                f"bytes, more than deflate can hold ({MAX_DEFLATE_RATIO}:1)"
            )


class SkeletonBuilder:
    """Copies the bytes between payloads into the skeleton and records the layout."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.skeleton = bytearray()
        self.layout: list[dict[str, Any]] = []
        self.position = 0

    def raw_until(self, end: int) -> None:
        if end > self.position:
            self.file.seek(self.position)
            self.skeleton += read_exact(self.file, end - self.position)
            if self.layout and "raw" in self.layout[-1]:
                self.layout[-1]["raw"] += end - self.position
            else:
                self.layout.append({"raw": end - self.position})
            self.position = end

    def payload(self, segment: dict[str, Any], end: int) -> None:
        """A payload segment that the file holds up to byte `end`; its bytes stay out of the skeleton."""
        self.layout.append(segment)
        self.position = end


class SkeletonReader:
    """The way back: writes the skeleton runs of a layout and hands over each payload with its tensor."""

    def __init__(self, skeleton: bytes, what: str) -> None:
        self.skeleton = memoryview(skeleton)
        self.what = what  # "zip", "archive": how errors name the file
        self.position = 0

    def take(self, count: int) -> memoryview:
        """The next `count` skeleton bytes."""
        if self.position + count > len(self.skeleton):
            raise CheckpointError(
                f"{self.what} skeleton ends {self.position + count - len(self.skeleton)} bytes before its layout does"
            )
        run = self.skeleton[self.position : self.position + count]
        self.position += count
        return run

    def payloads(
        self,
        layout: list[dict[str, Any]],
        tensors: Iterable[Tensor],
        out: IO[bytes],
        label: Callable[[dict[str, Any]], str],
    ) -> Iterator[tuple[dict[str, Any], Tensor]]:
        """(segment, tensor) for each payload, in order, after writing the skeleton bytes before it to `out`."""
        values = iter(tensors)
        for segment in layout:
            if "raw" in segment:
                out.write(self.take(segment["raw"]))
                continue
            tensor = next(values)
            if tensor.nbytes != segment["bytes"]:
                raise CheckpointError(
                    f"{label(segment)} has {tensor.nbytes} bytes, the {self.what} layout expects {segment['bytes']}"
                )
            yield segment, tensor
        if self.position != len(self.skeleton):
            raise CheckpointError(
                f"{self.what} skeleton has {len(self.skeleton) - self.position} bytes the layout does not use"
            )
