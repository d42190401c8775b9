"""End to end through real git: versions, every dtype, one-bit edits, deduplication, metadata pass-through."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import git, theta
from safetensors.torch import load_file
from workflow_support import (
    ALL_DTYPES,
    SPECIAL_BITS,
    blob_metadata,
    direct_console_script,  # noqa: F401 (autouse fixture)
    param_objects,
    save_small,
    save_zoo,
    store_files,
    weights,
)


def _commit(repo: Path, message: str, *paths: str) -> str:
    git(repo, "add", *paths)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").stdout.strip()


def test_zoo_file_really_holds_the_special_bits(tmp_path: Path) -> None:
    """Guards the other tests: the checkpoint writer kept NaN payloads, -0.0 and inf as raw bits."""
    save_zoo(tmp_path / "zoo.safetensors", seed=1)
    loaded = load_file(str(tmp_path / "zoo.safetensors"))
    for dtype, (width, bits) in SPECIAL_BITS.items():
        raw = loaded[f"{dtype.lower()}.special"].view(torch.uint8).numpy().view(width)
        assert raw.tolist() == bits, dtype


def test_three_versions_check_out_byte_identical(repo: Path) -> None:
    model = repo / "model.safetensors"
    versions = []
    for seed in (1, 2, 3):
        data = save_zoo(model, seed)
        versions.append((_commit(repo, f"v{seed}", "model.safetensors"), data))
    assert len({data for _, data in versions}) == 3

    meta = blob_metadata(repo, "HEAD:model.safetensors")
    assert {entry["dtype"] for entry in meta["params"].values()} == set(ALL_DTYPES)
    assert meta["params"]["f32.empty"]["shape"] == [3, 0] and meta["params"]["bool.scalar"]["shape"] == []

    # Path checkouts from older commits, then back to HEAD's version.
    for rev, data in (versions[0], versions[1]):
        git(repo, "checkout", rev, "--", "model.safetensors")
        assert model.read_bytes() == data
    git(repo, "checkout", "HEAD", "--", "model.safetensors")
    assert model.read_bytes() == versions[2][1]
    # Whole-commit checkouts (detached HEAD), then back to the branch (v3).
    for rev, data in (versions[0], versions[1]):
        git(repo, "checkout", "-q", "--detach", rev)
        assert model.read_bytes() == data
    git(repo, "checkout", "-q", "main")
    assert git(repo, "status", "--porcelain").stdout == ""
    data = model.read_bytes()
    assert data == versions[2][1]
    header_size = struct.unpack("<Q", data[:8])[0]
    assert json.loads(data[8 : 8 + header_size])["__metadata__"] == {
        "format": "pt",
        "version": "3",
        "note": "dtype zoo",
    }


def _tensor_offset(data: bytes, name: str) -> int:
    """Absolute file offset of tensor `name`'s first byte."""
    header_size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + header_size])
    return 8 + header_size + header[name]["data_offsets"][0]


def test_one_bit_flip_in_minilm_is_one_line_and_one_object(repo: Path, minilm: Path) -> None:
    model = repo / "model.safetensors"
    shutil.copy(minilm, model)
    _commit(repo, "minilm", "model.safetensors")
    before = store_files(repo)
    original = minilm.read_bytes()

    name = "encoder.layer.3.attention.self.query.weight"
    flipped = bytearray(original)
    flipped[_tensor_offset(original, name) + 1001] ^= 0x01  # bit 8 (a mantissa bit) of fp32 weight #250
    model.write_bytes(bytes(flipped))

    assert git(repo, "status", "--porcelain").stdout == " M model.safetensors\n"
    git(repo, "add", "model.safetensors")
    raw_diff = git(repo, "diff", "--cached", "--no-textconv", "-U0").stdout.splitlines()
    removed = [line for line in raw_diff if line.startswith("-") and not line.startswith("---")]
    added = [line for line in raw_diff if line.startswith("+") and not line.startswith("+++")]
    assert len(removed) == 1 and len(added) == 1, raw_diff
    assert removed[0].startswith(f'-"{name}":') and added[0].startswith(f'+"{name}":')

    git(repo, "commit", "-q", "-m", "flip one bit")
    new_objects = store_files(repo) - before
    assert len(new_objects) == 1 and new_objects <= set(
        param_objects(blob_metadata(repo, "HEAD:model.safetensors"), name)
    )
    assert len(store_files(repo)) == len(before) + 1

    git(repo, "checkout", "HEAD~1", "--", "model.safetensors")
    assert model.read_bytes() == original


def test_same_tensor_is_stored_once_across_names_files_and_branches(repo: Path) -> None:
    shared = np.arange(64, dtype=np.float32).reshape(8, 8) / 7
    save_small(repo / "a.safetensors", {"first": shared, "second": shared})
    save_small(repo / "b.safetensors", {"other.name": shared}, note="b")
    _commit(repo, "a and b", "a.safetensors", "b.safetensors")
    git(repo, "checkout", "-q", "-b", "side")
    save_small(repo / "c.safetensors", {"third": shared}, note="c")
    _commit(repo, "c on side", "c.safetensors")

    metas = {path: blob_metadata(repo, f"side:{path}") for path in ("a.safetensors", "b.safetensors", "c.safetensors")}
    shared_ids = {
        oid
        for meta in metas.values()
        for entry in meta["params"].values()
        for oid in (link["object"] for link in entry["stored"])
    }
    headers = {meta["file"]["header"]["object"] for meta in metas.values()}
    assert len(shared_ids) == 1
    # One object for the tensor, one per distinct safetensors header, nothing else.
    assert store_files(repo) == shared_ids | headers and len(headers) == 3

    git(repo, "checkout", "-q", "main")
    assert not (repo / "c.safetensors").exists()
    git(repo, "checkout", "-q", "side")
    assert load_file(str(repo / "c.safetensors"))["third"].numpy().tobytes() == shared.tobytes()


def test_metadata_passes_through_and_unfiltered_checkout_gives_metadata(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = repo / "model.safetensors"
    data = save_small(model, weights(1), note="v1")
    _commit(repo, "v1", "model.safetensors")
    blob = git(repo, "rev-parse", "HEAD:model.safetensors").stdout.strip()
    metadata_text = git(repo, "cat-file", "blob", blob).stdout

    # A checkout with the filter switched off writes the metadata itself (what a user without git-theta sees).
    model.unlink()
    no_filter = ("-c", "filter.theta.process=", "-c", "filter.theta.smudge=", "-c", "filter.theta.required=false")
    git(repo, *no_filter, "checkout", "--", "model.safetensors")
    assert model.read_text() == metadata_text

    # Adding that metadata back (with the filter on) keeps the very same blob: clean passes it through.
    # (Unstaged first, so git cannot skip the clean filter because the file's stat matches the index.)
    git(repo, "rm", "-q", "--cached", "model.safetensors")
    git(repo, "add", "model.safetensors")
    assert git(repo, "rev-parse", ":model.safetensors").stdout.strip() == blob
    assert git(repo, "diff", "--cached", "--stat").stdout == ""

    # GIT_LFS_SKIP_SMUDGE's counterpart: the filter runs but leaves the metadata text.
    model.unlink()
    monkeypatch.setenv("GIT_THETA_SKIP_SMUDGE", "1")
    git(repo, "checkout", "--", "model.safetensors")
    assert model.read_text() == metadata_text
    monkeypatch.delenv("GIT_THETA_SKIP_SMUDGE")

    # And the filter turns it back into the exact checkpoint.
    model.unlink()
    git(repo, "checkout", "--", "model.safetensors")
    assert model.read_bytes() == data


def test_diff_cached_names_only_the_changed_parameter(repo: Path) -> None:
    """The user-facing diff (textconv view): one parameter's line goes out and comes back changed."""
    tensors = weights(1)
    save_small(repo / "model.safetensors", tensors)
    _commit(repo, "v1", "model.safetensors")
    tensors["layer.1.weight"][2, 3] *= -1
    save_small(repo / "model.safetensors", tensors)
    git(repo, "add", "model.safetensors")
    diff = git(repo, "diff", "--cached", "-U0").stdout.splitlines()
    # Lines starting with "#" are summaries (totals, stored bytes); every other line is one parameter group.
    changed = [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---") and line[1:2] != "#"]
    assert len(changed) == 2 and all(line[1:].startswith("layer.1.weight ") for line in changed), diff


def test_a_linked_worktree_and_a_separate_git_dir_use_the_repository_s_one_store(repo: Path, tmp_path: Path) -> None:
    """The filter reads its git dir from `.git` where git started it (git.common_dir_of_toplevel): a linked
    worktree's `.git` file and `commondir` lead to the main repository's store, and so does `--separate-git-dir`."""
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "side", str(linked))
    data = save_small(linked / "model.safetensors", weights(1))
    _commit(linked, "in the linked worktree", "model.safetensors")
    stored = store_files(repo)
    assert stored and not list((repo / ".git" / "worktrees").rglob("lfs"))
    (linked / "model.safetensors").unlink()
    git(linked, "checkout", "--", "model.safetensors")
    assert (linked / "model.safetensors").read_bytes() == data
    git(repo, "checkout", "side", "--", "model.safetensors")  # the main worktree, from the same store
    assert (repo / "model.safetensors").read_bytes() == data

    # git started from elsewhere with --git-dir/--work-tree exports GIT_DIR to the filter: git rev-parse decides
    (repo / "model.safetensors").unlink()
    git(tmp_path, f"--git-dir={repo / '.git'}", f"--work-tree={repo}", "checkout", "side", "--", "model.safetensors")
    assert (repo / "model.safetensors").read_bytes() == data

    separate = tmp_path / "separate"
    separate.mkdir()
    git(separate, "init", "-q", "--separate-git-dir", str(tmp_path / "separate.git"))
    theta(separate, "install", "--local")
    theta(separate, "track", "*.safetensors")
    data = save_small(separate / "model.safetensors", weights(2))
    _commit(separate, "v1", ".gitattributes", "model.safetensors")
    assert list((tmp_path / "separate.git" / "lfs" / "objects").rglob("*")) and not (separate / ".git").is_dir()
    (separate / "model.safetensors").unlink()
    git(separate, "checkout", "--", "model.safetensors")
    assert (separate / "model.safetensors").read_bytes() == data
