"""migrate export after import: the original commits, trees, blobs and tags come back byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git, theta
from migrate_support import (
    History,
    copy_of,
    log,
    made_history,
    subject_commits,
)

from git_theta import attributes, migrate


@pytest.fixture
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return made_history(tmp_path_factory)


@pytest.fixture
def lfs_repo(history: History, tmp_path: Path) -> Path:
    return copy_of(history, tmp_path)


def test_import_rewrites_every_commit_and_export_gives_back_the_same_commits(lfs_repo: Path, history: History) -> None:
    before_log = log(lfs_repo, "--branches", "--tags")
    bin_pointer = git(lfs_repo, "rev-parse", "main:data.bin").stdout
    result = theta(lfs_repo, "migrate", "import", "--everything", "--include", "*.safetensors")
    assert "6 of 6 commit(s) rewritten" in result.stdout, result.stdout
    assert f"kept under {migrate.BACKUP_PREFIX}/import/" in result.stdout

    # authors, committers, dates and messages exactly as they were; every ref moved
    assert log(lfs_repo, "--branches", "--tags") == before_log
    refs = dict(
        reversed(line.split(" ", 1))
        for line in git(lfs_repo, "for-each-ref", "--format=%(objectname) %(refname)").stdout.splitlines()
    )  # type: ignore[misc]
    old = {line.split()[2]: line.split()[0] for line in history.refs.splitlines()}
    for ref in ("refs/heads/main", "refs/heads/side", "refs/tags/v2-light", "refs/tags/v3"):
        assert refs[ref] != old[ref]
        assert refs[f"{migrate.BACKUP_PREFIX}/import/{ref}"] == old[ref]
    assert git(lfs_repo, "cat-file", "-t", "v3").stdout.strip() == "tag"
    new_tag = git(lfs_repo, "cat-file", "tag", "v3").stdout
    old_tag = git(lfs_repo, "cat-file", "tag", old["refs/tags/v3"]).stdout
    assert new_tag.split("\n", 1)[1] == old_tag.split("\n", 1)[1]  # tagger, date, message: only the object differs
    assert git(lfs_repo, "rev-parse", "v2-light").stdout == git(lfs_repo, "rev-parse", "main~2").stdout
    merge = git(lfs_repo, "rev-parse", "main^1", "main^2").stdout.split()  # the merge keeps both rewritten parents
    assert merge == [git(lfs_repo, "rev-parse", ref).stdout.strip() for ref in ("v3^{commit}", "side")]

    # every version checks out byte-identical through git-theta; the .bin stays a git-lfs pointer
    commits = {**subject_commits(lfs_repo, "main"), **subject_commits(lfs_repo, "side")}
    for subject, data in history.models.items():
        blob = git(lfs_repo, "cat-file", "-p", f"{commits[subject]}:model.safetensors").stdout
        assert blob.startswith("{"), blob[:80]  # metadata, not a pointer
        git(lfs_repo, "checkout", commits[subject], "--", "model.safetensors")
        assert (lfs_repo / "model.safetensors").read_bytes() == data, subject
    git(lfs_repo, "checkout", "main", "--", "model.safetensors")
    assert git(lfs_repo, "status", "--porcelain").stdout == ""
    assert git(lfs_repo, "rev-parse", "main:data.bin").stdout == bin_pointer
    assert git(lfs_repo, "show", "main:README.md").stdout == "# a model\nversion 2\n"
    gitattributes = git(lfs_repo, "show", "main:.gitattributes").stdout.splitlines()
    assert gitattributes[0] == attributes.CLONE_HINT
    assert f"*.safetensors {attributes.ATTRIBUTES}" in gitattributes
    assert "*.bin filter=lfs diff=lfs merge=lfs -text" in gitattributes
    assert git(lfs_repo, "show", "main:.gitattributes").stdout.endswith("-text\n")
    assert theta(lfs_repo, "show", "model.safetensors").returncode == 0

    # the way back: the original commits, trees, blobs and tags, byte for byte
    result = theta(lfs_repo, "migrate", "export", "--everything", "--include", "*.safetensors")
    assert "6 of 6 commit(s) rewritten" in result.stdout, result.stdout
    now = git(lfs_repo, "for-each-ref", "refs/heads", "refs/tags").stdout
    assert now == "".join(line + "\n" for line in history.refs.splitlines())
    assert (lfs_repo / "model.safetensors").read_bytes() == history.models["v3"]
    assert git(lfs_repo, "status", "--porcelain").stdout == ""
