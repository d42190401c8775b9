"""git's merge driver for tracked checkpoints (merge.theta.driver, %O %A %B %P): the three-way merge of the files.

The merged metadata replaces %A. A conflict raises (UnresolvedConflicts, MergeError), leaving %A as ours, so the
working tree holds our model; `resolve_hint` says how to get out of it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from git_theta import metadata
from git_theta.checkpoints import tensorflow
from git_theta.errors import MetadataError
from git_theta.merge import local_changes, settings
from git_theta.merge.choose import chooser
from git_theta.merge.engine import merge_metadata
from git_theta.repo import Repo

LABELS = ("ours", "theirs")


def resolve_hint(path: str) -> str:
    """How to resolve a conflicted checkpoint, for the message that stops a merge."""
    redo = (
        f"redo this file's merge now: `git theta merge --redo {path} --strategy NAME [--arg NAME=VALUE]`, then "
        "`git commit`"
    )
    prefix = _bundle_prefix(path)
    if prefix is not None:  # the .index describes its shards' tensors: the same side for every file
        files = shlex.quote(f"{prefix}.*")
        return (
            f"{redo}\n  - or take one side for every file of the bundle: `git checkout --ours -- {files}` "
            f"(or --theirs), then `git add {files}`"
        )
    return f"{redo}\n  - or take one side whole: `git checkout --ours -- {path}` (or --theirs), then `git add {path}`"


def _bundle_prefix(path: str) -> str | None:
    """The prefix of a TensorFlow bundle's file (`<prefix>.index`, `<prefix>.data-<k>-of-<n>`), else None."""
    shard = tensorflow.data_shard(path)
    if shard is not None:
        return shard[0]
    return path[: -len(tensorflow.INDEX_SUFFIX)] if path.endswith(tensorflow.INDEX_SUFFIX) else None


def merge_files(
    *, repo: Repo, toplevel: Path, path: str, base_file: str, ours_file: str, theirs_file: str
) -> str | None:
    """Merge the three versions of PATH and write the result over `ours_file`; the summary line.

    None when PATH has uncommitted changes in the working tree: `ours_file` is then made to differ from ours so
    that git refuses the whole merge (see `refuse_dirty`), and nothing is merged.
    """
    ours_bytes = Path(ours_file).read_bytes()
    if local_changes.worktree_differs(toplevel, path, ours_bytes):
        refuse_dirty(ours_file, ours_bytes)
        return None
    base = read_metadata(base_file, path, "merge base", optional=True)
    ours = read_metadata(ours_file, path, "ours")
    theirs = read_metadata(theirs_file, path, "theirs")
    assert ours is not None and theirs is not None
    names = [name for meta in (ours, theirs, base) if meta is not None for name in meta.params]
    context = settings.default_context(LABELS, settings.layer_count(names))
    choose = chooser(toplevel, path, LABELS, None, resolve_hint(path), context)
    result = merge_metadata(repo.store, path, [ours, theirs], base, LABELS, choose)
    Path(ours_file).write_bytes(result.metadata.serialize())
    return result.summary(path)


def read_metadata(file: str, path: str, side: str, optional: bool = False) -> metadata.Metadata | None:
    """Metadata of one side; an empty base (the file was added on both sides) is None."""
    data = Path(file).read_bytes()
    if optional and not data:
        return None
    if not metadata.looks_like_metadata(data):
        raise MetadataError(
            f"{path}: {side} version is not git-theta metadata (was it committed without `git theta track`?)"
        )
    return metadata.parse(data, f"{path} ({side})")


def refuse_dirty(ours_file: str, ours_bytes: bytes) -> None:
    """Make git refuse the whole merge the way it does for an ordinary dirty file, before anything is touched.

    A conflict answer with %A different from ours makes the merge want to write this path, so git's own
    up-to-date check sees the uncommitted edit and aborts ("Your local changes to the following files would be
    overwritten by merge"): no MERGE_HEAD, no unmerged entries, and the edit stays. The bytes (ours plus a
    newline, still our metadata) are never checked out: git aborts exactly because the file is dirty.
    """
    Path(ours_file).write_bytes(ours_bytes + b"\n")
