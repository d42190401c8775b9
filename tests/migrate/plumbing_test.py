"""Migrate's git object plumbing against objects real git wrote: cat-file, raw trees, commit headers."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git

from git_theta.errors import GitError
from git_theta.migrate import plumbing


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    """A repository with a file, an executable, a subdirectory and two commits (the second a child)."""
    git(tmp_path, "init", "-q")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("a\n")
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o755)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "one")
    (tmp_path / "b.txt").write_text("b\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "two\n\nbody")
    return tmp_path


def test_cat_file_reads_kind_bytes_and_size_and_names_a_missing_object(plain: Path) -> None:
    cat = plumbing.CatFile(plain)
    try:
        blob = git(plain, "rev-parse", "HEAD:sub/a.txt").stdout.strip()
        assert cat.read(blob) == ("blob", b"a\n")
        assert cat.size(blob) == 2
        kind, raw = cat.read(git(plain, "rev-parse", "HEAD").stdout.strip())
        assert kind == "commit" and raw.endswith(b"\n\ntwo\n\nbody\n")
        with pytest.raises(GitError, match="0{40} is missing"):
            cat.read("0" * 40)
        with pytest.raises(GitError, match="0{40} is missing"):
            cat.size("0" * 40)
        assert cat.read(blob) == ("blob", b"a\n")  # still in step after a miss
    finally:
        cat.close()


def test_a_tree_parses_and_formats_back_to_the_same_object(plain: Path) -> None:
    tree = git(plain, "rev-parse", "HEAD^{tree}").stdout.strip()
    cat = plumbing.CatFile(plain)
    try:
        _, raw = cat.read(tree)
    finally:
        cat.close()
    entries = plumbing.parse_tree(raw)
    assert [(mode, name) for mode, name, _ in entries] == [
        (b"100644", b"b.txt"),
        (b"100755", b"run.sh"),
        (plumbing.TREE_MODE, b"sub"),
    ]
    assert entries[2][2] == git(plain, "rev-parse", "HEAD:sub").stdout.strip()
    assert plumbing.format_tree(entries) == raw
    assert plumbing.write_object("tree", plumbing.format_tree(entries), plain) == tree


def test_headers_keep_continuation_lines_with_their_header() -> None:
    raw = b"tree abc\nparent def\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n line\n -----END PGP SIGNATURE-----\n"
    raw += b"author A <a@b> 1 +0000\n\nsubject\n\nbody\n"
    headers, body = plumbing.headers_and_body(raw)
    assert headers == [
        b"tree abc",
        b"parent def",
        b"gpgsig -----BEGIN PGP SIGNATURE-----\n \n line\n -----END PGP SIGNATURE-----",
        b"author A <a@b> 1 +0000",
    ]
    assert body == b"subject\n\nbody\n"
    assert b"\n".join(headers) + b"\n\n" + body == raw
