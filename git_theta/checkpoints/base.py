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

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any, BinaryIO, ClassVar, Protocol

from git_theta import dtypes
from git_theta.errors import CheckpointError, ThetaError
from git_theta.metadata import ParamEntry
from git_theta.tensor import Buffer, Tensor

# How many leading bytes `sniff` is shown.
SNIFF_BYTES = 4096
# Limits on what a checkpoint declares about one tensor (docs/formats.md, "Checkpoint files"): numpy and torch
# allow 64 dimensions, and a byte size must fit a signed 64-bit offset (every index and length the readers use).
MAX_RANK = 64
MAX_TENSOR_BYTES = (1 << 63) - 1
# read_into grows its buffer by at most this much beyond the bytes that actually arrived.
READ_CHUNK = 16 << 20


class LimitError(CheckpointError):
    """The file declares more than a documented limit allows: final, no fallback reader is tried."""


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


def tensor_bytes(source: ParamSource, names: Sequence[str]) -> Iterator[Buffer]:
    """The named tensors' bytes, in order and back to back, for a format that writes them so: the source's
    `tensor_data` when it has one (git-theta's own joins each batch of small tensors, so the writer writes once
    per batch), else each tensor's `data`."""
    joined = getattr(source, "tensor_data", None)
    if joined is not None:
        yield from joined(names)
        return
    for tensor in source.tensors(names):
        yield tensor.data


class CheckpointFormat(ABC):
    """One checkpoint file format. Subclasses set `name` and `extensions`."""

    name: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def claims(cls, path: str) -> bool:
        """True if the name says the file is in this format: such formats sniff it before all others. By default,
        a name ending in one of `extensions` (a format whose names are patterns, such as TensorFlow's data
        shards, overrides this)."""
        return path.lower().endswith(tuple(cls.extensions))

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
    def write(
        self, file: Mapping[str, Any], params: Mapping[str, ParamEntry], source: ParamSource, out: BinaryIO
    ) -> None:
        """Rebuild the file from its file section and parameter groups into `out`."""

    def write_new(self, tensors: Mapping[str, Tensor], out: BinaryIO) -> None:
        """Write a new file holding `tensors` into `out` (git_theta.save uses this).

        Raise CheckpointError (without the path) for tensors the format cannot hold faithfully. A format that
        only stores files it did not write may keep this default, which refuses.
        """
        raise CheckpointError(f"the {self.name} format cannot write a new file (it does not define write_new)")

    def file_for_params(
        self,
        file: Mapping[str, Any],
        before: Mapping[str, ParamEntry],
        after: Mapping[str, ParamEntry],
        source: ParamSource,
        sink: ParamSink,
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

    def merge_refusal(self, files: Sequence[Mapping[str, Any]], base: Mapping[str, Any] | None) -> str | None:
        """Why these versions' file sections (ours first) cannot be merged as this one file, or None.

        The merge otherwise keeps the first file section that differs from the base's. A format whose file
        section depends on other files (a TensorFlow .index on its data shards) refuses here when several sides
        changed it, so that the merge stops instead of keeping one side's.
        """
        return None


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
    """Like read_exact, into one buffer (no joined copy).

    The buffer grows with the bytes that arrive, never from the declared `size`:
    a file that declares a huge tensor and then ends costs what it held.
    """
    buffer = bytearray()
    while len(buffer) < size:
        chunk = stream.read(min(size - len(buffer), READ_CHUNK))
        if not chunk:
            raise CheckpointError(f"file ends early: needed {size} bytes, got {len(buffer)}")
        buffer += chunk  # realloc: large buffers grow in place (mremap), without a copy
    return buffer


def checked_shape(value: Any, dtype: str, what: str) -> tuple[tuple[int, ...], int]:
    """(shape, byte size) of a declared shape: a list of at most MAX_RANK non-negative ints (not bools, not
    floats) whose byte size is at most MAX_TENSOR_BYTES; else CheckpointError naming `what`."""
    if type(value) not in (list, tuple) or len(value) > MAX_RANK or not all(type(n) is int and n >= 0 for n in value):
        raise CheckpointError(
            f"{what} has an invalid shape {shown(value)}: it must be a list of at most {MAX_RANK} non-negative integers"
        )
    shape = tuple(value)
    if any(n > MAX_TENSOR_BYTES for n in shape) or math.prod(shape) * dtypes.itemsize(dtype) > MAX_TENSOR_BYTES:
        raise CheckpointError(f"{what}: shape {list(shape)} of {dtype} exceeds {MAX_TENSOR_BYTES} bytes")
    try:
        return shape, dtypes.nbytes(dtype, shape)
    except ThetaError as error:  # a packed type's values must fill whole bytes
        raise CheckpointError(f"{what}: shape {list(shape)}: {error}") from None


def shown(value: Any, limit: int = 60) -> str:
    """A declared value for an error message, cut short: hostile input can be megabytes long."""
    if isinstance(value, (list, tuple, dict)) and len(value) > 16:
        return f"(a {type(value).__name__} of {len(value)} items)"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def spool(stream: IO[bytes]) -> IO[bytes]:
    """Copy a forward-only stream to a seekable temp file, for formats that need random access."""
    import shutil
    import tempfile  # here, not at the top: every checkout imports this module, few formats spool (~3.5 ms)

    tmp = tempfile.TemporaryFile(prefix="git-theta-")
    shutil.copyfileobj(stream, tmp, 16 << 20)
    tmp.seek(0)
    return tmp
