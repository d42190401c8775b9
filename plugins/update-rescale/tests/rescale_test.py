"""The rescale update type: found through its entry point, exact, chosen by `git add`, side-loadable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from git_theta_update_rescale import ScaleUpdate
from safetensors.numpy import load_file, save_file

from git_theta import plugins
from git_theta.tensor import Tensor
from git_theta.testing import assert_round_trip, checkout, commit, run, theta_repo, track

__all__ = ["theta_repo"]  # the fixture, imported from git_theta.testing (no conftest needed for one file)


def _weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {"emb": rng.standard_normal((64, 32)).astype(np.float32), "step": np.array([7], dtype=np.int64)}


def _chain(repo: Path, name: str, rev: str = "HEAD") -> list[str]:
    params = json.loads(run(repo, "git", "show", f"{rev}:model.safetensors").stdout)["params"]
    return [link["update"] for link in params[name]["stored"]]


def test_registered_through_the_entry_point() -> None:
    assert plugins.update("rescale") is ScaleUpdate


def test_encode_is_exact_or_nothing() -> None:
    base = Tensor.from_numpy(_weights()["emb"])
    decayed = Tensor.from_numpy(_weights()["emb"] * np.float32(1 - 1e-3 * 0.1))
    bundle = ScaleUpdate().encode(decayed, base)
    assert bundle is not None and bytes(ScaleUpdate().apply(bundle, base).data) == bytes(decayed.data)
    other = Tensor.from_numpy(_weights()["emb"] + np.float32(1e-3))
    assert ScaleUpdate().encode(other, base) is None
    assert (
        ScaleUpdate().encode(
            Tensor.from_numpy(np.arange(3, dtype=np.int64)), Tensor.from_numpy(np.arange(3, dtype=np.int64))
        )
        is None
    )


def test_git_add_stores_a_decay_step_as_one_factor(theta_repo: Path) -> None:
    track(theta_repo, "*.safetensors")
    weights = _weights()
    save_file(weights, str(theta_repo / "model.safetensors"))
    first = commit(theta_repo, "model.safetensors", "v1")
    original = (theta_repo / "model.safetensors").read_bytes()
    save_file({**weights, "emb": weights["emb"] * np.float32(0.9999)}, str(theta_repo / "model.safetensors"))
    commit(theta_repo, "model.safetensors", "decayed")
    assert _chain(theta_repo, "emb") == ["dense", "rescale"]
    assert_round_trip(theta_repo, "model.safetensors")
    assert checkout(theta_repo, first, "model.safetensors") == original


def test_side_loaded_factors(theta_repo: Path, tmp_path: Path) -> None:
    track(theta_repo, "*.safetensors")
    weights = _weights()
    save_file(weights, str(theta_repo / "model.safetensors"))
    commit(theta_repo, "model.safetensors", "v1")
    save_file({"base_model.model.emb.rescale": np.array([0.5], dtype=np.float32)}, str(tmp_path / "update.safetensors"))
    run(
        theta_repo,
        "git-theta",
        "add",
        "model.safetensors",
        "--update-type",
        "rescale",
        "--update-data",
        str(tmp_path / "update.safetensors"),
    )
    run(theta_repo, "git", "commit", "-q", "-m", "halved")
    assert _chain(theta_repo, "emb") == ["dense", "rescale"]
    np.testing.assert_array_equal(
        load_file(str(theta_repo / "model.safetensors"))["emb"], weights["emb"] * np.float32(0.5)
    )
    assert_round_trip(theta_repo, "model.safetensors")


def test_a_bad_side_load_entry_is_refused_by_name(theta_repo: Path, tmp_path: Path) -> None:
    track(theta_repo, "*.safetensors")
    save_file(_weights(), str(theta_repo / "model.safetensors"))
    commit(theta_repo, "model.safetensors", "v1")
    save_file({"emb.rescale": np.array([0.5, 2.0], dtype=np.float32)}, str(tmp_path / "update.safetensors"))
    result = run(
        theta_repo,
        "git-theta",
        "add",
        "model.safetensors",
        "--update-type",
        "rescale",
        "--update-data",
        str(tmp_path / "update.safetensors"),
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"git-theta: error: {tmp_path / 'update.safetensors'}: parameter 'emb' (F32[64, 32]): a .rescale entry holds "
        "one float factor, not F32[2]"
    ]
    assert run(theta_repo, "git", "status", "--porcelain").stdout == ""
