"""git theta merge-driver: git's merge driver for tracked checkpoints (merge.theta.driver, %O %A %B %P).

Exit 0 with the merged metadata in %A; on a conflict, exit 1 with %A left as
ours (so the working tree holds our model) and say how to resolve.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from git_theta import git, metadata
from git_theta.errors import MetadataError
from git_theta.merge import local_changes, settings
from git_theta.merge.choose import chooser
from git_theta.merge.engine import MergeError, merge_metadata
from git_theta.merge.unresolved import UnresolvedConflicts
from git_theta.repo import Repo

LABELS = ("ours", "theirs")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "merge-driver", help="merge driver for checkpoints (used by git merge)", description=__doc__
    )
    parser.add_argument("base", help="the merge base's version (%%O)")
    parser.add_argument("ours", help="our version; receives the result (%%A)")
    parser.add_argument("theirs", help="their version (%%B)")
    parser.add_argument("path", help="the file's path in the repository (%%P)")
    parser.set_defaults(run=run)


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


def run(args: argparse.Namespace) -> int:
    repo = Repo.discover()
    toplevel = git.toplevel()
    ours_bytes = Path(args.ours).read_bytes()
    if local_changes.worktree_differs(toplevel, args.path, ours_bytes):
        return refuse_dirty(args.path, args.ours, ours_bytes)
    base = read_metadata(args.base, args.path, "merge base", optional=True)
    ours = read_metadata(args.ours, args.path, "ours")
    theirs = read_metadata(args.theirs, args.path, "theirs")
    assert ours is not None and theirs is not None
    hint = (
        f"redo this file's merge now: `git theta merge --redo {args.path} --strategy NAME [--arg NAME=VALUE]`, then "
        "`git commit`\n"
        f"  - or take one side whole: `git checkout --ours -- {args.path}` (or --theirs), then `git add {args.path}`"
    )
    names = [name for meta in (ours, theirs, base) if meta is not None for name in meta.params]
    context = settings.default_context(LABELS, settings.layer_count(names))
    choose = chooser(toplevel, args.path, LABELS, None, hint, context)
    try:
        result = merge_metadata(repo.store, args.path, [ours, theirs], base, LABELS, choose)
    except UnresolvedConflicts as error:
        print(f"git-theta: {error}", file=sys.stderr)
        return 1
    except MergeError as error:
        # git shows a conflict; the working tree keeps our model. Say how to get out of it.
        print(f"git-theta: error: {error}\nTo resolve:\n  - {hint}", file=sys.stderr)
        return 1
    Path(args.ours).write_bytes(result.metadata.serialize())
    print(result.summary(args.path), file=sys.stderr)
    return 0


def refuse_dirty(path: str, ours_file: str, ours_bytes: bytes) -> int:
    """Make git refuse the whole merge the way it does for an ordinary dirty file, before anything is touched.

    A conflict answer with %A different from ours makes the merge want to write this path, so git's own
    up-to-date check sees the uncommitted edit and aborts ("Your local changes to the following files would be
    overwritten by merge"): no MERGE_HEAD, no unmerged entries, and the edit stays. The bytes (ours plus a
    newline, still our metadata) are never checked out: git aborts exactly because the file is dirty.
    """
    Path(ours_file).write_bytes(ours_bytes + b"\n")
    print(
        f"git-theta: error: {path}: your uncommitted changes to this checkpoint would be overwritten by the merge; "
        f"commit them (`git commit {path}`) or stash them (`git stash`), then merge again. Nothing was merged.",
        file=sys.stderr,
    )
    return 1
