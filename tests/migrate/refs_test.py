"""Which refs migrate rewrites and the commits they name, on real repositories with branches and tags; with
--exclude-ref the excluded history stays exactly as it was and the rewritten branch builds on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git, theta
from migrate_support import History, copy_of, made_history, subject_commits

from git_theta.migrate import BACKUP_PREFIX, MigrateError, plumbing, refs


@pytest.fixture
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return made_history(tmp_path_factory)


@pytest.fixture
def lfs_repo(history: History, tmp_path: Path) -> Path:
    return copy_of(history, tmp_path)


@pytest.fixture
def branched(tmp_path: Path) -> Path:
    """main (two commits, a light tag and an annotated one) and side (one more commit on top of main~1)."""
    git(tmp_path, "init", "-q")
    for name in ("one", "two"):
        (tmp_path / f"{name}.txt").write_text(name)
        git(tmp_path, "add", "-A")
        git(tmp_path, "commit", "-q", "-m", name)
    git(tmp_path, "tag", "light")
    git(tmp_path, "tag", "-a", "annotated", "-m", "release")
    git(tmp_path, "checkout", "-q", "-b", "side", "main~1")
    (tmp_path / "side.txt").write_text("side")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "side")
    git(tmp_path, "checkout", "-q", "main")
    return tmp_path


def _oid(repo: Path, rev: str) -> str:
    return git(repo, "rev-parse", rev).stdout.strip()


def test_the_current_branch_the_named_refs_or_everything(branched: Path) -> None:
    assert refs.select_refs(branched, everything=False, refs=[]) == {"refs/heads/main": _oid(branched, "main")}
    assert refs.select_refs(branched, everything=False, refs=["side", "light"]) == {
        "refs/heads/side": _oid(branched, "side"),
        "refs/tags/light": _oid(branched, "light"),
    }
    assert set(refs.select_refs(branched, everything=True, refs=[])) == {
        "refs/heads/main",
        "refs/heads/side",
        "refs/tags/light",
        "refs/tags/annotated",
    }
    with pytest.raises(MigrateError, match="not a branch or tag"):
        refs.select_refs(branched, everything=False, refs=["main~1"])
    git(branched, "checkout", "-q", "--detach")
    with pytest.raises(MigrateError, match="detached"):
        refs.select_refs(branched, everything=False, refs=[])


def test_tags_peel_to_their_commit_and_a_tag_of_a_tag_is_refused(branched: Path) -> None:
    cat = plumbing.CatFile(branched)
    try:
        chosen = refs.select_refs(branched, everything=True, refs=[])
        commits, tags = refs.peel_tags(cat, chosen)
        assert commits["refs/tags/annotated"] == _oid(branched, "main") == commits["refs/tags/light"]
        assert set(tags) == {"refs/tags/annotated"} and tags["refs/tags/annotated"].endswith(b"\nrelease\n")
        git(branched, "tag", "-a", "nested", "-m", "a tag of a tag", "annotated")
        with pytest.raises(MigrateError, match="refs/tags/nested: an annotated tag of a tag"):
            refs.peel_tags(cat, refs.select_refs(branched, everything=False, refs=["nested"]))
    finally:
        cat.close()


def test_include_ref_and_exclude_ref_choose_as_git_lfs_migrate_does(branched: Path) -> None:
    # with --include-ref (or --exclude-ref) the current branch is not added; REFs still are
    assert refs.select_refs(branched, everything=False, refs=[], include_refs=["side"]) == {
        "refs/heads/side": _oid(branched, "side")
    }
    assert set(refs.select_refs(branched, everything=False, refs=["light"], include_refs=["side"])) == {
        "refs/tags/light",
        "refs/heads/side",
    }
    with pytest.raises(MigrateError, match="name the refs to rewrite too"):
        refs.select_refs(branched, everything=False, refs=[], exclude_refs=["main"])
    with pytest.raises(MigrateError, match="--everything or --include-ref/--exclude-ref"):
        refs.select_refs(branched, everything=True, refs=[], exclude_refs=["main"])
    # an excluded ref is any revision naming a commit (a tag peels to it), once each
    assert refs.excluded_commits(branched, ["annotated", "main", "side~1"]) == [
        _oid(branched, "main"),
        _oid(branched, "side~1"),
    ]
    with pytest.raises(MigrateError, match="--exclude-ref origin/main: not a commit"):
        refs.excluded_commits(branched, ["origin/main"])


def test_excluded_history_keeps_its_ids_and_the_rewritten_branch_builds_on_it(lfs_repo: Path, history: History) -> None:
    """main: start, v1, v2, v3, merge of side; side: v2 + side. Excluding side leaves start..v2 and side as they
    are (git-lfs pointers, the same ids); v3 and the merge are rewritten on top of them."""
    old = {line.split()[2]: line.split()[0] for line in history.refs.splitlines()}
    original = subject_commits(lfs_repo, "main")
    chosen = ["--include-ref", "main", "--exclude-ref", "side", "--include", "*.safetensors"]
    (row,) = theta(lfs_repo, "migrate", "info", *chosen).stdout.splitlines()[1:]
    assert row.split()[:2] == ["*.safetensors", "1"]  # only v3's model is in the commits to rewrite

    out = theta(lfs_repo, "migrate", "import", *chosen).stdout.splitlines()
    assert out[0] == "migrate import: 2 of 2 commit(s) rewritten", out
    now = {line.split()[2]: line.split()[0] for line in git(lfs_repo, "for-each-ref").stdout.splitlines()}
    assert {ref: now[ref] for ref in old if ref != "refs/heads/main"} == {
        ref: old[ref] for ref in old if ref != "refs/heads/main"
    }  # side and the tags did not move
    assert set(now) - set(old) == {f"{BACKUP_PREFIX}/import/refs/heads/main"}
    rewritten = subject_commits(lfs_repo, "main")
    for subject in ("start", "v1", "v2", "side"):
        assert rewritten[subject] == original[subject], subject
    assert rewritten["v3"] != original["v3"] and rewritten["merge side"] != original["merge side"]
    assert git(lfs_repo, "rev-parse", "main~1^", "main^2").stdout.split() == [original["v2"], old["refs/heads/side"]]
    assert git(lfs_repo, "cat-file", "-p", "main~2:model.safetensors").stdout.startswith("version https://git-lfs")
    assert git(lfs_repo, "cat-file", "-p", "main:model.safetensors").stdout.startswith("{")
    # the rewritten commits check out byte-identical to their git-lfs versions
    assert (lfs_repo / "model.safetensors").read_bytes() == history.models["v3"]
    git(lfs_repo, "checkout", "main~1", "--", "model.safetensors")
    assert (lfs_repo / "model.safetensors").read_bytes() == history.models["v3"]
    git(lfs_repo, "checkout", "main", "--", "model.safetensors")

    out = theta(lfs_repo, "migrate", "export", *chosen).stdout.splitlines()
    assert out[0] == "migrate export: 2 of 2 commit(s) rewritten", out
    assert git(lfs_repo, "for-each-ref", "refs/heads", "refs/tags").stdout.strip() == history.refs.strip()
