"""The git wrapper's streaming call: chunks as git writes them, early stop, failures."""

from __future__ import annotations

import os
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


def _layouts(tmp_path: Path) -> dict[str, Path]:
    """A worktree top level of each layout git makes: a plain repository, a linked worktree, a separate git dir."""
    (tmp_path / "plain").mkdir()
    plain = repo_with_commits(tmp_path / "plain", 1)
    run_git(plain, "worktree", "add", "-q", str(tmp_path / "linked"))
    separate = tmp_path / "separate"
    separate.mkdir()
    run_git(separate, "init", "-q", "--separate-git-dir", str(tmp_path / "separate.git"))
    return {"plain": plain, "linked": tmp_path / "linked", "separate": separate}


def test_the_git_dir_read_from_dot_git_is_the_one_git_names(tmp_path: Path) -> None:
    layouts = _layouts(tmp_path)
    assert (layouts["linked"] / ".git").is_file() and (layouts["separate"] / ".git").is_file()
    for name, toplevel in layouts.items():
        found = git.common_dir_of_toplevel(toplevel)
        assert found is not None and found.resolve() == git.common_dir(toplevel).resolve(), name
    assert git.common_dir_of_toplevel(layouts["linked"]).resolve() == (layouts["plain"] / ".git").resolve()


def test_anything_uncertain_is_left_to_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "plain").mkdir()
    plain = repo_with_commits(tmp_path / "plain", 1)
    (plain / "sub").mkdir()
    assert git.common_dir_of_toplevel(plain / "sub") is None  # not the top level: git searches upwards
    assert git.common_dir_of_toplevel(tmp_path) is None  # no repository
    for text in (b"gitdir: nowhere\n", b"not a gitfile\n", b"gitdir: a\ngitdir: b\n", b"gitdir: " + b"x" * 5000):
        fake = tmp_path / f"fake{len(text)}"
        fake.mkdir()
        (fake / ".git").write_bytes(text)
        assert git.common_dir_of_toplevel(fake) is None, text
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / ".git")
    assert git.common_dir_of_toplevel(fifo) is None  # not read: opening it would wait for a writer
    half = tmp_path / "half"
    (half / ".git").mkdir(parents=True)
    (half / ".git" / "HEAD").write_text("ref: refs/heads/main\n")  # no objects, no refs: not a git dir
    assert git.common_dir_of_toplevel(half) is None
    monkeypatch.setenv("GIT_DIR", str(plain / ".git"))
    assert git.common_dir_of_toplevel(plain) is None  # git was pointed elsewhere: only git knows
