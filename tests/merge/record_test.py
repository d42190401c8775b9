"""record: `git theta merge` leaves a real merge (MERGE_HEAD) or refuses; checked with real git."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import git, theta
from safetensors.numpy import load_file, save_file

MODEL = "model.safetensors"


def commit_model(repo: Path, tensors: dict[str, np.ndarray], message: str) -> str:
    save_file(tensors, repo / MODEL)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").stdout.strip()


def branches(repo: Path) -> dict[str, np.ndarray]:
    """main and task0, task1, task2 each changed `w` differently from the base commit."""
    base = {"w": np.arange(4, dtype=np.float32)}
    commit_model(repo, base, "base")
    for index in range(3):
        git(repo, "checkout", "-q", "-b", f"task{index}", "main")
        commit_model(repo, {"w": base["w"] * (index + 2)}, f"task {index}")
    git(repo, "checkout", "-q", "main")
    return base


def parents(repo: Path) -> list[str]:
    return git(repo, "log", "--format=%P", "-1").stdout.split()


def ids(repo: Path, *revs: str) -> list[str]:
    return [git(repo, "rev-parse", rev).stdout.strip() for rev in revs]


def test_an_octopus_merge_records_head_and_every_input_as_parents(repo: Path) -> None:
    branches(repo)
    head = ids(repo, "HEAD")
    done = theta(repo, "merge", "task0", "task1", "task2", "--path", MODEL, "--strategy", "average")
    assert "records a merge of HEAD and 3 more parent(s)" in done.stderr
    assert "Merge task0, task1, task2" in (repo / ".git" / "MERGE_MSG").read_text()
    git(repo, "commit", "-q", "--no-edit")
    assert parents(repo) == head + ids(repo, "task0", "task1", "task2")
    for rev in ("task0", "task1", "task2"):
        assert git(repo, "merge-base", "--is-ancestor", rev, "HEAD", check=False).returncode == 0
    # a recorded merge is a merge for git too: the branches have nothing left to merge
    assert "Already up to date" in git(repo, "merge", "task1").stdout


def test_the_current_branch_must_be_an_input_when_it_has_its_own_changes(repo: Path) -> None:
    base = branches(repo)
    own = commit_model(repo, {"w": base["w"] - 1}, "main's own change")
    refused = theta(repo, "merge", "task0", "task1", "--path", MODEL, "--strategy", "average", check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert (
        "git-theta: error: the current branch (main) is not among the revisions and none of them contains it"
        in refused.stderr
    )
    assert "git theta merge HEAD task0 task1" in refused.stderr
    np.testing.assert_array_equal(load_file(repo / MODEL)["w"], base["w"] - 1)
    assert not (repo / ".git" / "MERGE_HEAD").exists() and git(repo, "status", "--porcelain").stdout == ""
    theta(repo, "merge", "HEAD", "task0", "--path", MODEL, "--strategy", "average")
    np.testing.assert_array_equal(load_file(repo / MODEL)["w"], (base["w"] - 1 + base["w"] * 2) / 2)
    assert (repo / ".git" / "MERGE_HEAD").read_text() == ids(repo, "task0")[0] + "\n"
    again = theta(repo, "merge", "HEAD", "task1", "--path", MODEL, "--strategy", "average", "--force", check=False)
    assert again.returncode == 1 and "a merge is in progress" in again.stderr
    git(repo, "merge", "--abort")
    assert not (repo / ".git" / "MERGE_HEAD").exists() and git(repo, "status", "--porcelain").stdout == ""
    np.testing.assert_array_equal(load_file(repo / MODEL)["w"], base["w"] - 1)
    theta(repo, "merge", "main", "task1", "--path", MODEL, "--strategy", "average")
    git(repo, "commit", "-q", "--no-edit")
    assert parents(repo) == [own, *ids(repo, "task1")]


def test_an_input_that_changed_other_files_is_refused_by_name(repo: Path) -> None:
    branches(repo)
    git(repo, "checkout", "-q", "task1")
    (repo / "README.md").write_text("task 1 notes\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "notes")
    git(repo, "checkout", "-q", "main")
    refused = theta(repo, "merge", "task0", "task1", "--path", MODEL, "--strategy", "average", check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert (
        "git-theta: error: task1 also changed README.md; recording it as merged would drop those changes"
        in refused.stderr
    )
    assert git(repo, "status", "--porcelain").stdout == "" and not (repo / ".git" / "MERGE_HEAD").exists()
