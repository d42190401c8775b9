"""Push, clone, pull and fetch through a real LFS server (giftless on 127.0.0.1), counted server-side."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import git, theta
from remote_support import Team, local_objects, write_model

from git_theta import metadata

MODEL = "model.safetensors"


def referenced(repo: Path, rev: str = "HEAD", path: str = MODEL) -> set[str]:
    data = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, check=True).stdout
    return metadata.parse(data).objects()


def test_push_uploads_every_object_and_clone_checks_out_the_model(team: Team) -> None:
    assert referenced(team.alice) <= team.server.oids()
    assert team.server.oids() == local_objects(team.alice)
    team.server.reset_counts()
    bob = team.clone("bob")
    assert (bob / MODEL).read_bytes() == (team.alice / MODEL).read_bytes()
    assert git(bob, "status", "--porcelain").stdout == ""
    # one batch request for all objects, one GET per object, nothing else
    assert team.server.count("POST", "/objects/batch") == 1
    assert team.server.count("GET", "/objects/storage/") == len(local_objects(team.alice))
    assert "git-theta pre-push hook" in (bob / ".git" / "hooks" / "pre-push").read_text()
    assert theta(bob, "fsck").returncode == 0


def test_pull_after_a_teammate_changed_ten_percent_downloads_about_ten_percent(team: Team) -> None:
    bob = team.clone("bob")
    full_bytes = team.server.bytes_sent()
    write_model(team.alice / MODEL, changed={3, 9})  # 2 of 20 tensors, one of them bf16
    git(team.alice, "commit", "-q", "-am", "fine-tune two layers")
    team.server.reset_counts()
    git(team.alice, "push", "-q", "origin", "main")
    assert team.server.count("PUT", "/objects/storage/") == 2  # only the two new objects go up
    team.server.reset_counts()
    git(bob, "pull", "-q", "origin", "main")
    assert (bob / MODEL).read_bytes() == (team.alice / MODEL).read_bytes()
    assert team.server.count("GET", "/objects/storage/") == 2
    assert team.server.count("POST", "/objects/batch") == 1
    share = team.server.bytes_sent() / full_bytes
    assert 0.07 < share < 0.13, share  # 2 of 20 tensors plus nothing else


def test_packed_pull_downloads_the_new_pack_only(team: Team) -> None:
    """With packs (the default; this suite turns them off to count objects per tensor): two changed tensors of
    twenty go up and come down as one new pack of about a tenth of the bytes."""
    git(team.alice, "config", "theta.packs", "true")
    write_model(team.alice / "packed.safetensors")
    git(team.alice, "add", "packed.safetensors")
    git(team.alice, "commit", "-q", "-m", "packed v1")
    git(team.alice, "push", "-q", "origin", "main")
    bob = team.clone("bob")
    full_bytes = team.server.bytes_sent()
    write_model(team.alice / "packed.safetensors", changed={3, 9})
    git(team.alice, "commit", "-q", "-am", "fine-tune two layers")
    team.server.reset_counts()
    git(team.alice, "push", "-q", "origin", "main")
    assert team.server.count("PUT", "/objects/storage/") == 1  # one pack holds both changed tensors
    team.server.reset_counts()
    git(bob, "pull", "-q", "origin", "main")
    assert (bob / "packed.safetensors").read_bytes() == (team.alice / "packed.safetensors").read_bytes()
    assert team.server.count("GET", "/objects/storage/") == 1
    share = team.server.bytes_sent() / full_bytes
    assert share < 0.1, share  # 2 of 20 tensors of one file, of the two files bob cloned


def test_fetch_prefetches_another_revision_and_only_missing_objects(team: Team) -> None:
    bob = team.clone("bob")
    write_model(team.alice / MODEL, changed={0, 1, 2, 3})
    git(team.alice, "commit", "-q", "-am", "v2")
    git(team.alice, "push", "-q", "origin", "main")
    git(bob, "fetch", "-q", "origin")
    fsck = theta(bob, "fsck", "--quick", check=False)  # origin/main's new objects are not here yet
    assert fsck.returncode == 1 and "git theta fetch --all" in fsck.stdout
    team.server.reset_counts()
    result = theta(bob, "fetch", "origin", "origin/main")
    assert "4 downloaded" in result.stdout
    assert team.server.count("GET", "/objects/storage/") == 4
    assert referenced(team.alice) <= local_objects(bob)
    assert theta(bob, "fsck").returncode == 0  # and what arrived is verified
    team.server.reset_counts()
    assert "0 downloaded" in theta(bob, "fetch", "origin", "origin/main").stdout
    assert team.server.requests == []  # nothing missing: not even a batch request
    git(bob, "merge", "-q", "--ff-only", "origin/main")
    assert team.server.requests == []  # the checkout found everything locally
    assert (bob / MODEL).read_bytes() == (team.alice / MODEL).read_bytes()


def test_merge_and_rebased_commits_push_their_objects(team: Team) -> None:
    bob = team.clone("bob")
    write_model(team.alice / MODEL, changed={1}, version=2)
    git(team.alice, "commit", "-q", "-am", "alice tunes layer 1")
    git(team.alice, "push", "-q", "origin", "main")
    write_model(bob / MODEL, changed={2}, version=3)
    git(bob, "commit", "-q", "-am", "bob tunes layer 2")
    git(bob, "pull", "-q", "--rebase", "origin", "main")  # bob's commit is rebased onto alice's (merge driver)
    git(bob, "push", "-q", "origin", "main")
    assert referenced(bob) <= team.server.oids()
    git(team.alice, "pull", "-q", "origin", "main")
    assert (team.alice / MODEL).read_bytes() == (bob / MODEL).read_bytes()
    # a merge commit whose tree is new to the server
    git(team.alice, "checkout", "-q", "-b", "side", "HEAD~1")
    write_model(team.alice / MODEL, changed={7}, version=4)
    git(team.alice, "commit", "-q", "-am", "side")
    git(team.alice, "checkout", "-q", "main")
    git(team.alice, "merge", "-q", "--no-edit", "-s", "ours", "side")
    git(team.alice, "push", "-q", "origin", "main")
    assert referenced(team.alice, "side") <= team.server.oids()


def test_many_objects_go_in_batches_of_one_hundred(team: Team) -> None:
    write_model(team.alice / "big.safetensors", tensors=150)
    git(team.alice, "add", "big.safetensors")
    git(team.alice, "commit", "-q", "-m", "150 tensors")
    team.server.reset_counts()
    git(team.alice, "push", "-q", "origin", "main")
    assert team.server.count("POST", "/objects/batch") == 2  # 150 tensors + 1 header blob, 20 already there
    team.server.reset_counts()
    bob = team.clone("bob")
    assert team.server.count("POST", "/objects/batch") == 1 + 2  # model.safetensors, then big.safetensors
    assert (bob / "big.safetensors").read_bytes() == (team.alice / "big.safetensors").read_bytes()


def test_explicit_push_and_pre_push_for_commits_made_elsewhere(team: Team) -> None:
    # carol commits without a hook, and pushes with --no-verify: the server lacks her objects
    carol = team.clone("carol")
    write_model(carol / MODEL, changed={5}, version=5)
    git(carol, "commit", "-q", "-am", "carol")
    git(carol, "push", "-q", "--no-verify", "origin", "main")
    assert not referenced(carol) <= team.server.oids()
    # `git theta push --all` finds what the server lacks from the metadata alone
    result = theta(carol, "push", "--all", "origin", "main")
    assert "1 uploaded" in result.stdout
    assert referenced(carol) <= team.server.oids()
    assert "0 uploaded" in theta(carol, "push", "--all").stdout


def test_pushing_only_an_annotated_tag_uploads_its_commit_objects(team: Team) -> None:
    git(team.alice, "checkout", "-q", "--detach")
    write_model(team.alice / MODEL, changed={6}, version=6)
    git(team.alice, "commit", "-q", "-am", "release candidate")
    git(team.alice, "tag", "-a", "rc1", "-m", "rc1")
    git(team.alice, "push", "-q", "origin", "rc1")
    assert referenced(team.alice, "rc1") <= team.server.oids()
