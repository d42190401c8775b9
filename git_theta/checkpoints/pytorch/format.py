"""PyTorch checkpoints (`torch.save` files: .pt, .pth, .bin).

The pickled object (a state dict, or any nest of dicts, lists, tuples and
plain values around tensors) is recorded as a JSON structure tree in the file
section; tensors appear in it by name and their bytes become parameter
groups, one per storage.

Zip-layout files of plain data take the torch-free fast path (zip_reader.py):
a restricted unpickler reads the structure, the zip's other bytes are kept
as a skeleton, and checkout rebuilds the file byte for byte. Everything else
is loaded with torch.load(weights_only=True) and rebuilt with `torch.save`:
its bytes differ from the added file, its tensors are bit-identical, its keys
keep their order and its containers their types. Both paths give the same
tree and groups. See docs/checkpoint-formats.md.

torch is imported only when a file needs the torch.load path, so other
formats and plain zip state dicts never pay for it (install it with
`pip install git-theta[torch]`).
"""

from __future__ import annotations

import json
import re
import struct
import tempfile
import zipfile
from collections.abc import Mapping
from typing import IO, Any, BinaryIO

import blake3

from git_theta import dtypes
from git_theta.checkpoints.base import CheckpointFormat, ParamSink, ParamSource
from git_theta.checkpoints.pytorch import zip_reader
from git_theta.checkpoints.pytorch.tree import TensorNode, decode_tree, encode_tree, unique_name
from git_theta.errors import CheckpointError
from git_theta.metadata import ParamEntry
from git_theta.tensor import Tensor

ZIP_MAGIC = b"PK\x03\x04"
# Legacy (pre-1.6) torch.save files begin with a pickled magic number.
LEGACY_MAGIC = b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
# A structure tree larger than this goes to a blob instead of the metadata text.
INLINE_TREE_BYTES = 256 << 10
_ZIP_FIRST_NAME = re.compile(rb"^[^/]*/data\.pkl$")

# The one dtype table (git_theta.dtypes), by torch name and by ours.
_DTYPE_NAMES = dtypes.FROM_TORCH
_TORCH_NAMES = dtypes.TORCH_NAMES


def import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise CheckpointError("reading PyTorch checkpoints needs torch: pip install git-theta[torch]") from None
    return torch


def torch_dtype_name(dtype: Any) -> str:
    """'float32' for torch.float32: the name used in the structure tree."""
    return str(dtype).removeprefix("torch.")


def _weights_only_reason(error: Exception) -> str:
    found = re.search(r"WeightsUnpickler error: (.*?)(?: Please use|\n|$)", str(error))
    if found and found.group(1).strip():
        return found.group(1).strip()
    lines = str(error).strip().splitlines()
    # torch's generic refusal suggests weights_only=False, which git-theta never does: say what it means instead.
    if not lines or lines[0].startswith("Weights only load failed"):
        return "it is not a PyTorch checkpoint that loads without running code (or it is damaged)"
    return lines[0]


class PytorchFormat(CheckpointFormat):
    name = "pytorch"
    extensions = (".pt", ".pth", ".bin")

    def write_new(self, tensors: Mapping[str, Tensor], out: BinaryIO) -> None:
        """torch.save of a flat {name: tensor} state dict."""
        import torch

        torch.save({name: to_torch(t) for name, t in tensors.items()}, out)

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        if head.startswith(ZIP_MAGIC) and len(head) >= 30:
            name_length = int.from_bytes(head[26:28], "little")
            return bool(_ZIP_FIRST_NAME.match(head[30 : 30 + name_length]))
        return len(head) >= 14 and head[0:1] == b"\x80" and head[2:14] == LEGACY_MAGIC

    def read(self, stream: BinaryIO, path: str, sink: ParamSink) -> dict[str, Any]:
        # torch.load can only mmap a named file; mmap keeps the model out of RAM.
        with tempfile.NamedTemporaryFile(prefix="git-theta-", suffix=".pt") as spooled:
            digest = _spool(stream, spooled)
            size = spooled.tell()
            spooled.seek(0)
            is_zip = spooled.read(4) == ZIP_MAGIC
            fast = zip_reader.read(spooled, size, digest, sink, _DTYPE_NAMES) if is_zip else None
            if fast is not None:
                tree, zip_section = fast
                return {"serialization": "zip", **_structure(tree, sink), **zip_section}
            if is_zip:
                _check_zip(spooled, size)
            torch = import_torch()
            loaded = self._load(torch, spooled.name, is_zip)
        tree, tensors = encode_tree(loaded, torch)
        for name, tensor in _params(torch, tensors):
            sink.add(name, tensor)
        return {"serialization": "zip" if is_zip else "legacy", **_structure(tree, sink)}

    @staticmethod
    def _load(torch: Any, filename: str, is_zip: bool) -> Any:
        import pickle

        try:
            return torch.load(filename, weights_only=True, map_location="cpu", mmap=is_zip)
        except pickle.UnpicklingError as error:
            raise CheckpointError(
                f"torch.load(weights_only=True) refused the file: {_weights_only_reason(error)}"
            ) from None
        except Exception as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(f"torch.load failed: {reason}") from None

    def write(
        self, file: Mapping[str, Any], params: Mapping[str, ParamEntry], source: ParamSource, out: BinaryIO
    ) -> None:
        if "layout" in file:
            zip_reader.write(file, source, out)  # byte for byte, no torch needed
            return
        torch = import_torch()
        try:
            tree = (
                json.loads(source.get_blob(file["structure_blob"])) if "structure_blob" in file else file["structure"]
            )
            needed = _needed_params(tree)
        except (ValueError, RecursionError) as error:  # committed metadata is untrusted: a blob may be anything
            raise CheckpointError(
                f"the structure tree is not valid JSON or nests too deeply: {str(error)[:200]}"
            ) from None
        for name in needed:
            if name not in params:
                raise CheckpointError(f"the structure needs parameter {name!r}, which the metadata lacks")
        built = {name: _to_torch(torch, name, tensor) for name, tensor in zip(needed, source.tensors(needed))}
        try:
            obj = decode_tree(tree, built, torch)
        except (RecursionError, KeyError, TypeError, ValueError, AttributeError):
            raise CheckpointError(
                "the structure tree in the metadata is malformed (a node that describes no value): it cannot be rebuilt"
            ) from None
        torch.save(obj, out, _use_new_zipfile_serialization=file.get("serialization", "zip") == "zip")

    def file_for_params(
        self,
        file: Mapping[str, Any],
        before: Mapping[str, ParamEntry],
        after: Mapping[str, ParamEntry],
        source: ParamSource,
        sink: ParamSink,
    ) -> dict[str, Any]:
        """Values changing in place; a byte-exact zip also gets the new storages' CRC-32s in its skeleton."""
        section = super().file_for_params(file, before, after, source, sink)
        if "layout" not in file or all(before[name].hash == after[name].hash for name in after):
            return section
        return zip_reader.patch_crcs(file, source, sink)


def _check_zip(file: IO[bytes], size: int) -> None:
    """The fast path's limits, before torch.load reads the archive (torch would allocate what it declares)."""
    try:
        infos = zipfile.ZipFile(file).infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, OverflowError, NotImplementedError, struct.error):
        return  # a directory zipfile cannot read declares nothing to check; torch.load says what is wrong
    finally:
        file.seek(0)
    zip_reader.check_limits(infos, size)


def _spool(stream: BinaryIO, spooled: IO[bytes]) -> str:
    """Copy the stream to the temp file; its BLAKE3, to check the zip fast path's pieces against."""
    hasher = blake3.blake3()
    while chunk := stream.read(16 << 20):
        hasher.update(chunk)
        spooled.write(chunk)
    spooled.flush()
    return hasher.hexdigest()


def _structure(tree: Any, sink: ParamSink) -> dict[str, Any]:
    tree_json = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    if len(tree_json) > INLINE_TREE_BYTES:
        return {"structure_blob": sink.put_blob(tree_json.encode("utf-8"))}
    return {"structure": tree}


def _needed_params(tree: Any) -> list[str]:
    """Parameter names the tree refers to, in first-use order."""
    found: dict[str, None] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if "tensor" in node:
                found.setdefault(node["storage"] if "storage" in node else node["tensor"], None)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(tree)
    return list(found)


def _owns_storage(tensor: Any, nbytes: int) -> bool:
    """True if the tensor is exactly its whole storage, laid out in C order."""
    return (
        torch_dtype_name(tensor.dtype) in _DTYPE_NAMES
        and tensor.storage_offset() == 0
        and tuple(tensor.stride()) == zip_reader.contiguous_strides(tuple(tensor.shape))
        and tensor.numel() * tensor.element_size() == nbytes
    )


def _storage_bytes(torch: Any, storage: Any) -> memoryview:
    flat = torch.empty(0, dtype=torch.uint8).set_(storage, 0, (storage.nbytes(),), (1,))
    return memoryview(flat.numpy())


def _params(torch: Any, nodes: list[TensorNode]) -> list[tuple[str, Tensor]]:
    """One parameter group per storage; tensors that are not their whole storage become views of it.

    Tensors sharing a storage (tied weights) keep sharing it: the first one
    that owns the whole storage names the group, the others record where
    they sit in it. With no such owner, the group is named `<first>@storage`.
    """
    groups: dict[int, list[TensorNode]] = {}
    for node in nodes:
        groups.setdefault(node.tensor.untyped_storage()._cdata, []).append(node)
    taken = {node.name for node in nodes}
    params = []
    for group in groups.values():
        storage = group[0].tensor.untyped_storage()
        owner = next((n for n in group if _owns_storage(n.tensor, storage.nbytes())), None)
        if owner is not None:
            storage_name = owner.name
            dtype, shape = _DTYPE_NAMES[torch_dtype_name(owner.tensor.dtype)], tuple(owner.tensor.shape)
        else:
            storage_name = unique_name(group[0].name + "@storage", taken)
            dtype, shape = "U8", (storage.nbytes(),)
        params.append((storage_name, Tensor(dtype, shape, _storage_bytes(torch, storage))))
        for node in group:
            if node is not owner:
                node.record_view(storage_name, torch_dtype_name(node.tensor.dtype))
    return params


def _to_torch(torch: Any, name: str, tensor: Tensor) -> Any:
    dtype = getattr(torch, _TORCH_NAMES.get(tensor.dtype, ""), None)
    if dtype is None:
        raise CheckpointError(f"parameter {name!r} has dtype {tensor.dtype}, which torch cannot hold")
    if tensor.nbytes == 0:
        return torch.empty(tensor.shape, dtype=dtype)
    # A private writable copy: torch tensors must not alias the store's read-only buffers.
    return torch.frombuffer(bytearray(tensor.data), dtype=dtype).reshape(tensor.shape)


def to_torch(tensor: Tensor) -> Any:
    """A writable torch tensor holding the tensor's values (bf16 as torch.bfloat16)."""
    import torch

    dtype = getattr(torch, dtypes.TORCH_NAMES[tensor.dtype])
    if tensor.nbytes == 0:
        return torch.empty(tensor.shape, dtype=dtype)
    buffer = tensor.data if isinstance(tensor.data, bytearray) else bytearray(tensor.data)
    return torch.frombuffer(buffer, dtype=dtype).reshape(tensor.shape)
