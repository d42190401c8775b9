"""git theta fetch --repair against a real LFS server (giftless on 127.0.0.1): corrupt local objects come back whole."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "transfer"))
from conftest import git, theta, unpushed_objects  # noqa: E402
from hostile_support import assert_store_whole, run_bounded  # noqa: E402
from remote_support import Team, local_objects, write_model  # noqa: E402

MODEL = "model.safetensors"


def object_path(repo: Path, oid: str) -> Path:
    return repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid


def corrupt(repo: Path, oid: str) -> None:
    path = object_path(repo, oid)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def test_fetch_repair_replaces_a_corrupt_object_and_checkout_works_again(team: Team) -> None:
    bob = team.clone("bob")
    victims = sorted(local_objects(bob))[:2]
    for oid in victims:
        corrupt(bob, oid)
    (bob / MODEL).unlink()
    broken = git(bob, "checkout", "--", MODEL, check=False)
    assert broken.returncode != 0 and "corrupt" in broken.stderr, (
        broken.stderr
    )  # the smudge side's hint: fetch --repair
    assert theta(bob, "fsck", check=False).returncode != 0  # fsck sees it too
    plain = theta(bob, "fetch")
    assert "0 downloaded" in plain.stdout  # a plain fetch trusts what is present: that is what --repair is for
    team.server.reset_counts()
    result = run_bounded(["git-theta", "fetch", "--repair"], cwd=bob)
    assert result.returncode == 0, result.describe()
    assert "2 corrupt, 2 downloaded" in result.stdout
    assert team.server.count("GET", "/objects/storage/") == 2  # only the corrupt ones move
    for oid in victims:
        assert hashlib.sha256(object_path(bob, oid).read_bytes()).hexdigest() == oid
        assert f"object {oid} is corrupt" in result.stderr
    assert_store_whole(bob)  # no staging files left
    (bob / MODEL).unlink(missing_ok=True)
    git(bob, "checkout", "--", MODEL)
    assert (bob / MODEL).read_bytes() == (team.alice / MODEL).read_bytes()
    assert theta(bob, "fsck").returncode == 0
    again = theta(bob, "fetch", "--repair")
    assert "0 corrupt, 0 downloaded" in again.stdout


def test_fetch_repair_keeps_the_damaged_copy_when_the_remote_has_no_good_one(team: Team) -> None:
    bob = team.clone("bob")
    oid = sorted(local_objects(bob))[0]
    corrupt(bob, oid)
    damaged = object_path(bob, oid).read_bytes()
    team.server.object_path(oid).unlink()
    result = run_bounded(["git-theta", "fetch", "--repair"], cwd=bob)
    assert result.returncode == 1 and oid in result.stderr and "404" in result.stderr, result.describe()
    assert object_path(bob, oid).read_bytes() == damaged  # replaced only by a verified copy, never removed
    assert not list((bob / ".git" / "lfs" / "tmp").glob("repair-*"))


def test_fetch_repair_of_an_unpushed_object_drops_its_damaged_second_name(team: Team) -> None:
    """An object made here keeps a second hard link against `git lfs prune` (git_theta.store); damage in place
    hits both names. Repair renames the server's good copy over the first name only: the second, still the
    damaged file, would come back after a prune, so repair drops it (the server has the object now)."""
    alice = team.alice
    write_model(alice / MODEL, changed={0}, version=2)
    git(alice, "commit", "-q", "-am", "v2, not pushed by git-theta")
    [oid] = sorted(unpushed_objects(alice) - team.server.oids())[:1]
    git(alice, "lfs", "push", "--object-id", "origin", oid)  # the server gets it; git-theta does not hear of it
    assert oid in team.server.oids() and oid in unpushed_objects(alice)
    corrupt(alice, oid)
    result = run_bounded(["git-theta", "fetch", "--repair"], cwd=alice)
    assert result.returncode == 0 and "1 corrupt, 1 downloaded" in result.stdout, result.describe()
    assert hashlib.sha256(object_path(alice, oid).read_bytes()).hexdigest() == oid
    assert oid not in unpushed_objects(alice)
    object_path(alice, oid).unlink()  # what git lfs prune before 3.5 does: the server's copy comes back, whole
    (alice / MODEL).unlink()
    git(alice, "checkout", "--", MODEL)
    assert hashlib.sha256(object_path(alice, oid).read_bytes()).hexdigest() == oid
    assert theta(alice, "fsck").returncode == 0
