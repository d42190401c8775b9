"""file:// and plain-path remotes: objects travel to and from <remote git dir>/lfs/objects."""

from __future__ import annotations

from pathlib import Path

from conftest import git, theta
from remote_support import leftover_temp_files, local_objects, origin_and_alice, write_model

MODEL = "model.safetensors"


def remote_objects(bare: Path) -> set[str]:
    return {p.name for p in (bare / "lfs" / "objects").glob("??/??/*")}


def test_clone_push_pull_through_file_remotes(tmp_path: Path) -> None:
    bare, alice = origin_and_alice(tmp_path)
    git(alice, "remote", "add", "origin", f"file://{bare}")
    write_model(alice / MODEL)
    git(alice, "add", ".")
    git(alice, "commit", "-q", "-m", "v1")
    git(alice, "push", "-q", "origin", "main")
    assert remote_objects(bare) == local_objects(alice)
    bob = tmp_path / "bob"
    git(tmp_path, "clone", "-q", str(bare), str(bob))  # a plain path this time
    assert (bob / MODEL).read_bytes() == (alice / MODEL).read_bytes()
    write_model(bob / MODEL, changed={0, 10}, version=2)
    git(bob, "commit", "-q", "-am", "bob")
    before = remote_objects(bare)
    git(bob, "push", "-q", "origin", "main")
    assert len(remote_objects(bare) - before) == 2
    had = local_objects(alice)
    git(alice, "pull", "-q", "origin", "main")
    assert len(local_objects(alice) - had) == 2
    assert (alice / MODEL).read_bytes() == (bob / MODEL).read_bytes()
    assert leftover_temp_files(alice) == [] and theta(alice, "fsck").returncode == 0
    # fsck re-hashes fetched objects too
    fetched = sorted(local_objects(alice) - had)[0]
    path = alice / ".git" / "lfs" / "objects" / fetched[:2] / fetched[2:4] / fetched
    path.write_bytes(path.read_bytes()[:-1])
    result = theta(alice, "fsck", "--quick", check=False)
    assert result.returncode == 1 and f"object {fetched} is corrupt" in result.stderr


def test_a_corrupt_object_on_a_file_remote_is_not_copied(tmp_path: Path) -> None:
    bare, alice = origin_and_alice(tmp_path)
    write_model(alice / MODEL, tensors=3)
    git(alice, "add", ".")
    git(alice, "commit", "-q", "-m", "v1")
    git(alice, "push", "-q", str(bare), "main")
    victim = sorted((bare / "lfs" / "objects").glob("??/??/*"))[0]
    good = victim.read_bytes()
    victim.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    bob = tmp_path / "bob"
    git(tmp_path, "clone", "-q", "--no-checkout", str(bare), str(bob))
    result = theta(bob, "fetch", check=False)
    assert result.returncode == 1 and f"object {victim.name}" in result.stderr and "sha256" in result.stderr
    assert victim.name not in local_objects(bob) and leftover_temp_files(bob) == []
    victim.write_bytes(good)
    theta(bob, "fetch")
    assert local_objects(bob) == local_objects(alice)


def test_a_clone_made_without_git_theta_gets_the_models_with_the_two_commands_of_the_readme(tmp_path: Path) -> None:
    bare, alice = origin_and_alice(tmp_path)
    git(alice, "remote", "add", "origin", f"file://{bare}")
    write_model(alice / MODEL)
    git(alice, "add", ".")
    git(alice, "commit", "-q", "-m", "v1")
    git(alice, "push", "-q", "origin", "main")
    theta(tmp_path, "uninstall")  # bob has plain git only
    bob = tmp_path / "bob"
    git(tmp_path, "clone", "-q", str(bare), str(bob))
    assert (bob / MODEL).read_bytes() == git(alice, "show", f"HEAD:{MODEL}").stdout.encode()  # metadata text
    assert (bob / ".gitattributes").read_text().splitlines()[0].endswith("git theta install && git theta checkout")
    theta(bob, "install")
    theta(bob, "checkout")
    assert (bob / MODEL).read_bytes() == (alice / MODEL).read_bytes()
    assert git(bob, "status", "--porcelain").stdout == ""
