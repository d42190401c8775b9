"""Which refs migrate rewrites and the commits they name, on a real repository with branches and tags."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git

from git_theta.migrate import MigrateError, plumbing, refs


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
