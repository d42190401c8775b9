"""Interoperability with stock git-lfs: the same objects, the same servers, the same local layout."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from conftest import git
from remote_support import Team, local_objects, write_model

from git_theta import metadata

MODEL = "model.safetensors"


def lfs(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return git(repo, "-c", "lfs.locksverify=false", "lfs", *args)


def objects_of(repo: Path) -> dict[str, int]:
    data = subprocess.run(["git", "show", f"HEAD:{MODEL}"], cwd=repo, capture_output=True, check=True).stdout
    meta = metadata.parse(data)
    return {link.object: link.size for entry in meta.params.values() for link in entry.stored}


def test_git_lfs_fetches_what_git_theta_pushed(team: Team) -> None:
    wanted = dict(sorted(objects_of(team.alice).items())[:3])
    other = team.root / "lfs-user"
    other.mkdir()
    git(other, "init", "-q")
    lfs(other, "install", "--local")
    git(other, "config", "lfs.url", team.server.url)
    (other / ".gitattributes").write_text("*.bin filter=lfs diff=lfs merge=lfs -text\n")
    for number, (oid, size) in enumerate(wanted.items()):
        # a git-lfs pointer naming an object git-theta uploaded
        (other / f"{number}.bin").write_text(
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
        )
    git(other, "add", ".")
    git(other, "commit", "-q", "-m", "pointers")
    lfs(other, "fetch")
    for oid in wanted:
        path = f".git/lfs/objects/{oid[:2]}/{oid[2:4]}/{oid}"
        assert (other / path).read_bytes() == (team.alice / path).read_bytes()


def test_a_remote_populated_by_git_lfs_push_serves_git_theta(team: Team) -> None:
    dana = team.clone("dana")
    write_model(dana / MODEL, changed={4, 11}, version=7)
    git(dana, "commit", "-q", "-am", "dana")
    new = set(objects_of(dana)) - team.server.oids()
    assert len(new) == 2
    git(dana, "push", "-q", "--no-verify", "origin", "main")  # refs only; git-lfs moves the objects
    lfs(dana, "push", "--object-id", "origin", *sorted(new))
    assert new <= team.server.oids()
    erin = team.clone("erin")
    assert (erin / MODEL).read_bytes() == (dana / MODEL).read_bytes()


def test_file_remote_written_by_git_lfs_is_read_by_git_theta(team: Team, tmp_path: Path) -> None:
    shared = tmp_path / "shared.git"
    git(tmp_path, "init", "-q", "--bare", str(shared))
    git(team.alice, "remote", "add", "shared", str(shared))
    git(team.alice, "push", "-q", "--no-verify", "shared", "main")
    git(
        team.alice,
        "-c",
        f"lfs.url=file://{shared}",
        "lfs",
        "push",
        "--object-id",
        "shared",
        *sorted(local_objects(team.alice)),
    )
    assert {p.name for p in (shared / "lfs" / "objects").glob("??/??/*")} == local_objects(team.alice)
    frank = tmp_path / "frank"
    git(tmp_path, "clone", "-q", "-c", f"lfs.url=file://{shared}", str(shared), str(frank))
    assert (frank / MODEL).read_bytes() == (team.alice / MODEL).read_bytes()


def test_git_lfs_files_still_push_when_git_lfs_is_installed_after_git_theta(team: Team) -> None:
    alice = team.alice
    git(alice, "lfs", "install", "--local", check=False)  # finds our hook and leaves it
    assert "git-theta pre-push hook" in (alice / ".git" / "hooks" / "pre-push").read_text()
    git(alice, "config", "lfs.locksverify", "false")
    git(alice, "lfs", "track", "*.dat")
    data = b"plain git-lfs content\n" * 100
    (alice / "table.dat").write_bytes(data)
    git(alice, "add", ".gitattributes", "table.dat")
    git(alice, "commit", "-q", "-m", "an lfs file next to the model")
    git(alice, "push", "-q", "origin", "main")  # our hook runs `git lfs pre-push` too
    assert hashlib.sha256(data).hexdigest() in team.server.oids()
