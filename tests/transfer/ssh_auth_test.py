"""SSH remotes: the LFS API URL and token come from `git-lfs-authenticate` run over the user's ssh, as with git-lfs."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from conftest import git, theta
from lfs_server import LfsServer
from remote_support import local_objects, write_model

from git_theta.transfer import endpoint


@pytest.mark.parametrize(
    "url, user_host, port, path",
    [
        ("git@github.com:org/model.git", "git@github.com", None, "org/model.git"),
        ("ssh://git@gitlab.example.com:2222/group/model.git", "git@gitlab.example.com", 2222, "group/model.git"),
        ("ssh://host.example/model", "host.example", None, "model"),
    ],
)
def test_ssh_target(url: str, user_host: str, port: int | None, path: str) -> None:
    assert endpoint.ssh_target(url) == endpoint.SshTarget(user_host, port, path)
    assert endpoint.ssh_target("https://github.com/org/model.git") is None


def fake_ssh(tmp_path: Path, server: LfsServer) -> tuple[Path, Path]:
    """An ssh that logs its arguments and answers git-lfs-authenticate like an LFS host would."""
    log = tmp_path / "ssh.log"
    token = base64.b64encode(b"alice:s3cret").decode()
    answer = json.dumps({"href": server.url, "header": {"Authorization": f"Basic {token}"}, "expires_in": 3600})
    script = tmp_path / "fake-ssh"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\necho '{answer}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


def test_push_and_fetch_through_an_ssh_remote(tmp_path: Path, locked_server: LfsServer) -> None:
    script, log = fake_ssh(tmp_path, locked_server)
    alice = tmp_path / "alice"
    alice.mkdir()
    git(alice, "init", "-q")
    git(alice, "config", "core.sshCommand", str(script))
    theta(alice, "install", "--local")
    theta(alice, "track", "*.safetensors")
    git(alice, "config", "theta.packs", "false")  # one object per tensor: the counts below
    write_model(alice / "model.safetensors", tensors=3)
    git(alice, "add", ".")
    git(alice, "commit", "-q", "-m", "v1")
    git(alice, "remote", "add", "origin", "git@lfs.example.test:team/model.git")
    theta(alice, "push", "--all")  # objects only: the git host itself is not reachable here
    assert len(local_objects(alice)) == 4 and locked_server.oids() == local_objects(alice)
    assert log.read_text().splitlines() == ["git@lfs.example.test git-lfs-authenticate team/model.git upload"]
    bob = tmp_path / "bob"
    git(tmp_path, "clone", "-q", "--no-checkout", str(alice), str(bob))
    git(bob, "remote", "set-url", "origin", "ssh://git@lfs.example.test:2222/team/model.git")
    git(bob, "config", "core.sshCommand", str(script))
    theta(bob, "fetch")
    assert local_objects(bob) == local_objects(alice)
    assert (
        log.read_text().splitlines()[-1] == "-p 2222 git@lfs.example.test git-lfs-authenticate team/model.git download"
    )
