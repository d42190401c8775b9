"""Test helpers for git-theta plugin authors (a pytest plugin; part of the compatibility promise, docs/plugins.md).

In a plugin package's top-level tests/conftest.py:

    pytest_plugins = ["git_theta.testing"]

or, in a conftest that is not the session's first (e.g. a test tree run inside a
larger suite, where pytest refuses `pytest_plugins`), import the fixture:

    from git_theta.testing import theta_repo  # noqa: F401

Then a test takes `theta_repo` (a fresh repository with `git theta install
--local` done, the user's git configuration shut out) and drives real git:

    def test_round_trip(theta_repo):
        track(theta_repo, "*.json")
        (theta_repo / "model.json").write_text(...)
        commit(theta_repo, "model.json", "v1")
        assert_round_trip(theta_repo, "model.json")

Everything runs the real `git` and the installed `git-theta` script: the filters
git starts import your plugin through its entry point, as a user's would.
"""

from __future__ import annotations

import os
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["GIT_ENV", "assert_round_trip", "checkout", "commit", "run", "theta_repo", "track"]

# A pinned author and dates (commit ids repeat between runs); no system-wide git config.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Plugin Tester",
    "GIT_AUTHOR_EMAIL": "plugin@example.com",
    "GIT_COMMITTER_NAME": "Plugin Tester",
    "GIT_COMMITTER_EMAIL": "plugin@example.com",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+00:00",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def run(repo: Path, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `command` (e.g. "git", "status") in `repo`; with `check`, a failure raises showing its output."""
    result = subprocess.run(list(command), cwd=repo, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def theta_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A new repository (branch main) with git-theta installed --local and nothing tracked yet.

    HOME and XDG_CONFIG_HOME point at an empty directory and GIT_CONFIG_NOSYSTEM is set, so neither the
    user's nor the machine's git configuration (hooks, filters, aliases) can change what the test sees."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    # git starts the `git-theta` script of this Python (not another on PATH, nor a version manager's shim).
    monkeypatch.setenv("PATH", sysconfig.get_path("scripts") + os.pathsep + os.environ.get("PATH", ""))
    path = tmp_path / "repo"
    path.mkdir()
    run(path, "git", "init", "-q", "-b", "main")
    run(path, "git-theta", "install", "--local")
    yield path


def track(repo: Path, *patterns: str) -> None:
    """`git theta track PATTERN...` and commit .gitattributes."""
    run(repo, "git-theta", "track", *patterns)
    run(repo, "git", "add", ".gitattributes")
    run(repo, "git", "commit", "-q", "-m", f"track {' '.join(patterns)}")


def commit(repo: Path, path: str, message: str) -> str:
    """`git add PATH` (the clean filter runs) and commit only it; returns the commit id."""
    run(repo, "git", "add", "--", path)
    run(repo, "git", "commit", "-q", "-m", message, "--only", "--", path)
    return run(repo, "git", "rev-parse", "HEAD").stdout.strip()


def checkout(repo: Path, rev: str, path: str) -> bytes:
    """`git checkout REV -- PATH` (the smudge filter runs); returns the file's bytes."""
    run(repo, "git", "checkout", rev, "--", path)
    return (repo / path).read_bytes()


def assert_round_trip(repo: Path, path: str) -> None:
    """The file at `path` comes back byte for byte after deleting it and checking it out from the index, and git
    then sees it unchanged (cleaning the rebuilt file gives the staged metadata)."""
    original = (repo / path).read_bytes()
    staged = run(repo, "git", "ls-files", "--stage", "--", path).stdout
    assert staged, f"{path} is not staged; commit or `git add` it first"
    (repo / path).unlink()
    run(repo, "git", "checkout", "--", path)
    rebuilt = (repo / path).read_bytes()
    assert rebuilt == original, (
        f"{path}: checkout gave {len(rebuilt)} bytes that differ from the {len(original)} committed"
    )
    os.utime(repo / path, (1, 1))  # a changed mtime makes git clean the file again instead of trusting its index
    changed = run(repo, "git", "status", "--porcelain", "--", path).stdout
    assert changed == "", f"{path}: git sees the rebuilt file as changed:\n{changed}"
