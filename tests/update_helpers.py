"""Shared by the update tests: small real checkpoints and metadata reading (not a test module)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
from conftest import git

NUMPY: dict[str, Any] = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16, "F64": np.float64}
OTHER: dict[str, Any] = {"I64": np.int64, "I32": np.int32, "U8": np.uint8, "BOOL": np.bool_}


def weights(
    rng: np.random.Generator, dtype: str, shapes: dict[str, tuple[int, ...]]
) -> dict[str, np.ndarray[Any, Any]]:
    return {name: rng.normal(0, 0.02, shape).astype(np.float32).astype(NUMPY[dtype]) for name, shape in shapes.items()}


def save(path: Path, tensors: dict[str, np.ndarray[Any, Any]]) -> None:
    """safetensors.numpy cannot write bf16, so the file is assembled by hand (same layout)."""
    names = sorted(tensors)
    header: dict[str, Any] = {}
    offset = 0
    blobs = []
    for name in names:
        array = np.ascontiguousarray(tensors[name])
        dtype = _dtype_name(array.dtype)
        raw = array.tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))


def _dtype_name(dtype: np.dtype[Any]) -> str:
    for name, kind in NUMPY.items():
        if np.dtype(kind) == dtype:
            return name
    return next(name for name, kind in OTHER.items() if np.dtype(kind) == dtype)


def load(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    found = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        found[name] = np.frombuffer(
            raw[8 + size + begin : 8 + size + end], dtype={**NUMPY, **OTHER}[info["dtype"]]
        ).reshape(info["shape"])
    return found


def staged(repo: Path, path: str = "model.safetensors", rev: str = "") -> dict[str, Any]:
    """The params section of the metadata in the index (or at `rev`)."""
    text = git(repo, "cat-file", "blob", f"{rev}:{path}").stdout
    return dict(json.loads(text)["params"])


def chain(params: dict[str, Any], name: str) -> list[str]:
    return [link["update"] for link in params[name]["stored"]]


def commit(repo: Path, message: str, path: str = "model.safetensors") -> None:
    git(repo, "add", path)
    git(repo, "commit", "-q", "-m", message)


def checkout_bytes(repo: Path, rev: str, path: str = "model.safetensors") -> bytes:
    """The file as `git checkout rev -- path` writes it (through the smudge filter)."""
    git(repo, "checkout", rev, "--", path)
    return (repo / path).read_bytes()
