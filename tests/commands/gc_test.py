"""git theta gc: only objects nothing reaches go; refs, reflogs, index, stashes and git-lfs pointers keep theirs."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from conftest import git, theta

sys.path.insert(0, str(Path(__file__).parent.parent / "transfer"))
from remote_support import local_objects, write_model  # noqa: E402

MODEL = "model.safetensors"


def objects_at(repo: Path, rev: str) -> set[str]:
    from git_theta import metadata

    data = git(repo, "show", f"{rev}:{MODEL}").stdout.encode()
    return metadata.parse(data).objects()


def gc(repo: Path, *args: str) -> str:
    return theta(repo, "gc", "--grace", "0", *args).stdout


def test_gc_keeps_everything_reachable_and_frees_the_rest(repo: Path) -> None:
    write_model(repo / MODEL, tensors=4)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "v1")
    v1 = objects_at(repo, "HEAD")
    # staged only (index), then stashed (refs/stash + reflog)
    write_model(repo / MODEL, tensors=4, changed={0}, version=2)
    git(repo, "add", MODEL)
    git(repo, "stash", "-q")
    stashed = objects_at(repo, "stash@{0}")
    # a branch that is then deleted: its objects are still in the HEAD reflog
    git(repo, "checkout", "-q", "-b", "experiment")
    write_model(repo / MODEL, tensors=4, changed={1}, version=3)
    git(repo, "commit", "-q", "-am", "experiment")
    experiment = objects_at(repo, "HEAD")
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-q", "-D", "experiment")
    # a stray object that nothing references (e.g. from a checkpoint added then replaced before committing)
    stray = repo / ".git" / "lfs" / "objects"
    data = b"not referenced by anything"
    oid = hashlib.sha256(data).hexdigest()
    (stray / oid[:2] / oid[2:4]).mkdir(parents=True, exist_ok=True)
    (stray / oid[:2] / oid[2:4] / oid).write_bytes(data)
    # a git-lfs pointer's object shares the store and must survive too
    lfs_data = b"an lfs object"
    lfs_oid = hashlib.sha256(lfs_data).hexdigest()
    (stray / lfs_oid[:2] / lfs_oid[2:4]).mkdir(parents=True, exist_ok=True)
    (stray / lfs_oid[:2] / lfs_oid[2:4] / lfs_oid).write_bytes(lfs_data)
    (repo / "weights.lfs").write_text(f"version https://git-lfs.github.com/spec/v1\noid sha256:{lfs_oid}\nsize {len(lfs_data)}\n")
    git(repo, "add", "weights.lfs")
    git(repo, "commit", "-q", "-m", "lfs pointer")

    out = gc(repo, "--dry-run")
    assert f"would delete {oid} ({len(data)} bytes)" in out and "1 unreachable object(s), would free 26 bytes" in out
    assert oid in local_objects(repo)
    out = gc(repo)
    assert "1 unreachable object(s), freed 26 bytes" in out
    assert local_objects(repo) == v1 | stashed | experiment | {lfs_oid}
    # once the reflogs and the stash are gone, their objects go too
    git(repo, "stash", "drop", "-q")
    git(repo, "reflog", "expire", "--expire=now", "--all")
    gc(repo)
    assert local_objects(repo) == v1 | {lfs_oid}
    assert theta(repo, "fsck").returncode == 0


def test_gc_keeps_objects_of_the_index_and_young_objects(repo: Path) -> None:
    write_model(repo / MODEL, tensors=3)
    git(repo, "add", MODEL)  # staged, never committed
    staged = local_objects(repo)
    assert staged and "0 unreachable" in gc(repo)
    assert local_objects(repo) == staged
    git(repo, "rm", "-q", "--cached", MODEL)
    assert "0 unreachable" in theta(repo, "gc").stdout  # default grace: written just now, kept
    assert "unreachable object(s), freed" in gc(repo)
    assert local_objects(repo) == set()
    assert os.path.isdir(repo / ".git" / "lfs" / "objects")
