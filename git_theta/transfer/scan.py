"""Which objects some commits or trees need, read from the metadata git holds (no side database).

Metadata blobs are recognised by content (they start with metadata.PREFIX), not by
.gitattributes, so commits made with other attributes, elsewhere, or rebased are
all covered. Each entry contributes every link of its chain (bases of incremental
updates included) and the file section's objects.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from git_theta import git, lfs_pointer, metadata
from git_theta.errors import MetadataError

# Blobs are read through `git cat-file --batch` in groups of about this many bytes.
READ_GROUP_BYTES = 64 << 20


def rev_list_blobs(args: list[str], cwd: Path) -> dict[str, int]:
    """Blobs `git rev-list --objects ARGS` reaches (e.g. new commits `A --not B`, or `--all --reflog`)."""
    listing = git.run("rev-list", "--objects", *args, cwd=cwd).stdout.decode("utf-8", errors="surrogateescape")
    return git.blob_sizes((line.split(" ", 1)[0] for line in listing.splitlines() if line), cwd)


def tree_blobs(revs: list[str], cwd: Path) -> dict[str, int]:
    """Blobs in the trees of `revs` (not their history): what a checkout of them needs."""
    ids = []
    for rev in revs:
        ids += [blob_id for blob_id, _ in git.ls_tree_blobs(rev, cwd=cwd)]
    return git.blob_sizes(ids, cwd)


def small_blobs(sizes: dict[str, int], limit: int, cwd: Path) -> Iterator[tuple[str, bytes]]:
    """(blob id, content) of the blobs no larger than `limit`, read in bounded groups."""
    group: list[str] = []
    total = 0
    for blob_id, size in sorted(sizes.items()):
        if size > limit:
            continue
        group.append(blob_id)
        total += size
        if total >= READ_GROUP_BYTES:
            yield from git.cat_file_batch(group, cwd=cwd).items()
            group, total = [], 0
    if group:
        yield from git.cat_file_batch(group, cwd=cwd).items()


def metadata_of(sizes: dict[str, int], cwd: Path) -> list[metadata.Metadata]:
    """Parsed metadata of those blobs that are git-theta metadata (malformed ones are skipped)."""
    found = []
    for blob_id, data in small_blobs(sizes, metadata.MAX_BYTES, cwd):
        if metadata.looks_like_metadata(data):
            try:
                found.append(metadata.parse(data, f"blob {blob_id}"))
            except MetadataError as error:
                # Cannot be checked out either, so nothing of it to move; it must not block a push or gc. Say so.
                print(f"git-theta: warning: {error} (skipped: no objects are moved or kept for it)", file=sys.stderr)
                continue
    return found


def referenced(metas: Iterable[metadata.Metadata]) -> dict[str, int]:
    """oid -> size of every object the metadata needs: all chain links, and file-section objects."""
    wanted: dict[str, int] = {}
    for meta in metas:
        for entry in meta.params.values():
            for link in entry.stored:
                wanted[link.object] = link.size
        for oid, size in _file_section_objects(meta.file):
            wanted.setdefault(oid, size)
    return wanted


def _file_section_objects(value: Any) -> Iterator[tuple[str, int]]:
    if isinstance(value, dict):
        if isinstance(value.get("object"), str):
            size = value.get("size")
            yield value["object"], size if isinstance(size, int) else 0
        for item in value.values():
            yield from _file_section_objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _file_section_objects(item)


def lfs_pointer_oids(sizes: dict[str, int], cwd: Path) -> set[str]:
    """Object ids named by git-lfs pointer files among the blobs (git-lfs shares the object store)."""
    found = set()
    for _, data in small_blobs(sizes, lfs_pointer.MAX_BYTES, cwd):
        pointer = lfs_pointer.parse(data)
        if pointer is not None:
            found.add(pointer.oid)
    return found


def objects_of_revisions(*, cwd: Path, revs: list[str], everything: bool) -> dict[str, int]:
    """oid -> size of every object the checkpoints of `revs` (HEAD when none) reference; with `everything`, of
    every commit reachable from all refs (and `revs`)."""
    if everything:
        blobs = rev_list_blobs(["--all", *revs], cwd)
    else:
        blobs = tree_blobs(git.commit_ids(revs or ["HEAD"], cwd), cwd)
    return referenced(metadata_of(blobs, cwd))
