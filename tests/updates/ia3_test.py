"""ia3 updates: per-channel scaling with PEFT's broadcast, output-scaled biases, exact round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import git, theta
from update_helpers import NUMPY, chain, checkout_bytes, commit, load, save, staged, weights

from git_theta import objects
from git_theta.errors import StoreError
from git_theta.tensor import Tensor
from git_theta.updates import ia3


def test_vector_must_broadcast() -> None:
    base = Tensor.from_numpy(np.ones((4, 3), np.float32))
    with pytest.raises(StoreError, match=r"IA3 vector of shape \[3\] does not broadcast"):
        ia3.make_bundle(base, Tensor.from_numpy(np.ones(3, np.float32)))


def test_apply_scales_columns_for_a_feedforward_vector() -> None:
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    base = Tensor.from_numpy(w)
    scale = np.array([[1.0, 2.0, 0.5]], np.float32)
    out = ia3.Ia3Update().apply(ia3.make_bundle(base, Tensor.from_numpy(scale)), base)
    assert out.numpy().tobytes() == (w * scale).tobytes()


@pytest.mark.parametrize("dtype", ["BF16", "F16"])  # F32 side-loading: low_rank_test
def test_peft_ia3_round_trips_and_scales_the_bias_of_output_scaled_layers(
    repo: Path, tmp_path: Path, dtype: str
) -> None:
    rng = np.random.default_rng(4)
    model = weights(rng, dtype, {"k.weight": (8, 6), "k.bias": (8,), "ff.weight": (6, 8), "ff.bias": (6,)})
    save(repo / "model.safetensors", model)
    commit(repo, "base")
    k_scale = rng.uniform(0.5, 1.5, (8, 1)).astype(np.float32)
    ff_scale = rng.uniform(0.5, 1.5, (1, 8)).astype(np.float32)
    save(tmp_path / "ia3.safetensors", {"base_model.model.k.ia3_l": k_scale, "base_model.model.ff.ia3_l": ff_scale})
    theta(repo, "add", "model.safetensors", "--update-type", "ia3", "--update-data", str(tmp_path / "ia3.safetensors"))
    params = staged(repo)
    assert [chain(params, n) for n in ("k.weight", "k.bias", "ff.weight", "ff.bias")] == [
        ["dense", "ia3"],
        ["dense", "ia3"],
        ["dense", "ia3"],
        ["dense"],
    ]
    got = load(repo / "model.safetensors")
    as32 = {n: v.astype(np.float32) for n, v in model.items()}
    assert got["k.weight"].tobytes() == (as32["k.weight"] * k_scale).astype(NUMPY[dtype]).tobytes()
    assert got["k.bias"].tobytes() == (as32["k.bias"] * k_scale[:, 0]).astype(NUMPY[dtype]).tobytes()
    assert got["ff.weight"].tobytes() == (as32["ff.weight"] * ff_scale).astype(NUMPY[dtype]).tobytes()
    assert got["ff.bias"].tobytes() == model["ff.bias"].tobytes()
    assert git(repo, "diff", "--name-only").stdout == ""
    written = (repo / "model.safetensors").read_bytes()
    git(repo, "commit", "-q", "-m", "ia3")
    (repo / "model.safetensors").unlink()
    assert checkout_bytes(repo, "HEAD") == written


def test_object_layout_is_locked() -> None:
    """The layout documented in docs/updates.md: one float `scale` buffer broadcastable to the base, base hash."""
    base = Tensor.from_numpy(np.zeros((3, 2), np.float32))
    header, _ = objects.read_header(
        b"".join(objects.encode(ia3.make_bundle(base, Tensor.from_numpy(np.ones((3, 1), np.float32)))))
    )
    assert (header["kind"], header["fields"]) == ("ia3", {"base": base.hash()})
    assert [(x["name"], x["dtype"], x["shape"]) for x in header["buffers"]] == [("scale", "F32", [3, 1])]
