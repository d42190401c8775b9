"""Finding a remote's LFS endpoint the way git-lfs does, in real repositories."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git

from git_theta.errors import TransferError
from git_theta.transfer import endpoint


@pytest.mark.parametrize(
    "remote_url, lfs_url",
    [
        ("https://github.com/org/model.git", "https://github.com/org/model.git/info/lfs"),
        ("https://github.com/org/model", "https://github.com/org/model.git/info/lfs"),
        ("https://huggingface.co/org/model/", "https://huggingface.co/org/model.git/info/lfs"),
        (
            "https://gitlab.example.com:8443/group/sub/model.git",
            "https://gitlab.example.com:8443/group/sub/model.git/info/lfs",
        ),
        ("git@github.com:org/model.git", "https://github.com/org/model.git/info/lfs"),
        ("ssh://git@gitlab.com:2222/group/model.git", "https://gitlab.com/group/model.git/info/lfs"),
        ("git://example.org/model", "https://example.org/model.git/info/lfs"),
    ],
)
def test_lfs_url_derived_from_remote_url(remote_url: str, lfs_url: str) -> None:
    assert endpoint.lfs_url_from_remote_url(remote_url) == lfs_url


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    git(path, "init", "-q")
    git(path, "remote", "add", "origin", "https://models.example.com/team/model.git")
    return path


def test_precedence_of_settings(clone: Path) -> None:
    assert endpoint.resolve("origin", clone).url == "https://models.example.com/team/model.git/info/lfs"
    (clone / ".lfsconfig").write_text("[lfs]\n\turl = https://lfs.example.com/from-lfsconfig\n")
    assert endpoint.resolve("origin", clone).url == "https://lfs.example.com/from-lfsconfig"
    git(clone, "config", "remote.origin.lfsurl", "https://lfs.example.com/remote-lfsurl")
    assert (
        endpoint.resolve("origin", clone).url == "https://lfs.example.com/from-lfsconfig"
    )  # lfs.url first, as git-lfs
    git(clone, "config", "lfs.url", "https://lfs.example.com/git-config/")
    assert endpoint.resolve("origin", clone).url == "https://lfs.example.com/git-config"  # git config beats .lfsconfig
    git(clone, "config", "lfs.pushurl", "https://lfs.example.com/push")
    assert endpoint.resolve("origin", clone, upload=True).url == "https://lfs.example.com/push"
    assert endpoint.resolve("origin", clone).url == "https://lfs.example.com/git-config"


def test_lfsconfig_is_read_from_head_when_not_checked_out(clone: Path) -> None:
    (clone / ".lfsconfig").write_text('[remote "origin"]\n\tlfsurl = https://lfs.example.com/committed\n')
    git(clone, "add", ".lfsconfig")
    git(clone, "commit", "-q", "-m", "lfs config")
    (clone / ".lfsconfig").unlink()
    assert endpoint.resolve("origin", clone).url == "https://lfs.example.com/committed"


def test_local_remotes(clone: Path, tmp_path: Path) -> None:
    bare = tmp_path / "shared.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(clone, "remote", "add", "shared", f"file://{bare}")
    git(clone, "remote", "add", "sibling", "../work")
    assert endpoint.resolve("shared", clone).local == bare.resolve()
    assert endpoint.resolve("sibling", clone).local == (clone / ".git").resolve()
    assert endpoint.resolve(str(bare), clone).local == bare.resolve()  # a path instead of a remote name
    with pytest.raises(TransferError, match="does not exist"):
        endpoint.resolve(str(tmp_path / "nowhere"), clone)


def test_default_remote(clone: Path) -> None:
    assert endpoint.default_remote(clone) == "origin"
    git(clone, "remote", "rename", "origin", "upstream")
    assert endpoint.default_remote(clone) == "upstream"  # the only remote
    git(clone, "remote", "add", "fork", "https://example.com/fork.git")
    with pytest.raises(TransferError, match="no default remote among"):
        endpoint.default_remote(clone)
    git(clone, "config", "branch.main.remote", "fork")
    assert endpoint.default_remote(clone) == "fork"
    git(clone, "config", "remote.lfsdefault", "upstream")
    assert endpoint.default_remote(clone) == "upstream"
    git(clone, "config", "remote.pushDefault", "fork")
    git(clone, "config", "remote.lfsdefault", "upstream")
    assert endpoint.default_remote(clone, upload=True) == "fork"


@pytest.mark.parametrize(
    "value, problem",
    [
        ('"ftp://lfs.example.com/lfs"', "scheme 'ftp'"),
        ('"gopher://lfs.example.com/lfs"', "scheme 'gopher'"),
        ('"http://[::1:8080/lfs"', "malformed (Invalid IPv6 URL)"),
        ('"http://lfs.example.com:99999999/lfs"', "malformed (Port out of range"),
        ('"http://lfs.example.com:port/lfs"', "malformed"),
        ('"http:///lfs"', "names no host"),
        ('"http://lfs.example.com/a\\nHost: evil.example"', "control characters"),
        ('"http://lfs.example.com/a\\bX"', "control characters"),  # git config has no \r escape
        ('"http://lfs.example.com/a\\tb"', "control characters"),
    ],
)
def test_a_bad_committed_lfs_url_is_refused_naming_the_file_and_key(clone: Path, value: str, problem: str) -> None:
    (clone / ".lfsconfig").write_text(f"[lfs]\n\turl = {value}\n")
    with pytest.raises(TransferError) as raised:
        endpoint.resolve("origin", clone)
    message = str(raised.value)
    assert "\n" not in message and "\r" not in message and "\t" not in message, message
    assert message.startswith(f"{clone / '.lfsconfig'}: lfs.url: the URL "), message
    assert problem in message, message


def test_a_bad_lfs_url_in_git_config_names_git_config_and_hides_credentials(clone: Path) -> None:
    git(clone, "config", "remote.origin.lfsurl", "https://s3cr3t-token@[::1/lfs?access_token=s3cr3t-query")
    with pytest.raises(TransferError) as raised:
        endpoint.resolve("origin", clone)
    message = str(raised.value)
    assert message.startswith("git config: remote.origin.lfsurl: "), message
    assert "s3cr3t" not in message and "malformed" in message, message


def test_a_malformed_remote_url_is_refused(clone: Path) -> None:
    git(clone, "remote", "set-url", "origin", "https://models.example.com:70000/team/model.git")
    with pytest.raises(TransferError, match="the URL of remote 'origin'.*Port out of range"):
        endpoint.resolve("origin", clone)


def test_an_ssh_lfs_url_is_asked_over_ssh_as_git_lfs_does(clone: Path) -> None:
    (clone / ".lfsconfig").write_text("[lfs]\n\turl = ssh://git@lfs.example.com:2222/team/model.git\n")
    where = endpoint.resolve("origin", clone)
    assert where.url == "https://lfs.example.com/team/model.git/info/lfs"
    assert where.ssh == endpoint.SshTarget("git@lfs.example.com", 2222, "team/model.git")
