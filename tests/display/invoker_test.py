"""Display-only git commands (diff, log -p, show) get metadata from smudge; checkouts still get the model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import git
from safetensors.numpy import load_file, save_file

from git_theta.display import invoker


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["git", "log", "-p"], ["log", "-p"]),
        (["/usr/bin/git", "-c", "a.b=c", "-C", "dir", "--no-pager", "diff", "A", "B"], ["diff", "A", "B"]),
        (["git", "--git-dir=/x/.git", "show", "HEAD"], ["show", "HEAD"]),
        (["git"], []),
    ],
)
def test_git_command_skips_global_options(argv: list[str], expected: list[str]) -> None:
    assert invoker.git_command(argv) == expected


@pytest.mark.parametrize(
    "command,display",
    [
        (["diff", "HEAD"], True),
        (["log", "-p"], True),
        (["show"], True),
        (["stash", "show", "-p"], True),
        (["stash", "pop"], False),
        (["checkout", "main"], False),
        (["restore", "x"], False),
        ([], False),
    ],
)
def test_display_only_commands(command: list[str], display: bool) -> None:
    assert invoker.display_only(command) is display


def test_history_diffs_need_no_objects_but_checkout_does(repo: Path) -> None:
    rng = np.random.default_rng(0)
    tensors = {f"layer{i}.weight": rng.standard_normal((64, 32)).astype(np.float32) for i in range(4)}
    save_file(tensors, str(repo / "model.safetensors"))
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "v1")
    changed = load_file(str(repo / "model.safetensors"))
    changed["layer2.weight"][0, 0] += 1.0
    save_file(changed, str(repo / "model.safetensors"))
    git(repo, "commit", "-q", "-am", "v2")
    # Like a fresh clone before any fetch: the store is empty and there is no remote.
    shutil.rmtree(repo / ".git" / "lfs" / "objects")
    shutil.rmtree(repo / ".git" / "theta" / "unpushed")  # a clone has no unpushed objects to link back

    latest = git(repo, "log", "-p", "-1").stdout
    changed_lines = [line for line in latest.splitlines() if line.startswith(("+layer", "-layer"))]
    assert [line.split()[0] for line in changed_lines] == ["-layer2.weight", "+layer2.weight"]
    assert "+layer0.weight" in git(repo, "log", "-p").stdout  # v1's groups, shown as added by the first commit
    assert "layer2.weight" in git(repo, "diff", "HEAD~1", "HEAD").stdout
    assert "layer2.weight" in git(repo, "show", "HEAD").stdout

    failed = git(repo, "checkout", "HEAD~1", "--", "model.safetensors", check=False)
    assert failed.returncode != 0 and "missing" in failed.stderr
