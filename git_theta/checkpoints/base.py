"""The interface a checkpoint format plugin implements.

A format turns a file into parameter groups (tensors) plus a small JSON
"file" section holding whatever else is needed to rebuild the file, and back.

Reading streams: `read` gets the file as a forward-only binary stream and
hands each tensor to `sink.add` as soon as it is read, so memory stays near
the size of the largest tensor. Large non-tensor parts (headers, pickles)
go to `sink.put_blob`, which returns a JSON reference to keep in the file
section. Writing pulls tensors in whatever order the file needs through
`source.tensors(names)`.

Register a format in your package's setup.py:

    entry_points={"git_theta.checkpoints": ["myformat = mypkg.module:MyFormat"]}
"""

from __future__ import annotations

import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any, BinaryIO, ClassVar, Protocol

from git_theta.errors import CheckpointError
from git_theta.metadata import ParamEntry
from git_theta.tensor import Tensor

# How many leading bytes `sniff` is shown.
SNIFF_BYTES = 4096


class ParamSink(Protocol):
    """Where `read` sends what it finds."""

    def add(self, name: str, tensor: Tensor) -> None:
        """Store one parameter group; the tensor's buffer may be reused after return."""

    def put_blob(self, data: bytes) -> dict[str, Any]:
        """Store non-tensor bytes; returns {"object": oid, "size": n} for the file section."""


class ParamSource(Protocol):
    """Where `write` gets tensors and blobs from."""

    def tensors(self, names: Sequence[str]) -> Iterator[Tensor]:
        """The named tensors, in the order asked (prefetched in the background)."""

    def get_blob(self, ref: Mapping[str, Any]) -> bytes:
        """The bytes stored by `put_blob` under `ref`."""


class CheckpointFormat(ABC):
    """One checkpoint file format. Subclasses set `name` and `extensions`."""

    name: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abstractmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        """True if a file starting with `head` (SNIFF_BYTES or fewer) is in this format."""

    @abstractmethod
    def read(self, stream: BinaryIO, path: str, sink: ParamSink) -> dict[str, Any]:
        """Send every tensor to `sink`; return the JSON-able file section.

        Raise git_theta.errors.CheckpointError (without the path; the caller
        adds it) when the file is not valid in this format.
        """

    @abstractmethod
    def write(self, file: Mapping[str, Any], params: Mapping[str, ParamEntry], source: ParamSource, out: BinaryIO) -> None:
        """Rebuild the file from its file section and parameter groups into `out`."""


    def file_for_params(
        self, file: Mapping[str, Any], before: Mapping[str, ParamEntry], after: Mapping[str, ParamEntry], source: ParamSource, sink: ParamSink
    ) -> dict[str, Any]:
        """The file section for a new set of parameter groups (a merge or an API save changed them).

        `file` describes a file holding `before`; return one that holds
        `after`. Values changing in place need nothing new; a format that can
        add, drop or reshape groups overrides this to rebuild its headers.
        """
        same_layout = before.keys() == after.keys() and all(
            (before[name].dtype, before[name].shape) == (after[name].dtype, after[name].shape) for name in before
        )
        if not same_layout:
            raise CheckpointError(f"the {self.name} format cannot add, remove or reshape parameter groups here")
        return dict(file)


def read_exact(stream: IO[bytes], size: int) -> bytes:
    """Exactly `size` bytes from a stream, or CheckpointError if it ends early."""
    chunks = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(min(remaining, 16 << 20))
        if not chunk:
            raise CheckpointError(f"file ends early: needed {size} more bytes, got {size - remaining}")
        chunks.append(chunk)
        remaining -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_into(stream: IO[bytes], size: int) -> bytearray:
    """Like read_exact, into one preallocated buffer (no joined copy)."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = 0
    while filled < size:
        chunk = stream.read(min(size - filled, 16 << 20))
        if not chunk:
            raise CheckpointError(f"file ends early: needed {size} bytes, got {filled}")
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    return buffer


def spool(stream: IO[bytes]) -> IO[bytes]:
    """Copy a forward-only stream to a seekable temp file, for formats that need random access."""
    tmp = tempfile.TemporaryFile(prefix="git-theta-")
    shutil.copyfileobj(stream, tmp, 16 << 20)
    tmp.seek(0)
    return tmp
