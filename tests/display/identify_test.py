"""Finding the committed metadata of a rebuilt checkpoint, by the paths git may have taken it from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import git
from safetensors.numpy import save_file

from git_theta.display import identify
from git_theta.repo import Repo


def commit_model(repo: Path, path: str, value: float) -> None:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.full((3,), value, dtype=np.float32)}, str(repo / path))
    git(repo, "add", path)
    git(repo, "commit", "-q", "-m", f"{path} = {value}")


def test_paths_with_non_ascii_names_spaces_and_glob_characters_are_found(repo: Path) -> None:
    odd = ["sub dir/mödel.safetensors", "deep/er/mödel.safetensors", "m[1]*.safetensors"]
    for value, path in enumerate(odd):
        commit_model(repo, path, value)
    commit_model(repo, "m1x.safetensors", 9)  # what the glob characters of "m[1]*" would match unescaped
    git(repo, "rm", "-q", "deep/er/mödel.safetensors")
    git(repo, "commit", "-q", "-m", "removed: history still knows it")
    found = Repo.discover(repo)
    assert identify.tracked_paths_named(found, "mödel.safetensors") == [
        "deep/er/mödel.safetensors",
        "sub dir/mödel.safetensors",
    ]
    assert identify.tracked_paths_named(found, "m[1]*.safetensors") == ["m[1]*.safetensors"]
    assert identify.tracked_paths_named(found, "absent.safetensors") == []
