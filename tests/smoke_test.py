"""End to end: the real MiniLM checkpoint through add, commit, change, checkout."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import git


def test_minilm_round_trip(repo: Path, minilm: Path) -> None:
    shutil.copy(minilm, repo / "model.safetensors")
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "v1")
    assert git(repo, "show", "HEAD:model.safetensors").stdout.startswith('{"version":"git-theta/2",')
    (repo / "model.safetensors").unlink()
    git(repo, "checkout", "--", "model.safetensors")
    assert (repo / "model.safetensors").read_bytes() == minilm.read_bytes()
    assert git(repo, "status", "--porcelain").stdout == ""
