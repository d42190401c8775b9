"""sparse updates: bitwise exact apply, validation, and a side-loaded round trip through git."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from conftest import git, theta
from update_helpers import NUMPY, chain, checkout_bytes, commit, load, save, staged, weights

from git_theta import objects
from git_theta.errors import StoreError
from git_theta.tensor import Tensor
from git_theta.updates.sparse import SparseUpdate


@pytest.mark.parametrize("dtype", ["F32", "BF16", "F16", "F64"])
def test_encode_apply_is_bitwise_exact(dtype: str) -> None:
    rng = np.random.default_rng(0)
    base = weights(rng, dtype, {"w": (16, 8)})["w"]
    new = base.copy()
    flat = new.reshape(-1)
    flat[3], flat[9], flat[100] = NUMPY[dtype](-0.0), NUMPY[dtype](np.nan), NUMPY[dtype](1.5)
    if dtype == "F32":  # a NaN with a payload, and +0.0 -> -0.0 where numeric compare sees no change
        flat.view(np.uint32)[9] = 0x7FC0_1234
        base.reshape(-1)[3] = 0.0
    old, changed = Tensor.from_numpy(base), Tensor.from_numpy(new)
    bundle = SparseUpdate().encode(changed, old)
    assert bundle is not None
    decoded = objects.decode(b"".join(objects.encode(bundle)))
    assert len(decoded.buffers["values"].numpy()) == np.count_nonzero(_bits(base) != _bits(new))
    out = SparseUpdate().apply(decoded, old)
    assert bytes(out.data) == bytes(changed.data) and out.shape == changed.shape and out.dtype == dtype


def _bits(array: np.ndarray) -> np.ndarray:
    return array.reshape(-1).view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[array.itemsize])


def test_apply_refuses_another_base() -> None:
    rng = np.random.default_rng(1)
    arrays = weights(rng, "F32", {"a": (4, 4), "b": (4, 4)})
    a, b = Tensor.from_numpy(arrays["a"]), Tensor.from_numpy(arrays["b"])
    bundle = SparseUpdate().encode(b, a)
    assert bundle is not None
    with pytest.raises(StoreError, match=f"made for base tensor {a.hash()}"):
        SparseUpdate().apply(bundle, b)


def test_apply_rejects_out_of_range_indices() -> None:
    base = Tensor.from_numpy(np.zeros(4, np.float32))
    bundle = objects.Bundle(
        "sparse",
        {"gaps": Tensor.from_numpy(np.array([9], np.uint32)), "values": Tensor.from_numpy(np.ones(1, np.float32))},
        {"base": base.hash()},
    )
    with pytest.raises(StoreError, match="out of range"):
        SparseUpdate().apply(bundle, base)


@pytest.mark.parametrize("dtype", ["BF16", "F16"])  # F32 side-loading: low_rank_test
def test_side_loaded_sparse_round_trips_through_commit_and_checkout(repo: Path, tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(2)
    model = weights(rng, dtype, {"enc.weight": (32, 16), "enc.bias": (32,)})
    save(repo / "model.safetensors", model)
    commit(repo, "base")
    indices = np.array([5, 0, 511, 77], dtype=np.int64)
    values = np.array([-0.0, 1.0, np.nan, -2.5], dtype=np.float32).astype(NUMPY[dtype])
    save(tmp_path / "delta.safetensors", {"enc.weight.sparse_indices": indices, "enc.weight.sparse_values": values})
    theta(
        repo,
        "add",
        "model.safetensors",
        "--update-type",
        "sparse",
        "--update-data",
        str(tmp_path / "delta.safetensors"),
    )
    params = staged(repo)
    assert chain(params, "enc.weight") == ["dense", "sparse"] and chain(params, "enc.bias") == ["dense"]
    assert git(repo, "status", "--porcelain").stdout == "M  model.safetensors\n"  # staged, nothing unstaged
    written = (repo / "model.safetensors").read_bytes()
    expected = model["enc.weight"].copy().reshape(-1)
    expected[indices] = values
    assert load(repo / "model.safetensors")["enc.weight"].reshape(-1).tobytes() == expected.tobytes()
    git(repo, "commit", "-q", "-m", "sparse")
    (repo / "model.safetensors").unlink()
    assert checkout_bytes(repo, "HEAD") == written


def test_side_loaded_sparse_values_must_have_the_parameter_dtype(repo: Path, tmp_path: Path) -> None:
    model = {"w": np.zeros((4, 4), np.float32)}
    safetensors.numpy.save_file(model, str(repo / "model.safetensors"))
    commit(repo, "base")
    before = (repo / "model.safetensors").read_bytes()
    save(
        tmp_path / "d.safetensors", {"w.sparse_indices": np.array([1]), "w.sparse_values": np.array([1.0], np.float16)}
    )
    result = theta(
        repo,
        "add",
        "model.safetensors",
        "--update-type",
        "sparse",
        "--update-data",
        str(tmp_path / "d.safetensors"),
        check=False,
    )
    assert (
        result.returncode == 1
        and "sparse_values are F16, the parameter is F32" in result.stderr
        and "'w'" in result.stderr
    )
    assert (repo / "model.safetensors").read_bytes() == before
    assert git(repo, "status", "--porcelain").stdout == ""


def test_object_layout_is_locked() -> None:
    """The layout documented in docs/updates.md: gaps (U32) + values (the parameter's dtype) + base hash."""
    base = Tensor.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    new = Tensor.from_numpy(np.array([[0, 1, 9], [3, 4, -1]], np.float32))
    bundle = SparseUpdate().encode(new, base)
    assert bundle is not None
    header, _ = objects.read_header(b"".join(objects.encode(bundle)))
    assert header["kind"] == "sparse" and header["fields"] == {"base": base.hash()}
    assert [(b["name"], b["dtype"], b["shape"]) for b in header["buffers"]] == [
        ("gaps", "U32", [2]),
        ("values", "F32", [2]),
    ]
    decoded = objects.decode(b"".join(objects.encode(bundle)))
    assert decoded.buffers["gaps"].numpy().tolist() == [2, 3] and decoded.buffers["values"].numpy().tolist() == [9, -1]
