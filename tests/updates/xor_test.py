"""xor updates: exact for every dtype, and what automatic deltas pick for small dense changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import git
from update_helpers import chain, checkout_bytes, commit, save, staged, weights

from git_theta import dtypes, objects
from git_theta.errors import StoreError
from git_theta.tensor import Tensor
from git_theta.updates.xor import XorUpdate


@pytest.mark.parametrize("dtype", ["F64", "F32", "F16", "BF16", "F8_E4M3", "I64", "I32", "U8", "BOOL"])
def test_xor_round_trips_every_dtype(dtype: str) -> None:
    rng = np.random.default_rng(0)
    size = 64 * dtypes.itemsize(dtype)
    base_raw, new_raw = bytearray(rng.bytes(size)), bytearray(rng.bytes(size))
    if dtype == "BOOL":  # bool bytes must be 0 or 1
        base_raw, new_raw = bytearray(b % 2 for b in base_raw), bytearray(b % 2 for b in new_raw)
    base, new = Tensor(dtype, (8, 8), bytes(base_raw)), Tensor(dtype, (8, 8), bytes(new_raw))
    bundle = XorUpdate().encode(new, base)
    assert bundle is not None and bundle.fields["base"] == base.hash()
    out = XorUpdate().apply(objects.decode(b"".join(objects.encode(bundle))), base)
    assert (out.dtype, out.shape, bytes(out.data)) == (dtype, (8, 8), bytes(new_raw))


def test_xor_rejects_a_mismatched_buffer() -> None:
    base = Tensor.from_numpy(np.zeros((2, 2), np.float32))
    bundle = objects.Bundle("xor", {"xor": Tensor.from_numpy(np.zeros((2, 2), np.uint16))}, {"base": base.hash()})
    with pytest.raises(StoreError, match="does not fit"):
        XorUpdate().apply(bundle, base)


def test_small_dense_bf16_change_is_stored_as_xor_and_checks_out_exactly(repo: Path) -> None:
    rng = np.random.default_rng(3)
    model = weights(rng, "BF16", {"w": (256, 256)})
    save(repo / "model.safetensors", model)
    commit(repo, "v1")
    v1 = (repo / "model.safetensors").read_bytes()
    # every value moves by one or two ulps: no entry is left alone, the high bytes stay the same
    moved = model["w"].reshape(-1).view(np.uint16) + rng.integers(1, 3, 256 * 256).astype(np.uint16)
    save(repo / "model.safetensors", {"w": moved.view(model["w"].dtype).reshape(256, 256)})
    commit(repo, "v2")
    v2 = (repo / "model.safetensors").read_bytes()
    params = staged(repo)
    assert chain(params, "w") == ["dense", "xor"]
    assert params["w"]["stored"][1]["size"] < 0.6 * params["w"]["stored"][0]["size"]
    assert checkout_bytes(repo, "HEAD~1") == v1
    assert checkout_bytes(repo, "HEAD") == v2
    assert git(repo, "status", "--porcelain").stdout == ""


def test_object_layout_is_locked() -> None:
    """The layout documented in docs/updates.md: one unsigned buffer of the element size, shaped as the parameter."""
    base = Tensor.from_numpy(np.array([[1.0, 2.0]], np.float16))
    new = Tensor.from_numpy(np.array([[1.0, -2.0]], np.float16))
    bundle = XorUpdate().encode(new, base)
    assert bundle is not None
    header, _ = objects.read_header(b"".join(objects.encode(bundle)))
    assert (header["kind"], header["fields"]) == ("xor", {"base": base.hash()})
    assert [(b["name"], b["dtype"], b["shape"]) for b in header["buffers"]] == [("xor", "U16", [1, 2])]
    assert objects.decode(b"".join(objects.encode(bundle))).buffers["xor"].numpy().tolist() == [[0, 0x8000]]
