"""migrate info: the sizes before and after, measured, and nothing changed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import git, theta
from migrate_support import (
    History,
    copy_of,
    lfs_objects,
    made_history,
)

from git_theta.migrate import info
from git_theta.repo import Repo


@pytest.fixture
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return made_history(tmp_path_factory)


@pytest.fixture
def lfs_repo(history: History, tmp_path: Path) -> Path:
    return copy_of(history, tmp_path)


def test_info_measures_the_store_before_and_after(lfs_repo: Path, history: History) -> None:
    rows = info.info(
        Repo.discover(lfs_repo), include=["*.safetensors", "data.*"], exclude=["*.bin"], everything=True
    ).rows
    by = {row.pattern: row for row in rows}
    sizes = {hashlib.sha256(data).hexdigest(): len(data) for data in history.models.values()}
    assert by["*.safetensors"].versions == 4
    assert by["*.safetensors"].lfs_bytes == sum(sizes.values())
    # 8 tensors stored once, then only the 1, 2, 1 changed ones (plus the file data): well under half
    assert 0 < by["*.safetensors"].theta_bytes < by["*.safetensors"].lfs_bytes / 2
    assert (by["data.*"].versions, by["data.*"].lfs_bytes, by["data.*"].theta_bytes) == (0, 0, 0)  # excluded
    out = theta(lfs_repo, "migrate", "info", "--everything", "--include", "*.safetensors").stdout
    assert out.splitlines()[1].split()[:2] == ["*.safetensors", "4"], out
    # a dry run: no ref, no object in the store, nothing in the working tree changed
    assert git(lfs_repo, "for-each-ref", "refs/heads", "refs/tags").stdout.strip() == history.refs.strip()
    assert lfs_objects(lfs_repo) == set(sizes) | {hashlib.sha256(bytes(range(256)) * 8).hexdigest()}
    assert {p.name for p in (lfs_repo / ".git" / "lfs" / "objects").glob("??/??/*")} == lfs_objects(lfs_repo)
