"""git theta checkout: streams checkpoints into the working tree; a killed run leaves nothing git would see."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
from conftest import git, theta
from hostile_support import tmpfs
from safetensors.numpy import save_file

from git_theta.files import STALE_SECONDS

MODEL = "model.safetensors"


def _big_model(path: Path, megabytes: int = 96) -> None:
    rng = np.random.default_rng(0)
    save_file({f"layer{i}": rng.standard_normal(1 << 18, dtype=np.float32) for i in range(megabytes)}, str(path))


def _temp_files(repo: Path, worktree: Path | None = None) -> list[Path]:
    """Every temp file of ours, wherever a run may have put it."""
    return sorted([*(repo / ".git" / "lfs" / "tmp").glob("*theta-*"), *(worktree or repo).glob(".*theta-*")])


def _kill_when_a_temp_file_appears(
    args: list[str], cwd: Path, stdin: Path | None = None, repo: Path | None = None
) -> list[Path]:
    with open(stdin or os.devnull, "rb") as source:
        process = subprocess.Popen(args, cwd=cwd, stdin=source, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not _temp_files(repo or cwd, cwd) and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.001)
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait()
    assert process.returncode == -signal.SIGKILL, "the command ended before it could be killed mid-write"
    return _temp_files(repo or cwd, cwd)


def _age(paths: list[Path], seconds: float) -> None:
    then = time.time() - seconds
    for path in paths:
        os.utime(path, (then, then))


def test_a_killed_checkout_leaves_nothing_for_git_and_the_next_run_cleans_up(repo: Path) -> None:
    _big_model(repo / MODEL)
    want = (repo / MODEL).read_bytes()
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "big")
    (repo / MODEL).unlink()
    subprocess.run(
        ["git", "checkout", "--", MODEL], cwd=repo, env=os.environ | {"GIT_THETA_SKIP_SMUDGE": "1"}, check=True
    )
    left = _kill_when_a_temp_file_appears(["git-theta", "checkout"], repo)
    assert left, "the killed checkout was writing no temp file"
    assert git(repo, "status", "--porcelain", "--untracked-files=all").stdout == ""
    git(repo, "add", "-A")
    assert git(repo, "diff", "--cached", "--name-only").stdout == ""
    # its writer is dead, here: the filter process that `git status` started has removed it already
    assert _temp_files(repo) == []
    theta(repo, "checkout")
    assert (repo / MODEL).read_bytes() == want
    assert _temp_files(repo) == []


def test_temp_files_of_a_killed_filter_go_when_the_next_filter_starts(repo: Path) -> None:
    _big_model(repo / "small.safetensors", megabytes=1)
    git(repo, "add", "small.safetensors")
    _big_model(repo / MODEL, megabytes=48)
    left = _kill_when_a_temp_file_appears(["git-theta", "clean", MODEL], repo, stdin=repo / MODEL)
    assert left
    _age(left, STALE_SECONDS + 60)
    (repo / "small.safetensors").unlink()
    git(repo, "checkout", "--", "small.safetensors")  # a smudge: every object is there, nothing is written
    assert _temp_files(repo) == []


def test_temp_files_of_a_killed_filter_go_at_the_next_write(repo: Path) -> None:
    _big_model(repo / MODEL, megabytes=48)
    left = _kill_when_a_temp_file_appears(["git-theta", "clean", MODEL], repo, stdin=repo / MODEL)
    assert left and all("theta-" in p.name for p in left)
    _age(left, STALE_SECONDS + 60)
    live = repo / ".git" / "lfs" / "tmp" / f"theta-{os.getpid()}-abcdefgh"  # a live writer's (this test's pid)
    live.write_bytes(b"still being written")
    _age([live], STALE_SECONDS + 60)
    git(repo, "add", MODEL)
    assert _temp_files(repo) == [live]
    assert theta(repo, "fsck").returncode == 0


def test_a_worktree_on_another_file_system_hides_its_temp_files_from_git(repo: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", 160) as disk:
        _big_model(repo / MODEL, megabytes=48)
        want = (repo / MODEL).read_bytes()
        git(repo, "add", MODEL)
        git(repo, "commit", "-q", "-m", "big")
        worktree = disk / "wt"
        subprocess.run(
            ["git", "worktree", "add", "-q", "-b", "other", str(worktree)],
            cwd=repo,
            check=True,
            env=os.environ | {"GIT_THETA_SKIP_SMUDGE": "1"},
        )
        left = _kill_when_a_temp_file_appears(["git-theta", "checkout"], worktree, repo=repo)
        assert left and all(p.parent == worktree for p in left), left  # .git is on another file system
        assert git(worktree, "status", "--porcelain", "--untracked-files=all").stdout == ""
        _age(left, STALE_SECONDS + 60)
        theta(worktree, "checkout")
        assert (worktree / MODEL).read_bytes() == want
        assert _temp_files(repo, worktree) == []
        theta(worktree, "checkout")  # the exclude line is written once
        assert (repo / ".git" / "info" / "exclude").read_text().count(".*.theta-*") == 1


def test_a_lock_left_by_a_killed_git_is_named_and_after_git_s_recovery_the_checkout_completes(repo: Path) -> None:
    _big_model(repo / MODEL, megabytes=1)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "model")
    (repo / MODEL).unlink()
    subprocess.run(
        ["git", "checkout", "--", MODEL], cwd=repo, env=os.environ | {"GIT_THETA_SKIP_SMUDGE": "1"}, check=True
    )
    lock = repo / ".git" / "index.lock"
    lock.write_bytes(b"")  # what a SIGKILLed `git update-index` leaves
    failed = theta(repo, "checkout", check=False)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert failed.stderr.count("\n") == 1 and str(lock) in failed.stderr
    lock.unlink()
    theta(repo, "checkout")  # the file was written by the failed run; this one refreshes git's index
    assert git(repo, "status", "--porcelain").stdout == ""
