"""git theta add: plain staging, argument checks, and the pending-record channel to the clean filter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from conftest import git, theta
from update_helpers import chain, commit, save, staged, weights

from git_theta.metadata import ParamEntry, StoredLink
from git_theta.update_engine import pending


def test_plain_add_stages_like_git_add(repo: Path) -> None:
    save(repo / "model.safetensors", weights(np.random.default_rng(0), "F32", {"w": (8, 8)}))
    theta(repo, "add", "model.safetensors")
    assert git(repo, "status", "--porcelain").stdout == "A  model.safetensors\n"


def test_update_flags_are_checked(repo: Path, tmp_path: Path) -> None:
    save(repo / "model.safetensors", weights(np.random.default_rng(0), "F32", {"w": (8, 8)}))
    result = theta(repo, "add", "model.safetensors", "--update-type", "low-rank", check=False)
    assert result.returncode == 1 and "--update-type needs --update-data FILE and exactly one PATH" in result.stderr
    result = theta(repo, "add", "model.safetensors", "--update-data", "x.safetensors", check=False)
    assert result.returncode == 1 and "need --update-type" in result.stderr
    (repo / "notes.txt").write_text("not a model\n")
    save(tmp_path / "u.safetensors", {"w.sparse_indices": np.array([0]), "w.sparse_values": np.zeros(1, np.float32)})
    result = theta(
        repo,
        "add",
        "notes.txt",
        "--update-type",
        "sparse",
        "--update-data",
        str(tmp_path / "u.safetensors"),
        check=False,
    )
    assert result.returncode == 1 and "notes.txt is not tracked by git-theta" in result.stderr
    assert git(repo, "status", "--porcelain").stdout == "?? model.safetensors\n?? notes.txt\n"


def test_side_loaded_add_from_a_subdirectory_leaves_no_record(repo: Path, tmp_path: Path) -> None:
    (repo / "models").mkdir()
    save(repo / "models" / "model.safetensors", weights(np.random.default_rng(1), "F32", {"w": (8, 8)}))
    commit(repo, "base", "models/model.safetensors")
    save(
        tmp_path / "u.safetensors",
        {"w.sparse_indices": np.array([3, 1]), "w.sparse_values": np.array([7.0, -0.0], np.float32)},
    )
    theta(
        repo / "models",
        "add",
        "model.safetensors",
        "--update-type",
        "sparse",
        "--update-data",
        str(tmp_path / "u.safetensors"),
    )
    assert chain(staged(repo, "models/model.safetensors"), "w") == ["dense", "sparse"]
    assert not list((repo / ".git" / "theta" / "pending").iterdir())
    assert git(repo, "diff", "--name-only").stdout == ""


def test_a_record_whose_hash_does_not_match_is_ignored(repo: Path) -> None:
    rng = np.random.default_rng(2)
    model = weights(rng, "F32", {"w": (32, 32)})
    save(repo / "model.safetensors", model)
    commit(repo, "base")
    first = staged(repo)["w"]
    bogus = ParamEntry("F32", (32, 32), "0" * 64, tuple(StoredLink(**link) for link in first["stored"]))
    pending.write(repo / ".git", "model.safetensors", {"w": bogus})
    model["w"][0, 0] += 1
    save(repo / "model.safetensors", model)
    commit(repo, "tuned")
    after = staged(repo)["w"]
    assert (
        after["hash"] != "0" * 64 and chain({"w": after}, "w")[0] == "dense" and len(after["stored"]) == 2
    )  # an automatic delta


def test_side_loading_works_for_a_torch_checkpoint_too(repo: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save({"fc.weight": torch.randn(16, 8, dtype=torch.bfloat16), "fc.bias": torch.zeros(16)}, repo / "model.pt")
    commit(repo, "base", "model.pt")
    torch.save(
        {
            "base_model.model.fc.lora_A.weight": torch.randn(2, 8),
            "base_model.model.fc.lora_B.weight": torch.randn(16, 2),
        },
        tmp_path / "lora.pt",
    )
    theta(repo, "add", "model.pt", "--update-type", "low-rank", "--update-data", str(tmp_path / "lora.pt"))
    assert chain(staged(repo, "model.pt"), "fc.weight") == ["dense", "low-rank"]
    assert git(repo, "diff", "--name-only").stdout == ""
    written = (repo / "model.pt").read_bytes()
    git(repo, "commit", "-q", "-m", "lora")
    (repo / "model.pt").unlink()
    git(repo, "checkout", "--", "model.pt")
    assert (repo / "model.pt").read_bytes() == written


def test_side_loading_onto_a_never_committed_checkpoint_stores_its_base_first(repo: Path, tmp_path: Path) -> None:
    model = weights(np.random.default_rng(3), "BF16", {"w": (16, 16)})
    save(repo / "model.safetensors", model)
    save(
        tmp_path / "u.safetensors",
        {"w.sparse_indices": np.array([5]), "w.sparse_values": model["w"].reshape(-1)[:1] * 2},
    )
    theta(repo, "add", "model.safetensors", "--update-type", "sparse", "--update-data", str(tmp_path / "u.safetensors"))
    assert chain(staged(repo), "w") == ["dense", "sparse"]
    written = (repo / "model.safetensors").read_bytes()
    git(repo, "commit", "-q", "-m", "patched")
    (repo / "model.safetensors").unlink()
    git(repo, "checkout", "--", "model.safetensors")
    assert (repo / "model.safetensors").read_bytes() == written
    assert git(repo, "status", "--porcelain").stdout == ""
