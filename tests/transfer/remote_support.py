"""Fixtures for remote tests: a giftless LFS server, a bare git remote, real checkpoints."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import git, theta
from lfs_server import LfsServer
from safetensors.torch import save_file

TENSORS = 20
SHAPE = (64, 64)


def write_model(
    path: Path, changed: set[int] | frozenset[int] = frozenset(), tensors: int = TENSORS, version: int = 1
) -> None:
    """A deterministic safetensors model; tensors in `changed` get values of `version` (bf16 ones included)."""
    params = {}
    for index in range(tensors):
        seed = index * 1000 + (version if index in changed else 0)
        generator = torch.Generator().manual_seed(seed)
        dtype = torch.bfloat16 if index % 5 == 4 else torch.float32
        params[f"layer{index:03d}.weight"] = (torch.randn(SHAPE, generator=generator) * 0.02).to(dtype)
    save_file(params, str(path), metadata={"format": "pt"})


def local_objects(repo: Path) -> set[str]:
    objects = repo / ".git" / "lfs" / "objects"
    return {p.name for p in objects.glob("??/??/*")} if objects.is_dir() else set()


def leftover_temp_files(repo: Path) -> list[Path]:
    tmp = repo / ".git" / "lfs" / "tmp"
    return list(tmp.iterdir()) if tmp.is_dir() else []


@dataclass
class Team:
    """A bare git remote (`origin`) whose LFS endpoint is `server` (named in a committed .lfsconfig)."""

    root: Path
    origin: Path
    alice: Path
    server: LfsServer

    def clone(self, name: str, *args: str) -> Path:
        path = self.root / name
        git(self.root, "clone", "-q", *args, str(self.origin), name)
        return path


def _serving(folder: Path, auth: tuple[str, str] | None = None) -> Iterator[LfsServer]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = LfsServer(folder, auth=auth)
    yield server
    server.stop()


@pytest.fixture
def locked_server(tmp_path: Path) -> Iterator[LfsServer]:
    """An LFS server that only user alice, password s3cret, may use."""
    yield from _serving(tmp_path / "locked", ("alice", "s3cret"))


@pytest.fixture
def lfs_server(tmp_path: Path) -> Iterator[LfsServer]:
    yield from _serving(tmp_path / "server")


def origin_and_alice(tmp_path: Path) -> tuple[Path, Path]:
    """git-theta installed (globally, in the test's HOME), an empty bare repository and alice's, tracking
    *.safetensors."""
    theta(tmp_path, "install")
    # These tests count the objects each transfer moves, one per tensor: small tensors are not packed here
    # (test_packed_pull_downloads_the_new_pack_only packs them, as a default install does).
    git(tmp_path, "config", "--global", "theta.packs", "false")
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    alice = tmp_path / "alice"
    alice.mkdir()
    git(alice, "init", "-q")
    theta(alice, "track", "*.safetensors")
    return bare, alice


@pytest.fixture
def team(tmp_path: Path, lfs_server: LfsServer, monkeypatch: pytest.MonkeyPatch) -> Team:
    """alice's repository with one model commit, pushed to origin (objects to the LFS server)."""
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    origin, alice = origin_and_alice(tmp_path)  # global install: clones get the filter
    git(tmp_path, "config", "--global", "lfs.transfer.maxretries", "2")
    (alice / ".lfsconfig").write_text(f'[lfs]\n\turl = "{lfs_server.url}"\n')
    git(alice, "remote", "add", "origin", str(origin))
    write_model(alice / "model.safetensors")
    git(alice, "add", ".")
    git(alice, "commit", "-q", "-m", "v1")
    git(alice, "push", "-q", "origin", "main")
    return Team(tmp_path, origin, alice, lfs_server)
