"""Fixtures for the plugin's own tests: a real git repo with git-theta installed and *.json tracked.

git-theta's root tests/conftest.py is not visible from here, so this file
isolates git the same way: an empty HOME per test and a pinned author.
This directory is a package (it has an __init__.py) so that this conftest is
imported as `tests.conftest` and never shadows git-theta's own `conftest`
module when both test trees run in one pytest session.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Plugin Tester",
    "GIT_AUTHOR_EMAIL": "plugin@example.com",
    "GIT_COMMITTER_NAME": "Plugin Tester",
    "GIT_COMMITTER_EMAIL": "plugin@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def run(repo: Path, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command in `repo`; a failure shows its output."""
    result = subprocess.run(list(command), cwd=repo, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "repo"
    path.mkdir()
    run(path, "git", "init", "-q", "-b", "main")
    run(path, "git-theta", "install", "--local")
    run(path, "git-theta", "track", "*.json")
    run(path, "git", "add", ".gitattributes")
    run(path, "git", "commit", "-q", "-m", "track json checkpoints")
    yield path
