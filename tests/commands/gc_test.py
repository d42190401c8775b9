"""git theta gc: only objects nothing reaches go; refs, reflogs, index, stashes and git-lfs pointers keep theirs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import git, theta, unpushed_objects

from git_theta.repo import repository_store

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
    (repo / "weights.lfs").write_text(
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{lfs_oid}\nsize {len(lfs_data)}\n"
    )
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
    kept = theta(repo, "gc", "--dry-run").stdout  # default grace: written just now, kept, and said so
    assert (
        "0 unreachable" in kept
        and f"{len(staged)} more unreachable object(s) kept: modified in the last 3600 s" in kept
    )
    assert "more unreachable" not in gc(repo, "--dry-run")
    assert "unreachable object(s), freed" in gc(repo)
    assert local_objects(repo) == set()
    assert os.path.isdir(repo / ".git" / "lfs" / "objects")


def _age_store(repo: Path, seconds: int) -> None:
    """Every object as if written `seconds` ago (left from a version since deleted)."""
    then = time.time() - seconds
    for path in (repo / ".git" / "lfs" / "objects").glob("??/??/*"):
        os.utime(path, (then, then))


def _stage_as_git_add_does(repo: Path, path: str, metadata_text: str) -> None:
    """The second half of `git add`: git writes the filter's output as a blob and records it in the index."""
    blob = git(repo, "hash-object", "-w", "--stdin", input=metadata_text.encode()).stdout.strip()
    git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")


def test_gc_spares_old_objects_an_add_in_progress_reused(repo: Path, tmp_path: Path) -> None:
    write_model(repo / MODEL, tensors=3)
    with open(repo / MODEL, "rb") as model:
        subprocess.run(["git-theta", "clean", MODEL], cwd=repo, stdin=model, capture_output=True, check=True)
    stored = local_objects(repo)
    _age_store(repo, 2 * 3600)  # older than gc's default grace, referenced by nothing
    # `git add` of the same content: its clean filter finds every object already stored ...
    with open(repo / MODEL, "rb") as model:
        cleaned = subprocess.run(
            ["git-theta", "clean", MODEL], cwd=repo, stdin=model, capture_output=True, text=True, check=True
        ).stdout
    assert local_objects(repo) == stored
    # ... and a gc runs before git has written the index
    assert "0 unreachable" in theta(repo, "gc").stdout
    assert local_objects(repo) == stored
    _stage_as_git_add_does(repo, MODEL, cleaned)
    git(repo, "commit", "-q", "-m", "v1")
    theta(tmp_path, "install")  # globally, for the clone
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    assert (clone / MODEL).read_bytes() == (repo / MODEL).read_bytes()


def test_gc_keeps_what_the_index_and_pending_side_loads_reference(repo: Path) -> None:
    from git_theta.metadata import ParamEntry, StoredLink
    from git_theta.update_engine import pending

    write_model(repo / MODEL, tensors=2)
    git(repo, "add", MODEL)  # stage 0 of the index only
    staged = local_objects(repo)
    side_loaded = repository_store((repo / ".git").resolve()).put([b"an update object waiting for its clean filter"])[0]
    entry = ParamEntry("F32", (1,), "0" * 64, (StoredLink("dense", side_loaded, 45),))
    pending.write((repo / ".git").resolve(), MODEL, {"layer000.weight": entry})
    _age_store(repo, 2 * 3600)
    assert "0 unreachable" in theta(repo, "gc").stdout
    assert local_objects(repo) == staged | {side_loaded}
    pending.remove((repo / ".git").resolve(), MODEL)
    assert "1 unreachable object(s)" in theta(repo, "gc").stdout
    assert local_objects(repo) == staged


def test_gc_and_add_racing_lose_nothing(repo: Path) -> None:
    """gc with no grace at all, over and over, while `git add` reuses old objects: the commit checks out."""
    write_model(repo / MODEL, tensors=20)
    git(repo, "add", MODEL)
    git(repo, "rm", "-q", "--cached", MODEL)
    for _ in range(3):
        _age_store(repo, 2 * 3600)
        gc_loop = subprocess.Popen(
            ["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do git-theta gc >/dev/null || exit 1; done"], cwd=repo
        )
        git(repo, "add", MODEL)
        assert gc_loop.wait() == 0
        assert theta(repo, "fsck").returncode == 0
        git(repo, "rm", "-q", "--cached", MODEL)


def test_gc_keeps_every_stage_of_a_conflict(repo: Path) -> None:
    """A conflicted merge leaves the base, ours and theirs in the index (stages 1-3), nothing else has them."""
    lines = []
    for stage in (1, 2, 3):
        write_model(repo / MODEL, tensors=2, changed={0}, version=stage)
        with open(repo / MODEL, "rb") as model:
            text = subprocess.run(
                ["git-theta", "clean", MODEL], cwd=repo, stdin=model, capture_output=True, check=True
            ).stdout
        blob = git(repo, "hash-object", "-w", "--stdin", input=text).stdout.strip()
        lines.append(f"100644 {blob} {stage}\t{MODEL}\n")
    git(repo, "update-index", "--index-info", input="".join(lines).encode())
    assert len(git(repo, "ls-files", "--unmerged").stdout.splitlines()) == 3
    stored = local_objects(repo)
    assert len(stored) >= 4  # three versions of tensor 0, one of tensor 1 (and the file's header)
    assert "0 unreachable" in gc(repo)
    assert local_objects(repo) == stored


def _prune_as_old_git_lfs_does(repo: Path) -> None:
    """`git lfs prune` before git-lfs 3.5: it deletes every object no git-lfs pointer names. Run for real with
    such a git-lfs; a newer one keeps them (install's settings), so its effect is reproduced by hand."""
    if not _lfs_at_least(repo, 3, 5):
        git(repo, "lfs", "prune")
        assert local_objects(repo) == set(), "git lfs prune before 3.5 deletes every object no pointer names"
        return
    for path in (repo / ".git" / "lfs" / "objects").glob("??/??/*"):
        path.unlink()


def _lfs_at_least(repo: Path, major: int, minor: int) -> bool:
    version = git(repo, "lfs", "version").stdout.split()[0].removeprefix("git-lfs/").split(".")
    return (int(version[0]), int(version[1])) >= (major, minor)


def test_gc_deletes_unreachable_unpushed_objects_under_both_names(repo: Path) -> None:
    write_model(repo / MODEL, tensors=3)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "v1")
    v1 = objects_at(repo, "HEAD")
    write_model(repo / MODEL, tensors=3, changed={0, 1}, version=2)
    git(repo, "add", MODEL)
    git(repo, "rm", "-q", "--cached", MODEL)  # v2's objects: unreachable, and never pushed
    unreachable = local_objects(repo) - v1
    assert unreachable and unpushed_objects(repo) == v1 | unreachable
    _age_store(repo, 2 * 3600)
    _prune_as_old_git_lfs_does(repo)
    # The dry run sees the objects prune deleted (they live on under their second name) and changes nothing.
    dry = gc(repo, "--dry-run")
    assert all(f"would delete {oid} " in dry for oid in unreachable)
    assert f"{len(unreachable)} unreachable object(s)" in dry and f"{len(v1)} referenced" in dry
    assert local_objects(repo) == set() and unpushed_objects(repo) == v1 | unreachable
    out = gc(repo)
    assert f"{len(unreachable)} unreachable object(s)" in out
    # v1 was linked back into place (still only here); v2's objects are gone under both names.
    assert local_objects(repo) == v1 and unpushed_objects(repo) == v1
    assert theta(repo, "fsck").returncode == 0
    git(repo, "reset", "-q", "--hard")
    assert git(repo, "status", "--porcelain").stdout == ""
