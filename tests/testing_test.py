"""git_theta.testing, the pytest plugin for plugin authors, run as an author would: a test file in a fresh pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AUTHOR_TESTS = """
import numpy as np
import pytest
from safetensors.numpy import save_file

from git_theta.testing import assert_round_trip, checkout, commit, run, track


def test_isolated_from_the_users_git_config(theta_repo):
    assert run(theta_repo, "git", "config", "user.name", check=False).stdout == ""  # not "Leaky User"
    assert run(theta_repo, "git", "config", "alias.st", check=False).returncode == 1
    assert run(theta_repo, "git", "branch", "--show-current").stdout.strip() == "main"
    assert run(theta_repo, "git", "config", "--local", "filter.theta.process").stdout.strip()


def test_commit_checkout_round_trip(theta_repo):
    track(theta_repo, "*.safetensors")
    save_file({"w": np.arange(6, dtype=np.float32)}, str(theta_repo / "m.safetensors"))
    first = commit(theta_repo, "m.safetensors", "v1")
    v1 = (theta_repo / "m.safetensors").read_bytes()
    save_file({"w": np.zeros(6, dtype=np.float32)}, str(theta_repo / "m.safetensors"))
    commit(theta_repo, "m.safetensors", "v2")
    assert '"format":"safetensors"' in run(theta_repo, "git", "show", "HEAD:m.safetensors").stdout
    assert run(theta_repo, "git", "log", "-1", "--format=%an").stdout.strip() == "Plugin Tester"
    assert_round_trip(theta_repo, "m.safetensors")
    assert checkout(theta_repo, first, "m.safetensors") == v1


def test_round_trip_needs_a_staged_file(theta_repo):
    (theta_repo / "loose.bin").write_bytes(b"x")
    with pytest.raises(AssertionError, match="loose.bin is not staged"):
        assert_round_trip(theta_repo, "loose.bin")
"""


def test_an_author_test_file_runs_with_the_plugin(tmp_path: Path) -> None:
    (tmp_path / "author").mkdir()
    (tmp_path / "author" / "author_test.py").write_text(AUTHOR_TESTS)
    (tmp_path / "author" / "conftest.py").write_text('pytest_plugins = ["git_theta.testing"]\n')
    # The user's own config must not reach the tests: an alias and another name in ~/.gitconfig.
    home = tmp_path / "userhome"
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Leaky User\n[alias]\n\tst = status\n[init]\n\tdefaultBranch = leaky\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(
        HOME=str(home),
        PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
            "author/author_test.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
