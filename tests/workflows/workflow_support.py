"""Helpers shared by the end-to-end git workflow tests: checkpoints with every dtype, store counting."""

from __future__ import annotations

import json
import os
import sysconfig
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import git
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch


@pytest.fixture(autouse=True)
def direct_console_script(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put this interpreter's scripts dir first on PATH, so git runs the installed `git-theta` console script
    itself rather than through a version manager's shim (pyenv's adds ~0.2 s to every filter run)."""
    monkeypatch.setenv("PATH", sysconfig.get_path("scripts") + os.pathsep + os.environ["PATH"])


# Bit patterns that a lossy path would change: NaNs with payloads (quiet, signalling, negative),
# -0.0, +-inf, subnormals. Each is a list of raw little-endian integers of the dtype's width.
SPECIAL_BITS: dict[str, tuple[type[np.unsignedinteger], list[int]]] = {
    "F64": (
        np.uint64,
        [0x7FF8000000000001, 0xFFF0000000000DEA, 0x8000000000000000, 0x7FF0000000000000, 0xFFF0000000000000, 0x1],
    ),
    "F32": (np.uint32, [0x7FC00001, 0x7F800001, 0xFFC0BEEF, 0x80000000, 0x7F800000, 0xFF800000, 0x1]),
    "F16": (np.uint16, [0x7E01, 0x7C01, 0xFE55, 0x8000, 0x7C00, 0xFC00, 0x1]),
    "BF16": (np.uint16, [0x7FC1, 0x7F81, 0xFFAB, 0x8000, 0x7F80, 0xFF80, 0x1]),
    "F8_E4M3": (np.uint8, [0x7F, 0xFF, 0x80, 0x7E, 0x01]),  # e4m3fn: NaN is S.1111.111 only; no inf
    "F8_E5M2": (np.uint8, [0x7D, 0x7E, 0xFF, 0x80, 0x7C, 0xFC, 0x01]),
}
TORCH_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
ALL_DTYPES = tuple(TORCH_DTYPES)
# The numpy type random elements are drawn as (unsigned of the same width for floats).
_RAW_TYPES: dict[str, type[np.integer]] = {
    "F64": np.uint64,
    "F32": np.uint32,
    "F16": np.uint16,
    "BF16": np.uint16,
    "F8_E4M3": np.uint8,
    "F8_E5M2": np.uint8,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
}


def _raw(dtype: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` random elements of `dtype`: any bit pattern for floats, any value for integers, 0/1 for bool."""
    if dtype == "BOOL":
        return rng.integers(0, 2, count, dtype=np.uint8)
    info = np.iinfo(_RAW_TYPES[dtype])
    return rng.integers(info.min, info.max, count, dtype=_RAW_TYPES[dtype], endpoint=True)


def as_torch(dtype: str, raw: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """A torch tensor holding exactly these bits (a view, never a value conversion)."""
    as_bytes = torch.from_numpy(np.ascontiguousarray(raw).view(np.uint8).copy())
    return as_bytes.view(TORCH_DTYPES[dtype]).reshape(shape)


def dtype_zoo(seed: int) -> dict[str, torch.Tensor]:
    """Every dtype: a random matrix, its special values, a zero-size and a scalar tensor. `seed` picks the values."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, torch.Tensor] = {}
    for dtype in ALL_DTYPES:
        key = dtype.lower()
        tensors[f"{key}.matrix"] = as_torch(dtype, _raw(dtype, 24, rng), (4, 6))
        if dtype in SPECIAL_BITS:
            width, bits = SPECIAL_BITS[dtype]
            tensors[f"{key}.special"] = as_torch(dtype, np.array(bits, dtype=width), (len(bits),))
        tensors[f"{key}.empty"] = torch.empty((3, 0), dtype=TORCH_DTYPES[dtype])
        tensors[f"{key}.scalar"] = as_torch(dtype, _raw(dtype, 1, rng), ())
    return tensors


def save_zoo(path: Path, seed: int) -> bytes:
    """A safetensors file of `dtype_zoo(seed)` with `__metadata__`; returns its bytes."""
    save_torch(dtype_zoo(seed), str(path), metadata={"format": "pt", "version": str(seed), "note": "dtype zoo"})
    return path.read_bytes()


def save_small(path: Path, tensors: Mapping[str, np.ndarray], note: str = "") -> bytes:
    """A safetensors file from numpy arrays (optionally with `__metadata__`); returns its bytes."""
    save_numpy(dict(tensors), str(path), metadata={"note": note} if note else None)
    return path.read_bytes()


def weights(
    seed: int, names: tuple[str, ...] = ("layer.0.weight", "layer.0.bias", "layer.1.weight")
) -> dict[str, np.ndarray]:
    """A tiny fp32 model: N(0, 0.02) weights [8, 4] and biases [8]."""
    rng = np.random.default_rng(seed)
    return {name: rng.normal(0, 0.02, (8, 4) if name.endswith("weight") else (8,)).astype(np.float32) for name in names}


def store_files(repo: Path) -> set[str]:
    """Names of every file under the repository's object store (what a user would count)."""
    root = Path(git(repo, "rev-parse", "--git-common-dir").stdout.strip())
    root = root if root.is_absolute() else repo / root
    objects = root / "lfs" / "objects"
    return {p.name for p in objects.rglob("*") if p.is_file()} if objects.is_dir() else set()


def store_path(repo: Path, oid: str) -> Path:
    """Where object `oid` lives (Git LFS layout)."""
    return repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid


def blob_metadata(repo: Path, spec: str) -> dict:
    """Parsed metadata of a blob (`:path` for the index, `REV:path`)."""
    text = git(repo, "cat-file", "blob", spec).stdout
    assert text.startswith('{"version":"git-theta/'), f"{spec} is not git-theta metadata:\n{text[:200]}"
    return json.loads(text)


def param_objects(meta: dict, name: str) -> list[str]:
    """The objects parameter `name`'s stored chain uses, in order."""
    return [link["object"] for link in meta["params"][name]["stored"]]


def index_state(repo: Path) -> str:
    """`git ls-files -s`: mode, blob id and stage of every index entry."""
    return git(repo, "ls-files", "-s").stdout
