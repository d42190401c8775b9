"""`git lfs prune`, `git lfs fsck` and `git lfs push --all` in a mixed repository lose nothing of git-theta's.

A mixed repository (issue 15): data.bin under git-lfs; model.safetensors committed through git-lfs first, then
switched to git-theta; its git-theta versions pushed (v1) and not (v2), to a real giftless server on 127.0.0.1,
with real git-lfs. git-lfs's prune deletes local objects no git-lfs pointer in recent refs names, which is every
git-theta object; `git theta install` sets lfs.pruneverifyremotealways and lfs.pruneverifyunreachablealways, with
which git-lfs 3.5 and later ask the server about each object first and halt while one is only local. Older
git-lfs versions cannot be told so: install warns, their prune deletes every git-theta object, and the unpushed
ones come back from their second hard link in .git/theta/unpushed (git_theta.store) when next read.

Each test runs with the git-lfs on PATH; GIT_THETA_TEST_GIT_LFS_DIRS (directories, os.pathsep-separated, each
holding another git-lfs binary) runs the prune tests with those too.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import git, theta, unpushed_objects
from lfs_server import LfsServer
from remote_support import local_objects
from safetensors.numpy import save_file

MODEL = "model.safetensors"
LFS_DIRS = [d for d in os.environ.get("GIT_THETA_TEST_GIT_LFS_DIRS", "").split(os.pathsep) if d]


@pytest.fixture(params=["PATH", *LFS_DIRS])
def git_lfs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[int, ...]:
    """The version of the git-lfs this test runs (the one on PATH, or one from GIT_THETA_TEST_GIT_LFS_DIRS)."""
    if request.param != "PATH":
        monkeypatch.setenv("PATH", request.param + os.pathsep + os.environ["PATH"])
    words = git(Path.cwd(), "lfs", "version").stdout.split()
    match = re.fullmatch(r"git-lfs/([0-9]+)\.([0-9]+)\.([0-9]+)", words[0])
    assert match, words
    return tuple(int(part) for part in match.groups())


@dataclass
class Mixed:
    repo: Path
    server: LfsServer | None
    versions: dict[str, bytes]  # commit -> the model's bytes there
    install_stderr: str

    def theta_objects(self) -> set[str]:
        """Objects of the model's git-theta versions (v1, v2): what git-lfs's pointers never name."""
        found = set()
        for commit in list(self.versions)[1:]:
            found |= set(re.findall(r'"object":"([0-9a-f]{64})"', git(self.repo, "show", f"{commit}:{MODEL}").stdout))
        return found

    def assert_every_version_checks_out(self) -> None:
        """Each commit's model, smudged (fetched when missing) as git checkout writes it, is byte-identical; then
        `git theta fsck` finds every object of the history whole."""
        for commit, expected in self.versions.items():
            out = git_bytes(self.repo, "cat-file", "--filters", f"{commit}:{MODEL}")
            assert out == expected, f"{commit}: the model does not check out as committed"
        fsck = theta(self.repo, "fsck", check=False)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def git_bytes(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, check=True).stdout


def _model(path: Path, version: int) -> bytes:
    rng = np.random.default_rng(version)
    tensors = {f"layer{i}.weight": rng.normal(0, 0.02, (32, 32)).astype(np.float32) for i in range(3)}
    save_file(tensors, str(path))
    return path.read_bytes()


def make_mixed(root: Path, server: LfsServer | None) -> Mixed:
    """v0 by git-lfs, v1 by git-theta (pushed when there is a server), v2 by git-theta, not pushed."""
    repo = root / "mixed"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "lfs", "install", "--local")
    (repo / ".gitattributes").write_text(
        "*.bin filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    )
    (repo / "data.bin").write_bytes(bytes(range(256)) * 16)
    versions = {}
    model = repo / MODEL
    blob = _model(model, 0)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "v0 (git-lfs)")
    versions[git(repo, "rev-parse", "HEAD").stdout.strip()] = blob
    installed = theta(repo, "install", "--local")
    theta(repo, "track", "*.safetensors")
    blob = _model(model, 1)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "v1 (git-theta)")
    versions[git(repo, "rev-parse", "HEAD").stdout.strip()] = blob
    if server is not None:
        git(repo, "config", "lfs.url", server.url)
        bare = root / "origin.git"
        git(root, "init", "-q", "--bare", str(bare))
        git(repo, "remote", "add", "origin", str(bare))
        git(repo, "push", "-q", "origin", "main")
    blob = _model(model, 2)
    git(repo, "commit", "-q", "-am", "v2 (git-theta, not pushed)")
    versions[git(repo, "rev-parse", "HEAD").stdout.strip()] = blob
    return Mixed(repo, server, versions, installed.stderr)


@pytest.fixture
def mixed(tmp_path: Path, lfs_server: LfsServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mixed]:
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    yield make_mixed(tmp_path, lfs_server)


def test_prune_keeps_unpushed_git_theta_objects_where_git_lfs_can_check_them(
    git_lfs: tuple[int, ...], mixed: Mixed
) -> None:
    assert mixed.server is not None
    before = local_objects(mixed.repo)
    unpushed = (mixed.theta_objects() & before) - mixed.server.oids()
    assert unpushed, "v2 has objects only this repository holds"
    pruned = git(mixed.repo, "lfs", "prune", check=False)
    if git_lfs < (3, 5):
        # Nothing in git-lfs before 3.5 checks objects no pointer names: install says so, and prune deletes them.
        assert f"git-lfs {'.'.join(map(str, git_lfs))} is set up here" in mixed.install_stderr
        assert pruned.returncode == 0 and not unpushed & local_objects(mixed.repo)
        # Their second name kept them (v1's were pushed, so they have none and come from the server again).
        assert unpushed <= unpushed_objects(mixed.repo) and not mixed.server.oids() & unpushed_objects(mixed.repo)
        mixed.assert_every_version_checks_out()
        assert mixed.theta_objects() <= local_objects(mixed.repo) and not unpushed & mixed.server.oids()
        return
    assert "git-theta: warning" not in mixed.install_stderr
    # With install's settings prune asks the server, finds v2's objects missing there, and deletes nothing.
    assert pruned.returncode != 0, pruned.stdout + pruned.stderr
    assert all(oid in pruned.stdout + pruned.stderr for oid in unpushed)
    assert local_objects(mixed.repo) == before
    # --when-unverified=continue deletes only what the server holds; v1 comes back from it on checkout.
    git(mixed.repo, "lfs", "prune", "--when-unverified=continue")
    after = local_objects(mixed.repo)
    assert unpushed <= after and (mixed.theta_objects() - unpushed) - after
    mixed.assert_every_version_checks_out()


def test_prune_without_a_remote_deletes_nothing_where_git_lfs_can_check(
    git_lfs: tuple[int, ...], tmp_path: Path
) -> None:
    mixed = make_mixed(tmp_path, None)
    before = local_objects(mixed.repo)
    pruned = git(mixed.repo, "lfs", "prune", check=False)
    if git_lfs < (3, 5):
        assert not mixed.theta_objects() & local_objects(mixed.repo)  # all of git-theta's: the only copies
        # No server to fetch from: every version checks out from the objects' second names alone.
        assert mixed.theta_objects() <= unpushed_objects(mixed.repo)
        mixed.assert_every_version_checks_out()
        assert mixed.theta_objects() <= local_objects(mixed.repo)
        # ... and stays protected: a second prune deletes them again, and again they come back.
        git(mixed.repo, "lfs", "prune")
        assert not mixed.theta_objects() & local_objects(mixed.repo)
        mixed.assert_every_version_checks_out()
        return
    assert pruned.returncode != 0 and local_objects(mixed.repo) == before
    mixed.assert_every_version_checks_out()


def test_pruned_pushed_objects_are_fetched_again_on_checkout(git_lfs: tuple[int, ...], mixed: Mixed) -> None:
    assert mixed.server is not None
    git(mixed.repo, "push", "-q", "origin", "main")  # v2 too: every committed object is on the server now
    # The push dropped their second names: nothing keeps them from prune, and nothing needs to.
    assert not mixed.theta_objects() & unpushed_objects(mixed.repo)
    prune = ["lfs", "prune"]
    if git_lfs >= (3, 5):
        # Objects no commit names (cleaned by `git theta track` and `git add` on the way, `git theta gc`'s to
        # delete) are only local: prune halts naming them, and them only; continue deletes what the server has.
        halted = git(mixed.repo, *prune, check=False)
        named = set(re.findall(r"^ \* ([0-9a-f]{64})$", halted.stdout + halted.stderr, re.MULTILINE))
        assert halted.returncode == 0 or (named and not named & mixed.server.oids()), halted.stdout + halted.stderr
        prune.append("--when-unverified=continue")
    git(mixed.repo, *prune)
    assert not mixed.theta_objects() & local_objects(mixed.repo)  # prune deleted every pushed git-theta object
    mixed.assert_every_version_checks_out()
    assert mixed.theta_objects() <= local_objects(mixed.repo)


def test_git_lfs_fsck_checks_only_what_pointers_name_and_deletes_nothing(mixed: Mixed) -> None:
    before = local_objects(mixed.repo)
    for args in (["fsck"], ["fsck", "--pointers"], ["fsck", "--objects", "HEAD~2"]):
        checked = git(mixed.repo, "lfs", *args)
        assert "Git LFS fsck OK" in checked.stdout, checked.stdout + checked.stderr
    assert local_objects(mixed.repo) == before and not (mixed.repo / ".git" / "lfs" / "bad").exists()
    mixed.assert_every_version_checks_out()
    # A damaged git-theta object is not git-lfs's to see: git lfs fsck still says OK; git theta fsck names it.
    oid = sorted(mixed.theta_objects())[0]
    stored = mixed.repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    stored.chmod(0o644)
    stored.write_bytes(b"\0" + stored.read_bytes()[1:])
    assert "Git LFS fsck OK" in git(mixed.repo, "lfs", "fsck").stdout and stored.exists()
    damaged = theta(mixed.repo, "fsck", check=False)
    assert damaged.returncode == 1 and oid in damaged.stderr


def test_git_lfs_push_all_sends_only_pointer_objects_and_git_theta_push_the_rest(mixed: Mixed) -> None:
    assert mixed.server is not None
    unpushed = mixed.theta_objects() - mixed.server.oids()
    assert unpushed
    pushed = git(mixed.repo, "lfs", "push", "--all", "origin")
    assert pushed.returncode == 0
    assert not unpushed & mixed.server.oids()  # git-lfs pushes only objects its pointers name
    said = theta(mixed.repo, "push", "--all", "origin", "main").stdout
    assert f"{len(unpushed)} uploaded" in said, said
    assert mixed.theta_objects() <= mixed.server.oids()
    mixed.assert_every_version_checks_out()


DOCS = Path(__file__).resolve().parents[2] / "docs" / "migrating.md"


def _documented_blocks() -> list[str]:
    """The command blocks of docs/migrating.md's section "Mixed repositories: git lfs prune/fsck/push", in order."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Mixed repositories: git lfs prune/fsck/push\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)


def test_the_commands_the_docs_section_gives_do_what_it_says(git_lfs: tuple[int, ...], mixed: Mixed) -> None:
    assert mixed.server is not None
    settings, prune, fetch, fsck, push = _documented_blocks()  # the section changed: update this test with it
    config_before = git(mixed.repo, "config", "--local", "--list").stdout
    _shell(mixed.repo, settings)
    assert git(mixed.repo, "config", "--local", "--list").stdout == config_before  # install had set exactly these
    _shell(mixed.repo, push)
    assert mixed.theta_objects() <= mixed.server.oids()
    # The documented prune needs git-lfs 3.5; an older one's plain prune leaves the same state (all was pushed).
    _shell(mixed.repo, prune if git_lfs >= (3, 5) else "git lfs prune\n")
    assert not mixed.theta_objects() & local_objects(mixed.repo)
    _shell(mixed.repo, fetch)
    assert mixed.theta_objects() <= local_objects(mixed.repo)
    _shell(mixed.repo, fsck)
    mixed.assert_every_version_checks_out()


def _shell(repo: Path, block: str) -> None:
    result = subprocess.run(["bash", "-e", "-c", block], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, f"{block}\n{result.stdout}{result.stderr}"
