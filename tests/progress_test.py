"""The progress bar: only on a terminal, only for large checkpoints, never when quiet; and through a real `git add`."""

from __future__ import annotations

import io
import os
import pty
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import git

from git_theta import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_bar(stream: io.StringIO, total: int) -> str:
    with progress.Progress("git-theta: storing m", total, stream) as bar:
        for _ in range(4):
            bar.advance(total // 4)
    return stream.getvalue()


def test_draws_on_a_terminal_for_large_files() -> None:
    out = run_bar(Terminal(), progress.MIN_BYTES)
    assert out.startswith("\rgit-theta: storing m ") and out.endswith("\n")
    assert "100% [########################] 64.0/64.0 MiB" in out


def test_silent_under_a_git_pager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_PAGER_IN_USE", "true")  # `git log -p` smudging versions for textconv
    assert run_bar(Terminal(), progress.MIN_BYTES * 2) == ""


def test_silent_off_terminal_for_small_files_and_when_quiet() -> None:
    assert run_bar(io.StringIO(), progress.MIN_BYTES * 2) == ""
    assert run_bar(Terminal(), progress.MIN_BYTES - 1) == ""
    progress.set_quiet()
    try:
        assert run_bar(Terminal(), progress.MIN_BYTES * 2) == ""
    finally:
        progress.set_quiet(False)


def run_with_stderr_on_a_pty(repo: Path, *args: str) -> str:
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            ["git", *args], cwd=repo, stdout=subprocess.DEVNULL, stderr=follower, stdin=subprocess.DEVNULL
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the writer side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert result.returncode == 0
        return b"".join(chunks).decode(errors="replace")
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)


@pytest.mark.skipif(not hasattr(pty, "openpty"), reason="needs a pseudo-terminal")
def test_git_add_and_checkout_of_minilm_show_progress_on_a_terminal(repo: Path, minilm: Path) -> None:
    shutil.copy(minilm, repo / "model.safetensors")  # 87 MiB: above MIN_BYTES
    added = run_with_stderr_on_a_pty(repo, "add", "model.safetensors")
    assert "git-theta: storing model.safetensors" in added and "100% [" in added
    git(repo, "commit", "-q", "-m", "v1")
    (repo / "model.safetensors").unlink()
    restored = run_with_stderr_on_a_pty(repo, "checkout", "--", "model.safetensors")
    assert "git-theta: writing model.safetensors" in restored and "100% [" in restored
    # Not a terminal: nothing on stderr.
    (repo / "model.safetensors").unlink()
    assert git(repo, "checkout", "--", "model.safetensors").stderr == ""


@pytest.mark.skipif(not hasattr(pty, "openpty"), reason="needs a pseudo-terminal")
def test_theta_progress_false_silences_both_kinds_of_filter(repo: Path, minilm: Path) -> None:
    git(repo, "config", "theta.progress", "off")  # any spelling of false git accepts
    shutil.copy(minilm, repo / "model.safetensors")
    assert "git-theta" not in run_with_stderr_on_a_pty(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "v1")
    (repo / "model.safetensors").unlink()
    assert "git-theta" not in run_with_stderr_on_a_pty(repo, "checkout", "--", "model.safetensors")
    # Without filter.theta.process git runs the one-shot `git-theta smudge %f` per file.
    git(repo, "config", "--unset", "filter.theta.process")
    (repo / "model.safetensors").unlink()
    assert "git-theta" not in run_with_stderr_on_a_pty(repo, "checkout", "--", "model.safetensors")
    git(repo, "config", "theta.progress", "true")
    (repo / "model.safetensors").unlink()
    assert "100% [" in run_with_stderr_on_a_pty(repo, "checkout", "--", "model.safetensors")
