"""kill -9 at random points of add, checkout, `git theta checkout`, push and fetch: nothing committed is lost.

Each command is run once unkilled to measure it; each seed then kills the whole process group (git, the filter
process, the pre-push hook) at a seeded fraction of that duration. Afterwards `git theta fsck` passes (a fetch may
only lack objects it had not downloaded yet), the same command run again completes, every committed version checks
out byte-identical, `git status` shows nothing stray and the store holds only whole objects, no temp files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "transfer"))
from fault_support import (  # noqa: E402
    MODEL,
    SEEDS,
    Models,
    a_clone,
    assert_checks_out,
    assert_fsck_ok,
    assert_server_whole,
    assert_status,
    assert_whole,
    assert_worktree_file,
    clear_git_lock,
    committed,
    fsck_problems,
    init_repo,
    kill_after,
    kill_delay,
    measured,
    publisher,
    run,
    sha256_file,
    timed,
    wipe,
)
from lfs_server import LfsServer  # noqa: E402

# -- git add (the clean filter under git) -------------------------------------------------------------------------


def prepare_add(root: Path, models: Models) -> Path:
    repo = committed(init_repo(root), models, 1)
    models.place(repo, 2)
    return repo


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_git_add(seed: int, tmp_path: Path, models: Models) -> None:
    add = ["git", "add", MODEL]
    duration = measured("add", lambda: timed(add, prepare_add(tmp_path / "measure", models)))
    repo = prepare_add(tmp_path / "repo", models)
    kill_after(add, repo, kill_delay(seed, duration))
    clear_git_lock(repo)
    assert_fsck_ok(repo)
    run(add, repo)  # the retry
    run(["git", "commit", "-q", "-m", "v2"], repo)
    assert_status(repo)
    assert_checks_out(repo, "v1", models.sha(1))
    assert_checks_out(repo, "HEAD", models.sha(2))
    assert_worktree_file(repo, models.sha(2))
    assert_whole(repo)


# -- git checkout (the smudge filter under git) -------------------------------------------------------------------


def prepare_checkout(root: Path, models: Models) -> Path:
    return committed(init_repo(root), models, 1, 2)


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_git_checkout(seed: int, tmp_path: Path, models: Models) -> None:
    checkout = ["git", "checkout", "-q", "v1"]
    duration = measured("checkout", lambda: timed(checkout, prepare_checkout(tmp_path / "measure", models)))
    repo = prepare_checkout(tmp_path / "repo", models)
    kill_after(checkout, repo, kill_delay(seed, duration))
    clear_git_lock(repo)
    assert_fsck_ok(repo)
    retry = run(checkout, repo, check=False)
    if retry.returncode != 0:
        # git writes the working tree before the index: killed in between, the file is (part of) v1 while the
        # index still says v2, and git refuses to overwrite that "local change" (as for any file, filter or not).
        # Nothing committed is at stake; git's own repair is a forced checkout.
        assert "Your local changes to the following files would be overwritten" in retry.stderr, retry.stderr
        assert_status(repo, f" M {MODEL}\n")
        run(["git", "checkout", "-q", "-f", "v1"], repo)
    assert_status(repo)
    assert_worktree_file(repo, models.sha(1))
    assert_checks_out(repo, "v2", models.sha(2))
    assert_whole(repo)


# -- git theta checkout (streams into the working tree itself) ----------------------------------------------------


def prepare_theta_checkout(root: Path, models: Models) -> Path:
    repo = committed(init_repo(root), models, 1, 2)
    (repo / MODEL).unlink()
    # the metadata text in the working tree, as a clone with GIT_THETA_SKIP_SMUDGE=1 leaves it
    run(["git", "checkout", "--", MODEL], repo, env=_env(GIT_THETA_SKIP_SMUDGE="1"))
    assert (repo / MODEL).stat().st_size < 1 << 20
    return repo


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_git_theta_checkout(seed: int, tmp_path: Path, models: Models) -> None:
    checkout = ["git-theta", "checkout"]
    duration = measured("theta checkout", lambda: timed(checkout, prepare_theta_checkout(tmp_path / "measure", models)))
    repo = prepare_theta_checkout(tmp_path / "repo", models)
    kill_after(checkout, repo, kill_delay(seed, duration))
    assert_fsck_ok(repo)
    if (repo / ".git" / "index.lock").exists():
        # the kill hit the `git update-index` it runs: a retry says so in one line, and git's own recovery
        # (remove the lock, as git's message says) lets the next retry complete
        failed = subprocess.run(checkout, cwd=repo, capture_output=True, text=True)
        assert failed.returncode == 1 and "index.lock" in failed.stderr and "Traceback" not in failed.stderr, (
            failed.stderr
        )
        assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
        clear_git_lock(repo)
    run(checkout, repo)
    assert_worktree_file(repo, models.sha(2))
    assert_status(repo)  # a killed run's temp file beside the checkpoint would show as untracked here
    assert_checks_out(repo, "v1", models.sha(1))
    assert_whole(repo)


# -- git push to a real LFS server (the pre-push hook uploads) ----------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_git_push(seed: int, tmp_path: Path, models: Models, lfs_server: LfsServer) -> None:
    push = ["git", "push", "-q", "origin", "main"]
    (tmp_path / "measure").mkdir()
    duration = measured("push", lambda: timed(push, publisher(tmp_path / "measure", models, lfs_server, (1, 2))[1]))
    wipe(lfs_server)
    (tmp_path / "case").mkdir()
    origin, alice = publisher(tmp_path / "case", models, lfs_server, (1, 2))
    kill_after(push, alice, kill_delay(seed, duration))
    assert_fsck_ok(alice)
    # giftless's local storage writes an upload in place, so a killed PUT leaves a short file there: the
    # server's doing; the retry must repair it (the batch answer asks again for an object of the wrong size)
    run(push, alice)
    assert_server_whole(lfs_server)
    assert_status(alice)
    assert_whole(alice)
    bob = a_clone(tmp_path, origin, "bob")
    run(["git", "checkout", "-q", "main"], bob)  # downloads what it needs from the server
    assert_worktree_file(bob, models.sha(2))
    assert_checks_out(bob, "HEAD~1", models.sha(1))
    assert_status(bob)
    assert_fsck_ok(bob)
    assert_whole(bob)


# -- git theta fetch from a real LFS server ------------------------------------------------------------------------


def prepare_fetch(root: Path, models: Models, server: LfsServer) -> Path:
    if not (root / "origin.git").exists():
        origin, alice = publisher(root, models, server, (1, 2))
        run(["git", "push", "-q", "origin", "main"], alice)
    name = f"bob{len(list(root.glob('bob*')))}"
    return a_clone(root, root / "origin.git", name)


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_git_theta_fetch(seed: int, tmp_path: Path, models: Models, lfs_server: LfsServer) -> None:
    fetch = ["git-theta", "fetch", "--all"]
    duration = measured("fetch", lambda: timed(fetch, prepare_fetch(tmp_path, models, lfs_server)))
    bob = prepare_fetch(tmp_path, models, lfs_server)
    kill_after(fetch, bob, kill_delay(seed, duration))
    # objects not downloaded yet are missing, and fsck says so; nothing else may be wrong
    assert all(" is missing from " in problem for problem in fsck_problems(bob)), fsck_problems(bob)
    run(fetch, bob)
    assert_fsck_ok(bob)
    assert_whole(bob)
    run(["git", "checkout", "-q", "main"], bob)
    assert_worktree_file(bob, models.sha(2))
    assert_checks_out(bob, "HEAD~1", models.sha(1))
    assert_status(bob)


# -- git clone, whose checkout downloads the objects it needs -----------------------------------------------------


def published(root: Path, models: Models, server: LfsServer) -> Path:
    """origin (and the server) with v1 and v2; git-theta installed globally, so a clone's checkout smudges."""
    if not (root / "origin.git").exists():
        run(["git-theta", "install"], root)
        origin, alice = publisher(root, models, server, (1, 2))
        run(["git", "push", "-q", "origin", "main"], alice)
    return root / "origin.git"


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_git_clone(seed: int, tmp_path: Path, models: Models, lfs_server: LfsServer) -> None:
    origin = published(tmp_path, models, lfs_server)
    clone = ["git", "clone", "-q", str(origin), "bob"]
    duration = measured("clone", lambda: timed([*clone[:-1], "measured"], tmp_path))
    bob = tmp_path / "bob"
    kill_after(clone, tmp_path, kill_delay(seed, duration))
    if (bob / ".git" / "lfs" / "objects").is_dir():
        # what the killed clone downloaded is whole (its temp files go with the folder)
        for path in (bob / ".git" / "lfs" / "objects").glob("??/??/*"):
            assert sha256_file(path) == path.name, f"a killed clone left a partial object {path}"
    # git's own answer to a killed clone: the folder is not a finished clone, so remove it and clone again
    shutil.rmtree(bob, ignore_errors=True)
    run(clone, tmp_path)
    assert_worktree_file(bob, models.sha(2))
    assert_checks_out(bob, "HEAD~1", models.sha(1))
    assert_status(bob)
    assert_fsck_ok(bob)
    assert_whole(bob)
