"""A dirty checkpoint is never lost to a merge: `git merge` refuses it up front, as git does for an ordinary file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from conftest import git
from hostile_support import BoundedResult, RepoState, assert_refused, run_bounded
from safetensors.numpy import load_file, save_file

from git_theta.merge import local_changes

MODEL = "model.safetensors"
GIT_REFUSES = "Your local changes to the following files would be overwritten by merge"


def _save(repo: Path, w: np.ndarray[Any, Any]) -> None:
    save_file({"w": w, "b": np.zeros(4, np.float32)}, repo / MODEL)


def _diverged(repo: Path) -> np.ndarray[Any, Any]:
    """main and `other` both changed tensor w since their base; returns main's w."""
    base = np.arange(16, dtype=np.float32).reshape(4, 4)
    _save(repo, base)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "other")
    _save(repo, base * 3)
    git(repo, "commit", "-q", "-am", "theirs")
    git(repo, "checkout", "-q", "main")
    _save(repo, base + 1)
    git(repo, "commit", "-q", "-am", "ours")
    return base + 1


def _merge(repo: Path) -> BoundedResult:
    # No controlling terminal (as in CI): with no policy the driver cannot prompt, so the merge would conflict.
    # Not a hostile input: the bound only keeps a hang from stalling the suite on a loaded machine.
    return run_bounded(["setsid", "git", "merge", "other", "-m", "merge other"], cwd=repo, max_seconds=300)


def _edit_uncommitted(repo: Path, ours: np.ndarray[Any, Any]) -> bytes:
    _save(repo, ours * -7)  # the user's work, not committed
    return (repo / MODEL).read_bytes()


def _assert_refused_and_kept(repo: Path, result: BoundedResult, edit: bytes, state: RepoState) -> None:
    assert GIT_REFUSES in result.stderr, result.describe()
    line = assert_refused(result, MODEL, exit_code=2)
    assert "uncommitted changes" in line and "merged" not in result.stderr.replace("Nothing was merged", "")
    assert not (repo / ".git" / "MERGE_HEAD").exists()
    assert (repo / MODEL).read_bytes() == edit
    state.assert_unchanged(repo, store_may_grow=True)  # git's own index refresh cleaned (stored) the edited file
    # The natural next step after a failed merge keeps the edit too.
    assert git(repo, "merge", "--abort", check=False).returncode != 0
    assert (repo / MODEL).read_bytes() == edit
    assert git(repo, "status", "--porcelain").stdout == f" M {MODEL}\n"


def test_a_merge_that_would_conflict_is_refused_and_the_edit_survives_merge_abort(repo: Path) -> None:
    ours = _diverged(repo)
    edit = _edit_uncommitted(repo, ours)
    state = RepoState.capture(repo)
    _assert_refused_and_kept(repo, _merge(repo), edit, state)


def test_a_merge_the_policy_resolves_is_refused_before_anything_is_merged(repo: Path) -> None:
    ours = _diverged(repo)
    git(repo, "config", "theta.merge.strategy", "average")
    edit = _edit_uncommitted(repo, ours)
    state = RepoState.capture(repo)
    _assert_refused_and_kept(repo, _merge(repo), edit, state)


def test_a_touched_but_unchanged_checkpoint_merges(repo: Path) -> None:
    """Only content counts: a new mtime on the committed bytes is not an uncommitted change."""
    ours = _diverged(repo)
    git(repo, "config", "theta.merge.strategy", "average")
    os.utime(repo / MODEL, (1, 1))
    result = _merge(repo)
    assert result.returncode == 0, result.describe()
    np.testing.assert_array_equal(
        load_file(repo / MODEL)["w"], ((ours + np.arange(16, dtype=np.float32).reshape(4, 4) * 3) / 2)
    )
    assert git(repo, "status", "--porcelain").stdout == ""


def test_worktree_differs_compares_content_not_stat(repo: Path) -> None:
    ours = _diverged(repo)
    committed = subprocess.run(["git", "show", f"HEAD:{MODEL}"], cwd=repo, capture_output=True, check=True).stdout
    assert not local_changes.worktree_differs(repo, MODEL, committed)
    os.utime(repo / MODEL, (1, 1))
    assert not local_changes.worktree_differs(repo, MODEL, committed)
    _edit_uncommitted(repo, ours)
    assert local_changes.worktree_differs(repo, MODEL, committed)
    (repo / MODEL).unlink()
    assert not local_changes.worktree_differs(repo, MODEL, committed)  # a deleted file holds nothing to lose


def test_checkout_m_carries_the_edit_into_a_merge_it_is_ours_not_a_loss(repo: Path) -> None:
    """`git checkout -m` merges the working tree itself (as ours): the edit is the merge's input, never refused."""
    ours = _diverged(repo)
    git(repo, "config", "theta.merge.strategy", "average")
    _edit_uncommitted(repo, ours)
    result = run_bounded(["setsid", "git", "checkout", "-m", "other"], cwd=repo, max_seconds=300)
    assert result.returncode == 0 and "uncommitted changes" not in result.stderr, result.describe()
    theirs = np.arange(16, dtype=np.float32).reshape(4, 4) * 3
    np.testing.assert_array_equal(load_file(repo / MODEL)["w"], (ours * -7 + theirs) / 2)
