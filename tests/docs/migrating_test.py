"""docs/migrating.md's `--include-ref` / `--exclude-ref` example, run as written: only the commits origin/main does
not have are converted, on top of the published ones, which keep their ids."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
from conftest import git, theta
from safetensors.numpy import save_file

DOC = (Path(__file__).resolve().parents[2] / "docs" / "migrating.md").read_text()
SECTION = DOC[DOC.index("## Part of the history") : DOC.index("## Publishing the rewritten history")]


def _commands() -> list[list[str]]:
    (block,) = re.findall(r"```\n(.*?)```", SECTION, re.DOTALL)
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def test_the_example_converts_only_the_unpublished_commits(tmp_path: Path) -> None:
    commands = _commands()
    assert [c[:4] for c in commands] == [["git", "theta", "migrate", "info"], ["git", "theta", "migrate", "import"]]
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "lfs", "install", "--local")
    theta(repo, "install", "--local")
    (repo / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    models = []
    for version in (1, 2, 3):
        save_file({"w": np.full((16, 16), version, np.float32)}, str(repo / "m.safetensors"))
        models.append((repo / "m.safetensors").read_bytes())
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"v{version}")
        if version == 2:  # what a fetch of the published main leaves
            git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    published = git(repo, "rev-list", "origin/main").stdout

    info = theta(repo, *commands[0][2:]).stdout.splitlines()
    assert info[1].split()[:2] == ["*.safetensors", "1"], info  # v3's model only
    out = theta(repo, *commands[1][2:]).stdout.splitlines()
    assert out[0] == "migrate import: 1 of 1 commit(s) rewritten", out

    assert git(repo, "rev-list", "origin/main").stdout == published
    assert git(repo, "rev-parse", "main^").stdout == git(repo, "rev-parse", "origin/main").stdout
    assert git(repo, "cat-file", "-p", "main:m.safetensors").stdout.startswith("{")
    assert git(repo, "cat-file", "-p", "main^:m.safetensors").stdout.startswith("version https://git-lfs")
    assert (repo / "m.safetensors").read_bytes() == models[2]
    assert git(repo, "status", "--porcelain").stdout == ""
