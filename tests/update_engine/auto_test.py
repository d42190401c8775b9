"""Automatic deltas in the clean filter: smallest exact link, bounded chains, content-addressed bases."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import delete_object, git
from update_helpers import chain, checkout_bytes, commit, save, staged, weights

from git_theta import metadata, objects, packs, smudge
from git_theta.errors import StoreError
from git_theta.metadata import StoredLink
from git_theta.repo import repository_store
from git_theta.store import ObjectStore
from git_theta.update_engine import auto
from git_theta.update_engine.auto import MAX_CHAIN_DEPTH

SHAPES = {"a.weight": (96, 64), "b.weight": (64, 96), "a.bias": (96,)}


def _store_bytes(repo: Path) -> int:
    return sum(f.stat().st_size for f in (repo / ".git" / "lfs" / "objects").rglob("*") if f.is_file())


def _touch(rng: np.random.Generator, model: dict[str, np.ndarray], share: float) -> None:
    """Give `share` of each tensor's entries fresh random values (at least one entry)."""
    for array in model.values():
        flat = array.reshape(-1)
        picked = rng.choice(flat.size, max(1, int(flat.size * share)), replace=False)
        flat[picked] = rng.normal(0, 0.02, len(picked)).astype(flat.dtype)


def _smudged(repo: Path, rev: str) -> bytes:
    """What the smudge filter writes for `rev` (the same function `git checkout` runs), in process."""
    data = git(repo, "cat-file", "blob", f"{rev}:model.safetensors").stdout.encode()
    out = io.BytesIO()
    smudge.smudge(ObjectStore(repo / ".git" / "lfs"), "model.safetensors", data, out)
    return out.getvalue()


def test_one_percent_change_is_stored_sparse_and_costs_little(repo: Path) -> None:
    rng = np.random.default_rng(0)
    model = weights(rng, "F32", {f"l{i}.weight": (128, 128) for i in range(4)})
    save(repo / "model.safetensors", model)
    commit(repo, "v1")
    size, before = (repo / "model.safetensors").stat().st_size, _store_bytes(repo)
    _touch(rng, model, 0.01)
    save(repo / "model.safetensors", model)
    commit(repo, "v2")
    assert _store_bytes(repo) - before <= 0.03 * size
    assert {tuple(chain(staged(repo), name)) for name in model} == {("dense", "sparse")}
    assert checkout_bytes(repo, "HEAD") == (repo / "model.safetensors").read_bytes()


def test_bf16_gaussian_noise_costs_at_most_a_quarter(repo: Path) -> None:
    rng = np.random.default_rng(1)
    model = weights(rng, "BF16", {f"l{i}.weight": (128, 128) for i in range(4)})
    save(repo / "model.safetensors", model)
    commit(repo, "v1")
    size, before = (repo / "model.safetensors").stat().st_size, _store_bytes(repo)
    noisy = {
        n: (v.astype(np.float32) + rng.normal(0, 1e-5, v.shape).astype(np.float32)).astype(v.dtype)
        for n, v in model.items()
    }
    save(repo / "model.safetensors", noisy)
    commit(repo, "v2")
    assert _store_bytes(repo) - before <= 0.25 * size
    assert _smudged(repo, "HEAD") == (repo / "model.safetensors").read_bytes()


def test_twelve_commits_keep_chains_bounded_and_every_version_exact(repo: Path) -> None:
    """512 KB weights take two 1% sparse links before their read budget restarts the chain; a 1 KB bias one."""
    rng = np.random.default_rng(2)
    model = weights(rng, "F32", {"a.weight": (512, 256), "a.bias": (256,)})
    versions = []
    for step in range(12):
        if step:
            _touch(rng, model, 0.01)
        save(repo / "model.safetensors", model)
        commit(repo, f"v{step}")
        versions.append((repo / "model.safetensors").read_bytes())
    depths: dict[str, list[int]] = {name: [] for name in model}
    store = ObjectStore(repo / ".git" / "lfs")
    for back, expected in enumerate(reversed(versions)):
        for name, entry in staged(repo, rev=f"HEAD~{back}").items():
            links = entry["stored"]
            depths[name].insert(0, len(links))
            assert len(links) <= MAX_CHAIN_DEPTH
            stored = [link.get("length", link["size"]) for link in links]  # a pack member's bytes, or its object's
            assert sum(stored[1:]) <= stored[0]
            costs = [auto.read_cost(_decoded_bytes(store, link)) for link in links[1:]]
            dense = auto.read_cost(4 * int(np.prod(entry["shape"])))
            assert sum(costs) <= max(auto.CHAIN_READ_SHARE * dense, costs[0] if costs else 0)
        assert _smudged(repo, f"HEAD~{back}") == expected
    assert depths == {"a.weight": [1, 2, 3] * 4, "a.bias": [1, 2] * 6}
    (repo / "model.safetensors").unlink()
    assert checkout_bytes(repo, "HEAD~3") == versions[8]  # a deepest chain, through real git checkout
    assert checkout_bytes(repo, "HEAD") == versions[-1]


def _decoded_bytes(store: ObjectStore, link: dict) -> int:
    stored = StoredLink(link["update"], link["object"], link["size"], link.get("offset"), link.get("length"))
    header, _ = objects.read_header(packs.link_bytes(store, stored))
    return sum(sum(buf["chunk_bytes"]) for buf in header["buffers"])


def test_chain_restarts_dense_when_its_updates_outgrow_a_dense_copy(repo: Path) -> None:
    rng = np.random.default_rng(3)
    model = weights(rng, "F32", {"w": (128, 128)})
    kinds = []
    for step in range(4):
        if step:
            _touch(rng, model, 0.4)
        save(repo / "model.safetensors", model)
        commit(repo, f"v{step}")
        links = staged(repo)["w"]["stored"]
        assert sum(link["size"] for link in links[1:]) <= links[0]["size"]
        kinds.append(len(links))
    assert kinds[1] == 2 and 1 in kinds[2:]


def test_rebase_and_cherry_pick_of_commits_holding_updates(repo: Path) -> None:
    rng = np.random.default_rng(4)
    model = weights(rng, "F32", {**SHAPES, "c.weight": (512, 256)})  # c: big enough for a chain of two updates
    save(repo / "model.safetensors", model)
    commit(repo, "base model")
    git(repo, "checkout", "-q", "-b", "feature")
    for step in range(2):
        _touch(rng, model, 0.01)
        save(repo / "model.safetensors", model)
        commit(repo, f"fine-tune {step}")
    tuned = (repo / "model.safetensors").read_bytes()
    assert chain(staged(repo, rev="HEAD"), "c.weight") == ["dense", "sparse", "sparse"]
    git(repo, "checkout", "-q", "main")
    (repo / "notes.txt").write_text("unrelated\n")
    commit(repo, "notes", "notes.txt")
    git(repo, "checkout", "-q", "-b", "picked")
    git(repo, "cherry-pick", "feature~1", "feature")
    assert (repo / "model.safetensors").read_bytes() == tuned
    git(repo, "checkout", "-q", "feature")
    git(repo, "rebase", "-q", "main")
    assert (repo / "notes.txt").exists() and (repo / "model.safetensors").read_bytes() == tuned
    git(repo, "reset", "-q", "--soft", "main")  # squash both fine-tunes into one commit
    git(repo, "commit", "-q", "-m", "squashed")
    (repo / "model.safetensors").unlink()
    assert checkout_bytes(repo, "HEAD") == tuned
    assert git(repo, "status", "--porcelain").stdout == ""


def test_git_mv_and_copies_keep_building_on_stored_content(repo: Path) -> None:
    rng = np.random.default_rng(5)
    model = weights(rng, "F32", SHAPES)
    save(repo / "model.safetensors", model)
    commit(repo, "v1")
    first = staged(repo)
    git(repo, "mv", "model.safetensors", "moved.safetensors")
    git(repo, "commit", "-q", "-m", "rename")
    _touch(rng, model, 0.01)
    save(repo / "moved.safetensors", model)
    commit(repo, "tune after rename", "moved.safetensors")
    moved = staged(repo, "moved.safetensors")
    assert moved["a.weight"]["stored"][:1] == first["a.weight"]["stored"] and chain(moved, "a.weight") == [
        "dense",
        "sparse",
    ]
    shutil.copy(repo / "moved.safetensors", repo / "copy.safetensors")
    commit(repo, "copy", "copy.safetensors")
    copied = staged(repo, "copy.safetensors")
    assert {n: e["hash"] for n, e in copied.items()} == {n: e["hash"] for n, e in moved.items()}
    for name in ("moved.safetensors", "copy.safetensors"):
        (repo / name).unlink()
    assert checkout_bytes(repo, "HEAD", "moved.safetensors") == checkout_bytes(repo, "HEAD", "copy.safetensors")
    assert git(repo, "status", "--porcelain").stdout == ""


def test_missing_base_object_names_the_parameter_and_the_object(repo: Path) -> None:
    git(repo, "config", "theta.packs", "false")  # b.weight's base an object of its own, not a pack shared by all
    rng = np.random.default_rng(6)
    model = weights(rng, "F32", SHAPES)
    save(repo / "model.safetensors", model)
    commit(repo, "v1")
    _touch(rng, model, 0.01)
    save(repo / "model.safetensors", model)
    commit(repo, "v2")
    entry = metadata.parse(git(repo, "cat-file", "blob", "HEAD:model.safetensors").stdout.encode()).params["b.weight"]
    base_oid = entry.stored[0].object
    delete_object(repo, base_oid)
    store = repository_store((repo / ".git").resolve())  # the repository's own: it would link a kept one back
    (repo / "model.safetensors").unlink()
    result = git(repo, "checkout", "HEAD", "--", "model.safetensors", check=False)
    assert result.returncode != 0 and not (repo / "model.safetensors").exists()
    assert base_oid in result.stderr and "parameter 'b.weight'" in result.stderr, result.stderr
    with pytest.raises(StoreError) as missing:
        _smudged(repo, "HEAD")  # the smudge filter's own check, before any tensor is written
    assert base_oid in str(missing.value) and "'b.weight'" in str(missing.value)
    with pytest.raises(StoreError) as rebuilding:
        smudge.rebuild(store, "b.weight", entry, "model.safetensors")
    assert "parameter 'b.weight'" in str(rebuilding.value) and base_oid in str(rebuilding.value)
