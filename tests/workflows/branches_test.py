"""End to end through real git: branches, stash, mv, rebase, cherry-pick, amend, worktrees, sharded checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from conftest import git, theta
from safetensors.torch import save_file as save_torch
from workflow_support import (
    blob_metadata,
    direct_console_script,  # noqa: F401 (autouse fixture)
    save_small,
    store_files,
    weights,
)

MODEL = "model.safetensors"


def _commit(repo: Path, message: str, *paths: str) -> None:
    git(repo, "add", *paths)
    git(repo, "commit", "-q", "-m", message)


def _edited(seed: int, **changes: float) -> dict[str, np.ndarray]:
    """weights(seed) with element [0, 0] (or [0]) of the named tensors set to a value; same layout, same header."""
    tensors = weights(seed)
    for name, value in changes.items():
        tensors[name.replace("_", ".")].flat[0] = value
    return tensors


def test_branch_switch_and_stash_round_trip(repo: Path) -> None:
    model = repo / MODEL
    v1 = save_small(model, weights(1), note="main")
    _commit(repo, "v1", MODEL)
    git(repo, "checkout", "-q", "-b", "finetune")
    v2 = save_small(model, weights(2), note="finetune")
    _commit(repo, "v2", MODEL)

    git(repo, "checkout", "-q", "main")
    assert model.read_bytes() == v1
    git(repo, "checkout", "-q", "finetune")
    assert model.read_bytes() == v2

    v3 = save_small(model, weights(3), note="work in progress")
    git(repo, "stash", "-q")
    assert model.read_bytes() == v2
    assert git(repo, "status", "--porcelain").stdout == ""
    assert blob_metadata(repo, f"stash@{{0}}:{MODEL}")["format"] == "safetensors"
    git(repo, "stash", "pop", "-q")
    assert model.read_bytes() == v3
    assert git(repo, "status", "--porcelain").stdout == f" M {MODEL}\n"


def test_git_mv_keeps_both_commits_exact(repo: Path) -> None:
    v1 = save_small(repo / MODEL, weights(1))
    _commit(repo, "add", MODEL)
    (repo / "models").mkdir()
    git(repo, "mv", MODEL, "models/renamed.safetensors")
    git(repo, "commit", "-q", "-m", "move")
    assert (
        git(repo, "rev-parse", f"HEAD~1:{MODEL}").stdout
        == git(repo, "rev-parse", "HEAD:models/renamed.safetensors").stdout
    )

    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    assert (repo / MODEL).read_bytes() == v1 and not (repo / "models" / "renamed.safetensors").exists()
    git(repo, "checkout", "-q", "main")
    assert (repo / "models" / "renamed.safetensors").read_bytes() == v1 and not (repo / MODEL).exists()


def test_rebase_of_a_changed_model_onto_another_change(repo: Path) -> None:
    save_small(repo / MODEL, weights(1))
    _commit(repo, "base", MODEL)
    git(repo, "checkout", "-q", "-b", "finetune")
    save_small(repo / MODEL, _edited(1, layer_0_weight=1.5))
    _commit(repo, "finetune layer 0", MODEL)
    git(repo, "checkout", "-q", "main")
    save_small(repo / MODEL, _edited(1, layer_1_weight=-2.5))
    _commit(repo, "fix layer 1", MODEL)

    git(repo, "rebase", "-q", "main", "finetune")
    both = save_small(repo.parent / "expected.safetensors", _edited(1, layer_0_weight=1.5, layer_1_weight=-2.5))
    assert (repo / MODEL).read_bytes() == both
    assert git(repo, "status", "--porcelain").stdout == ""
    assert git(repo, "rev-parse", "HEAD~1").stdout == git(repo, "rev-parse", "main").stdout


def test_cherry_pick_and_amend(repo: Path) -> None:
    model = repo / MODEL
    save_small(model, weights(1))
    _commit(repo, "base", MODEL)
    git(repo, "checkout", "-q", "-b", "side")
    picked = save_small(model, _edited(1, layer_0_bias=0.25))
    _commit(repo, "change a bias", MODEL)
    git(repo, "checkout", "-q", "main")
    (repo / "README").write_text("unrelated\n")
    _commit(repo, "readme", "README")

    git(repo, "cherry-pick", "side")
    assert model.read_bytes() == picked
    assert git(repo, "rev-parse", f"HEAD:{MODEL}").stdout == git(repo, "rev-parse", f"side:{MODEL}").stdout

    amended = save_small(model, _edited(1, layer_0_bias=0.5))
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "--amend", "--no-edit")
    assert git(repo, "log", "--format=%s").stdout.splitlines() == [
        "change a bias",
        "readme",
        "base",
        "track checkpoints",
    ]
    model.unlink()
    git(repo, "checkout", "-q", "HEAD", "--", MODEL)
    assert model.read_bytes() == amended


def test_two_worktrees_share_one_store(repo: Path) -> None:
    v1 = save_small(repo / MODEL, weights(1))
    _commit(repo, "v1", MODEL)
    other = repo.parent / "other-worktree"
    git(repo, "worktree", "add", "-q", "-b", "experiment", str(other))
    assert (other / MODEL).read_bytes() == v1

    before = store_files(repo)
    v2 = save_small(other / MODEL, _edited(1, layer_1_weight=3.0))
    _commit(other, "experiment", MODEL)
    new = store_files(repo) - before
    assert len(new) == 1, "only the changed tensor is new; the header and the other tensors are reused"
    assert not list((repo / ".git" / "worktrees").rglob("lfs")), "a worktree must not get a store of its own"

    git(repo, "checkout", "experiment", "--", MODEL)
    assert (repo / MODEL).read_bytes() == v2
    assert (other / MODEL).read_bytes() == v2
    git(repo, "checkout", "HEAD", "--", MODEL)
    assert (repo / MODEL).read_bytes() == v1
    assert store_files(repo) - before == new


def _shard(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        f"model.layers.{seed}.{name}": torch.randn(16, 8, generator=generator).to(torch.bfloat16)
        for name in ("mlp.weight", "attn.weight")
    }


def test_sharded_hugging_face_checkpoint_with_a_track_pattern(repo: Path) -> None:
    theta(repo, "untrack", "*.safetensors")
    theta(repo, "track", "model-*-of-*.safetensors")
    shards = {f"model-0000{i}-of-00002.safetensors": _shard(i) for i in (1, 2)}
    weight_map = {name: file for file, tensors in shards.items() for name in tensors}
    index = json.dumps({"metadata": {"total_size": 2048}, "weight_map": weight_map}, indent=2).encode()
    (repo / "model.safetensors.index.json").write_bytes(index)
    written = {}
    for file, tensors in shards.items():
        save_torch(tensors, str(repo / file), metadata={"format": "pt"})
        written[file] = (repo / file).read_bytes()
    _commit(repo, "sharded", ".gitattributes", "model.safetensors.index.json", *shards)

    assert git(repo, "cat-file", "blob", "HEAD:model.safetensors.index.json").stdout.encode() == index
    assert (
        git(repo, "check-attr", "filter", "--", "model.safetensors.index.json")
        .stdout.strip()
        .endswith("filter: unspecified")
    )
    for file in shards:
        assert git(repo, "check-attr", "filter", "--", file).stdout.strip().endswith("filter: theta")
        assert blob_metadata(repo, f"HEAD:{file}")["params"].keys() == shards[file].keys()

    changed = _shard(2)
    changed["model.layers.2.attn.weight"][0, 0] = 7.0
    save_torch(changed, str(repo / "model-00002-of-00002.safetensors"), metadata={"format": "pt"})
    second = (repo / "model-00002-of-00002.safetensors").read_bytes()
    _commit(repo, "change shard 2", "model-00002-of-00002.safetensors")
    assert git(repo, "diff", "--name-only", "HEAD~1", "HEAD").stdout == "model-00002-of-00002.safetensors\n"

    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    assert all((repo / file).read_bytes() == data for file, data in written.items())
    git(repo, "checkout", "-q", "main")
    assert (repo / "model-00001-of-00002.safetensors").read_bytes() == written["model-00001-of-00002.safetensors"]
    assert (repo / "model-00002-of-00002.safetensors").read_bytes() == second
