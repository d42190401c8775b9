"""git theta merge: N-way merges of revisions, written to the working tree and staged."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
from conftest import git, theta
from safetensors.numpy import load_file, save_file

from git_theta.merge.strategies.ties import TiesStrategy

MODEL = "model.safetensors"


def commit_model(repo: Path, tensors: dict[str, np.ndarray], message: str) -> None:
    save_file(tensors, repo / MODEL)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", message)


def three_tasks(repo: Path) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(8)
    base = {
        "w": rng.normal(size=(6, 5)).astype(np.float32),
        "b": np.zeros(5, np.float32),
        "frozen": np.ones(2, np.float32),
    }
    commit_model(repo, base, "base")
    tasks = []
    for index in range(3):
        git(repo, "checkout", "-q", "-b", f"task{index}", "main")
        task = dict(base, w=base["w"] + rng.normal(size=(6, 5)).astype(np.float32), b=base["b"] + np.float32(index))
        commit_model(repo, task, f"task {index}")
        tasks.append(task)
    git(repo, "checkout", "-q", "main")
    return base, tasks


def test_octopus_ties_merge_of_three_branches(repo: Path) -> None:
    base, tasks = three_tasks(repo)
    result = theta(repo, "merge", "task0", "task1", "task2", "--path", MODEL, "--strategy", "ties", "--arg", "k=0.5")
    assert "merged and staged" in result.stderr and "2 computed" in result.stderr
    assert git(repo, "status", "--porcelain").stdout == "M  model.safetensors\n"
    merged = load_file(repo / MODEL)
    for name in ("w", "b"):
        expected = TiesStrategy().merge(
            [t[name].astype(np.float64) for t in tasks], base[name].astype(np.float64), {"k": 0.5, "lambda": 1.0}, name
        )
        np.testing.assert_array_equal(merged[name], expected.astype(np.float32))
    np.testing.assert_array_equal(merged["frozen"], base["frozen"])
    git(repo, "commit", "-q", "-m", "ties of three tasks")
    produced = (repo / MODEL).read_bytes()
    (repo / MODEL).unlink()
    git(repo, "checkout", "--", MODEL)
    assert (repo / MODEL).read_bytes() == produced


def test_explicit_base_and_no_base(repo: Path) -> None:
    base, tasks = three_tasks(repo)
    theta(repo, "merge", "task0", "task1", "--path", MODEL, "--base", "task2", "--strategy", "task-arithmetic")
    merged = load_file(repo / MODEL)
    expected = tasks[2]["w"].astype(np.float64) + sum(t["w"].astype(np.float64) - tasks[2]["w"] for t in tasks[:2])
    np.testing.assert_array_equal(merged["w"], expected.astype(np.float32))
    git(repo, "reset", "-q", "--hard")
    # unrelated histories: no merge base, so an average still works and a task-vector method says why not
    git(repo, "checkout", "-q", "--orphan", "lonely")
    commit_model(repo, dict(base, w=base["w"] * 2), "unrelated")
    theta(repo, "merge", "lonely", "task0", "--path", MODEL, "--strategy", "average")
    np.testing.assert_array_equal(
        load_file(repo / MODEL)["w"], ((base["w"] * 2.0 + tasks[0]["w"].astype(np.float64)) / 2).astype(np.float32)
    )
    git(repo, "reset", "-q", "--hard")
    failed = theta(repo, "merge", "lonely", "task0", "--path", MODEL, "--strategy", "ties", check=False)
    assert (
        failed.returncode == 1
        and "has no merge-base version (added on several sides); strategy 'ties' needs one" in failed.stderr
    )


def test_usage_errors(repo: Path) -> None:
    three_tasks(repo)
    save_file({"w": np.zeros(1, np.float32)}, repo / MODEL)
    dirty = theta(repo, "merge", "task0", "task1", "--path", MODEL, "--strategy", "average", check=False)
    assert (
        dirty.returncode == 1
        and "model.safetensors has uncommitted changes; commit or stash them first" in dirty.stderr
    )
    assert load_file(repo / MODEL)["w"].shape == (1,)
    git(repo, "checkout", "--", MODEL)
    assert "give two or more revisions" in theta(repo, "merge", "task0", "--path", MODEL, check=False).stderr
    assert (
        "no such file"
        in theta(repo, "merge", "task0", "nope", "--path", MODEL, "--strategy", "ours", check=False).stderr
    )
    assert (
        "has no argument 'x'"
        in theta(
            repo, "merge", "task0", "task1", "--path", MODEL, "--strategy", "ties", "--arg", "x=1", check=False
        ).stderr
    )
    redo = theta(repo, "merge", "--redo", MODEL, "--strategy", "ours", check=False)
    assert redo.returncode == 1 and ":2:model.safetensors: no such file" in redo.stderr
    assert "### `ties`" in theta(repo, "merge", "--list-strategies").stdout


def conflicted(repo: Path) -> dict[str, np.ndarray]:
    """main and other both changed the one tensor of the model; `git merge other` stopped in a conflict.
    Returns the base version."""
    base = {"w": np.arange(6, dtype=np.float32)}
    commit_model(repo, base, "base")
    git(repo, "checkout", "-q", "-b", "other")
    commit_model(repo, {"w": base["w"] * 3}, "theirs")
    git(repo, "checkout", "-q", "main")
    commit_model(repo, {"w": base["w"] + 1}, "ours")
    conflict = subprocess.run(
        ["git", "merge", "other"],
        cwd=repo,
        capture_output=True,
        text=True,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    assert conflict.returncode == 1 and "CONFLICT" in conflict.stdout
    return base


def test_redo_never_overwrites_an_edit_made_after_the_conflict_without_force(repo: Path) -> None:
    base = conflicted(repo)
    save_file({"w": base["w"] * -7}, repo / MODEL)  # the user works on the conflicted file
    edit = (repo / MODEL).read_bytes()
    refused = theta(repo, "merge", "--redo", MODEL, "--strategy", "average", check=False)
    assert refused.returncode == 1 and refused.stderr.count("git-theta:") == 1, refused.stderr
    assert (
        f"git-theta: error: {MODEL}: the working-tree file has changes that are not in the merge's 'ours' version"
        in refused.stderr
    )
    assert "--force" in refused.stderr and (repo / MODEL).read_bytes() == edit
    assert git(repo, "status", "--porcelain").stdout == f"UU {MODEL}\n"
    forced = theta(repo, "merge", "--redo", MODEL, "--strategy", "average", "--force")
    backups = list((repo / ".git" / "theta" / "backup").iterdir())
    assert len(backups) == 1 and backups[0].read_bytes() == edit and str(backups[0]) in forced.stderr
    np.testing.assert_array_equal(load_file(repo / MODEL)["w"], (base["w"] + 1 + base["w"] * 3) / 2)
    assert git(repo, "status", "--porcelain").stdout == f"M  {MODEL}\n"


def test_redo_right_after_the_conflict_needs_no_force(repo: Path) -> None:
    """The conflict leaves our version in the working tree: that is not an edit (stat differs from no stage 0)."""
    base = conflicted(repo)
    theta(repo, "merge", "--redo", MODEL, "--strategy", "theirs")
    np.testing.assert_array_equal(load_file(repo / MODEL)["w"], base["w"] * 3)
    assert not (repo / ".git" / "theta" / "backup").exists()


def test_redo_over_a_file_that_is_no_longer_a_checkpoint_is_refused_in_one_line(repo: Path) -> None:
    conflicted(repo)
    (repo / MODEL).write_bytes(b"notes saved over the model by mistake\n")
    refused = theta(repo, "merge", "--redo", MODEL, "--strategy", "average", check=False)
    assert refused.returncode == 1 and refused.stderr.count("git-theta:") == 1, refused.stderr
    assert "not in the merge's 'ours' version" in refused.stderr
    assert (repo / MODEL).read_bytes() == b"notes saved over the model by mistake\n"


def test_a_touched_but_unchanged_checkpoint_is_no_uncommitted_change(repo: Path) -> None:
    three_tasks(repo)
    os.utime(repo / MODEL, (1, 1))
    theta(repo, "merge", "task0", "task1", "--path", MODEL, "--strategy", "average")
    assert git(repo, "status", "--porcelain").stdout == f"M  {MODEL}\n"


def test_per_model_values_name_the_revisions_as_given_and_head(repo: Path) -> None:
    """`ours` is the first revision, `HEAD` whichever revision is the current commit (here the second)."""
    from git_theta.merge.revisions import version_context
    from git_theta.metadata import Metadata

    three_tasks(repo)
    git(repo, "checkout", "-q", "task1")
    versions: list[Metadata | None] = [Metadata("safetensors", {}, {})]
    context = version_context(["task0", "task1", "task2"], versions, None, repo, redo=False)
    assert context.versions() == {"ours": 0, "HEAD": 1, "task0": 0, "task1": 1, "task2": 2}
    git(repo, "checkout", "-q", "main")
    assert "HEAD" not in version_context(["task0", "task1"], versions, None, repo, redo=False).versions()
