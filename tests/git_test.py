"""The git wrapper's streaming call: chunks as git writes them, early stop, failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git as run_git

from git_theta import git
from git_theta.errors import GitError


def repo_with_commits(path: Path, count: int) -> Path:
    run_git(path, "init", "-q")
    for n in range(count):
        (path / "f").write_text(f"{n}\n")
        run_git(path, "add", "f")
        run_git(path, "commit", "-q", "-m", f"commit {n}")
    return path


def test_stream_gives_what_run_gives(tmp_path: Path) -> None:
    repo = repo_with_commits(tmp_path, 5)
    streamed = b"".join(git.stream("log", "--format=%H %s", cwd=repo, chunk_bytes=7))
    assert streamed == git.run("log", "--format=%H %s", cwd=repo).stdout
    assert streamed.count(b"\n") == 5


def test_stopping_early_ends_git_quietly(tmp_path: Path) -> None:
    repo = repo_with_commits(tmp_path, 3)
    chunks = git.stream("log", "-p", cwd=repo, chunk_bytes=16)
    assert len(next(chunks)) <= 16
    chunks.close()  # kills git; no error although it did not finish


def test_a_failure_raises_with_git_s_message(tmp_path: Path) -> None:
    repo = repo_with_commits(tmp_path, 1)
    with pytest.raises(GitError, match=r"(?s)command failed: git log no-such-rev.*exit code: 128.*no-such-rev"):
        list(git.stream("log", "no-such-rev", cwd=repo))
