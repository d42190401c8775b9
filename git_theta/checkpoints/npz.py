"""NumPy .npz archives (np.savez and np.savez_compressed), rebuilt byte for byte.

An .npz is a zip of `<name>.npy` members. Every byte that is not array data
(zip local headers, .npy headers, central directory, members kept whole) goes
into one "skeleton" blob; the layout says how skeleton bytes and arrays
interleave. Arrays become parameter groups named after their member (minus
`.npy`). A deflated member's array is a parameter group only if deflating it
again at clean time gave back the exact stored bytes; otherwise, and for
arrays of dtypes git-theta has no name for (object, strings, complex128,
big-endian), the member stays in the skeleton as it is.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, BinaryIO

import blake3

from git_theta import dtypes
from git_theta.checkpoints import zip_layout
from git_theta.checkpoints.base import (
    CheckpointFormat,
    ParamSink,
    ParamSource,
    checked_shape,
    read_exact,
    read_into,
    spool,
)
from git_theta.checkpoints.zip_layout import LOCAL_MAGIC, SkeletonBuilder, check_members, data_start
from git_theta.errors import CheckpointError
from git_theta.metadata import ParamEntry
from git_theta.tensor import Tensor

# numpy is imported where an archive is actually read or written: `git add` sniffs every
# format for each file, and a safetensors add should not pay the import (~0.1 s).
if TYPE_CHECKING:
    pass

EMPTY_ZIP_MAGIC = b"PK\x05\x06"
MAX_NPY_HEADER = 1 << 20
FIXED_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass
class _Array:
    """A member that holds a plain array: its .npy header length and the tensor's layout."""

    name: str
    header_length: int
    dtype: str
    shape: tuple[int, ...]
    fortran: bool

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * dtypes.itemsize(self.dtype)


def _parse_npy_header(head: bytes, name: str) -> _Array | None:
    """The array a member's leading bytes describe, or None if git-theta keeps it raw."""
    import numpy as np

    stream = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream, max_header_size=MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream, max_header_size=MAX_NPY_HEADER)
        else:
            return None
        ours = dtypes.from_numpy(dtype)
        # numpy takes True for a dimension and allows negative ones: such a member stays whole in the skeleton.
        checked, _ = checked_shape(shape, ours, f"array {name!r}")
    except Exception:  # numpy's header parser (literal_eval) raises many kinds; any header it cannot read stays whole
        return None
    return _Array(name, stream.tell(), ours, checked, bool(fortran))


def _to_tensor(array: _Array, data: bytes | bytearray | memoryview) -> Tensor:
    if not array.fortran:
        return Tensor(array.dtype, array.shape, data)
    import numpy as np

    # Fortran-order bytes are the C-order bytes of the transpose.
    view = np.frombuffer(data, dtype=dtypes.numpy_dtype(array.dtype)).reshape(array.shape[::-1]).T
    return Tensor.from_numpy(view, array.dtype)


def _file_bytes(tensor: Tensor, fortran: bool) -> memoryview | bytes:
    if not fortran:
        return memoryview(tensor.data)
    import numpy as np

    return np.ascontiguousarray(tensor.numpy().T).tobytes()


def _deflate(header: bytes | memoryview, data: bytes | memoryview) -> bytes:
    """Raw deflate as zipfile (and so np.savez_compressed) writes it at the default level."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    return compressor.compress(header) + compressor.compress(data) + compressor.flush()


def _digest(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


class _Reader(SkeletonBuilder):
    """Walks a spooled archive, splitting it into skeleton bytes, layout and tensors."""

    def __init__(self, file: IO[bytes], sink: ParamSink) -> None:
        super().__init__(file)
        self.sink = sink
        self.kept: list[str] = []
        self.names: set[str] = set()

    def member(self, info: zipfile.ZipInfo, size: int) -> None:
        start = info.header_offset
        if start < self.position:
            raise CheckpointError(f"zip member {info.filename!r} overlaps the member before it")
        begin = data_start(self.file, info)
        if begin + info.compress_size > size:
            raise CheckpointError(f"zip member {info.filename!r} runs past the end of the file (truncated?)")
        name = info.filename[:-4] if info.filename.endswith(".npy") else None
        done = False
        if name is not None and name not in self.names and not info.flag_bits & 0x1:
            if info.compress_type == zipfile.ZIP_STORED:
                done = self.stored(info, name, begin)
            elif info.compress_type == zipfile.ZIP_DEFLATED:
                done = self.deflated(info, name, begin)
            if done:
                self.names.add(name)
        if not done:
            self.kept.append(info.filename)
            self.check_crc(info, begin)
        self.raw_until(begin + info.compress_size)

    def stored(self, info: zipfile.ZipInfo, name: str, data_start: int) -> bool:
        self.file.seek(data_start)
        head = self.file.read(min(info.compress_size, MAX_NPY_HEADER))
        array = _parse_npy_header(head, name)
        if array is None or array.header_length + array.nbytes != info.compress_size:
            return False
        self.raw_until(data_start + array.header_length)
        data = read_into(self.file, array.nbytes)
        if zlib.crc32(data, zlib.crc32(head[: array.header_length])) != info.CRC:
            raise CheckpointError(f"member {info.filename!r}: CRC-32 mismatch, the file is corrupt")
        self.sink.add(name, _to_tensor(array, data))
        self.layout.append({"array": name, "bytes": array.nbytes, "fortran": array.fortran})
        self.position = data_start + info.compress_size
        return True

    def deflated(self, info: zipfile.ZipInfo, name: str, data_start: int) -> bool:
        self.file.seek(data_start)
        compressed = read_exact(self.file, info.compress_size)
        content = self.inflate(info, compressed)
        array = _parse_npy_header(content[:MAX_NPY_HEADER], name)
        if array is None or array.header_length + array.nbytes != len(content):
            return False
        header, data = content[: array.header_length], memoryview(content)[array.header_length :]
        if _deflate(header, data) != compressed:
            return False  # another zlib or level wrote it: keep the exact bytes instead
        self.raw_until(data_start)
        self.skeleton += header
        self.sink.add(name, _to_tensor(array, bytes(data)))
        self.layout.append(
            {
                "deflated": name,
                "header": len(header),
                "bytes": array.nbytes,
                "fortran": array.fortran,
                "size": len(compressed),
                "blake3": _digest(compressed),
            }
        )
        self.position = data_start + info.compress_size
        return True

    @staticmethod
    def inflate(info: zipfile.ZipInfo, compressed: bytes) -> bytes:
        try:
            content = zlib.decompressobj(-15).decompress(compressed, info.file_size + 1)
        except zlib.error as error:
            raise CheckpointError(f"member {info.filename!r}: corrupt deflate data: {error}") from None
        if len(content) != info.file_size or zlib.crc32(content) != info.CRC:
            raise CheckpointError(
                f"member {info.filename!r}: content does not match its size or CRC-32, the file is corrupt"
            )
        return content

    def check_crc(self, info: zipfile.ZipInfo, data_start: int) -> None:
        """A member kept whole is still checked, so a corrupt file fails at `git add`."""
        if info.flag_bits & 0x1:
            return  # encrypted: nothing to check without the password
        self.file.seek(data_start)
        compressed = read_exact(self.file, info.compress_size)
        if info.compress_type == zipfile.ZIP_STORED:
            if zlib.crc32(compressed) != info.CRC:
                raise CheckpointError(f"member {info.filename!r}: CRC-32 mismatch, the file is corrupt")
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            self.inflate(info, compressed)


def _member_name(segment: dict[str, Any]) -> str:
    """The array a payload segment holds: stored whole ("array") or deflated."""
    return segment.get("array") or segment["deflated"]  # type: ignore[no-any-return]


def _array_names(layout: list[dict[str, Any]]) -> list[str]:
    return [_member_name(segment) for segment in layout if "raw" not in segment]


class NpzFormat(CheckpointFormat):
    name = "npz"
    extensions = (".npz",)

    def write_new(self, tensors: Mapping[str, Tensor], out: BinaryIO) -> None:
        """numpy.savez: .npy members hold numpy's own dtypes, so bf16/fp8 would come back as something else."""
        odd = [name for name, t in tensors.items() if t.dtype in ("BF16", "F8_E4M3", "F8_E5M2")]
        if odd:
            raise CheckpointError(
                f".npz cannot hold {tensors[odd[0]].dtype} ({odd[0]!r}) faithfully; save as .safetensors or .pt"
            )
        import numpy as np

        arrays: dict[str, Any] = {name: t.numpy() for name, t in tensors.items()}
        np.savez(out, **arrays)

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        if head.startswith(EMPTY_ZIP_MAGIC):
            return path.lower().endswith(".npz")
        if not head.startswith(LOCAL_MAGIC) or len(head) < 30:
            return False
        name_length = int.from_bytes(head[26:28], "little")
        return head[30 : 30 + name_length].endswith(b".npy")

    def read(self, stream: BinaryIO, path: str, sink: ParamSink) -> dict[str, Any]:
        with spool(stream) as file:
            size = file.seek(0, io.SEEK_END)
            try:
                infos = sorted(zipfile.ZipFile(file).infolist(), key=lambda i: i.header_offset)
            except (
                zipfile.BadZipFile,
                OSError,
                ValueError,
                EOFError,
                OverflowError,
                NotImplementedError,
                struct.error,
            ) as error:
                raise CheckpointError(f"not a valid zip archive: {error}") from None
            check_members(infos, size)
            reader = _Reader(file, sink)
            for info in infos:
                reader.member(info, size)
            reader.raw_until(size)
        skeleton = sink.put_blob(bytes(reader.skeleton))
        return {"kept": reader.kept, "layout": reader.layout, "skeleton": skeleton}

    def write(
        self, file: Mapping[str, Any], params: Mapping[str, ParamEntry], source: ParamSource, out: BinaryIO
    ) -> None:
        reader = zip_layout.SkeletonReader(source.get_blob(file["skeleton"]), "archive")
        arrays = source.tensors(_array_names(file["layout"]))
        for segment, tensor in reader.payloads(
            file["layout"], arrays, out, lambda segment: f"array {_member_name(segment)!r}"
        ):
            data = _file_bytes(tensor, segment.get("fortran", False))
            if "array" in segment:
                out.write(data)
                continue
            compressed = _deflate(reader.take(segment["header"]), data)
            if len(compressed) != segment["size"] or _digest(compressed) != segment["blake3"]:
                raise CheckpointError(
                    f"array {_member_name(segment)!r}: this zlib deflates it differently than the one that added it; "
                    "the file cannot be rebuilt byte for byte here"
                )
            out.write(compressed)

    def file_for_params(
        self,
        file: Mapping[str, Any],
        before: Mapping[str, ParamEntry],
        after: Mapping[str, ParamEntry],
        source: ParamSource,
        sink: ParamSink,
    ) -> dict[str, Any]:
        """A fresh archive (laid out as np.savez or np.savez_compressed writes it) holding `after`.

        Zip headers hold CRC-32s and sizes of the arrays, so even a change of
        values in place needs a new skeleton. Members kept whole (object or
        string arrays, ...) cannot be carried into a rebuilt archive.
        """
        if before.keys() == after.keys() and all(before[name].hash == after[name].hash for name in after):
            return dict(file)  # same arrays: the archive, timestamps included, stays as it was
        if file.get("kept"):
            raise CheckpointError(
                f"the archive has members git-theta keeps whole ({', '.join(file['kept'])}); it cannot be rebuilt "
                "with other arrays"
            )
        import numpy as np

        old_order = _array_names(file["layout"])
        kept = set(old_order)  # a set: `in` on the list made this quadratic in the array count
        order = [n for n in old_order if n in after] + sorted(n for n in after if n not in kept)
        compressed = any("deflated" in segment for segment in file["layout"])
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED) as archive:
            for name, tensor in zip(order, source.tensors(order)):
                # A fixed timestamp (np.savez would stamp "now"): the same merge gives the same bytes.
                info = zipfile.ZipInfo(name + ".npy", date_time=FIXED_DATE)
                info.compress_type = archive.compression
                with archive.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, tensor.numpy(), allow_pickle=False)
        buffer.seek(0)
        checking = _BlobOnlySink(sink, after)
        section = self.read(buffer, "", checking)
        missing = sorted(set(after) - checking.seen)
        if missing:
            raise CheckpointError(
                f"parameter {missing[0]!r} ({after[missing[0]].dtype}) cannot be stored as a plain .npy array"
            )
        return section


class _BlobOnlySink:
    """Forwards blobs; checks that the re-read arrays are exactly the groups the caller already holds."""

    def __init__(self, sink: ParamSink, expected: Mapping[str, ParamEntry]) -> None:
        self.sink = sink
        self.expected = expected
        self.seen: set[str] = set()

    def add(self, name: str, tensor: Tensor) -> None:
        entry = self.expected.get(name)
        if entry is None or entry.hash != tensor.hash():
            raise CheckpointError(f"rebuilt archive does not hold parameter {name!r} as given")
        self.seen.add(name)

    def put_blob(self, data: bytes) -> dict[str, Any]:
        return self.sink.put_blob(data)
