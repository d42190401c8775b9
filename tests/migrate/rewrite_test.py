"""A whole rewrite: nothing moves until it is complete (an interrupt leaves every ref as it was)."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import git
from migrate_support import (
    History,
    copy_of,
    drop_object,
    made_history,
)


@pytest.fixture
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return made_history(tmp_path_factory)


@pytest.fixture
def lfs_repo(history: History, tmp_path: Path) -> Path:
    return copy_of(history, tmp_path)


@pytest.fixture
def hung_server() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(60)
    yield server
    server.close()


def test_an_interrupted_import_leaves_every_ref_as_it_was(
    lfs_repo: Path, history: History, hung_server: socket.socket
) -> None:
    # not v3's: checked out, so `git status` (git-lfs's clean filter) would store it again
    drop_object(lfs_repo, history.models["v2"])  # v1 gets converted, then the walk waits on the server
    git(lfs_repo, "remote", "add", "origin", f"http://127.0.0.1:{hung_server.getsockname()[1]}/repo.git")
    before = git(lfs_repo, "for-each-ref").stdout
    head = (lfs_repo / ".git" / "HEAD").read_text()
    process = subprocess.Popen(
        ["git-theta", "migrate", "import", "--everything", "--include", "*.safetensors"],
        cwd=lfs_repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    connection, _ = hung_server.accept()  # the walk is inside commit v2 now
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    connection.close()
    assert process.returncode == 130, err
    assert git(lfs_repo, "for-each-ref").stdout == before
    assert (lfs_repo / ".git" / "HEAD").read_text() == head
    assert git(lfs_repo, "status", "--porcelain").stdout == ""
    assert git(lfs_repo, "cat-file", "-p", "main:model.safetensors").stdout.startswith("version https://git-lfs")
