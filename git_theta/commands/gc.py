"""git theta gc: delete local objects nothing can reach any more.

Reachable means referenced by metadata (or a git-lfs pointer, which shares the
store) in any commit reachable from refs or reflogs (stashes included), in the
index of any worktree (every stage of a conflict), or by a pending side-loaded
update (`git theta add --update-type`). Objects modified in the last --grace
seconds are kept too: a `git add` running at the same time stores objects (or
reuses old ones, which refreshes their mtime) before git writes the index.
Temp files of interrupted writes are removed once their writer is gone.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from git_theta import files, git
from git_theta.repo import Repo
from git_theta.transfer import scan
from git_theta.update_engine import pending

DEFAULT_GRACE_SECONDS = 3600


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("gc", help="delete unreachable local objects", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    parser.add_argument(
        "--grace",
        type=int,
        default=DEFAULT_GRACE_SECONDS,
        metavar="SECONDS",
        help=f"keep objects modified in the last SECONDS (default {DEFAULT_GRACE_SECONDS})",
    )
    parser.set_defaults(run=run)


def reachable_objects(repo: Repo) -> set[str]:
    # Pending records first: their `git add` then puts the objects in the index before it drops the record.
    side_loaded = pending.referenced_objects(repo.common_dir)
    blobs = scan.rev_list_blobs(["--all", "--reflog", "--indexed-objects"], repo.worktree)
    found = set(scan.referenced(scan.metadata_of(blobs, repo.worktree))) | scan.lfs_pointer_oids(blobs, repo.worktree)
    return found | side_loaded


def _remove_temp_files(tmp_dir: Path, cutoff: float) -> None:
    """Ours once their writer is gone (git_theta.files); others' (git-lfs shares lfs/tmp) past the grace."""
    for temp in tmp_dir.iterdir():
        try:
            old = temp.is_file() and temp.stat().st_mtime <= cutoff
        except FileNotFoundError:
            continue
        if files.is_stale(temp) or (old and not files.is_ours(temp)):
            temp.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    repo = Repo.discover(git.toplevel())
    keep = reachable_objects(repo)
    cutoff = time.time() - args.grace
    count = freed = recent = 0
    for oid in repo.store.all_oids():
        path = repo.store.path(oid)
        stat = path.stat()
        if oid in keep:
            continue
        if stat.st_mtime > cutoff:
            recent += 1
            continue
        count += 1
        freed += stat.st_size
        if args.dry_run:
            print(f"would delete {oid} ({stat.st_size} bytes)")
        else:
            path.unlink()
    if repo.store.tmp_dir.is_dir() and not args.dry_run:
        _remove_temp_files(repo.store.tmp_dir, cutoff)
    verb = "would free" if args.dry_run else "freed"
    print(f"gc: {count} unreachable object(s), {verb} {freed} bytes; {len(keep)} referenced object(s) kept")
    if recent:
        # Otherwise "0 unreachable" reads as "nothing to collect" while objects wait out the grace period.
        print(f"gc: {recent} more unreachable object(s) kept: modified in the last {args.grace} s (--grace SECONDS)")
    return 0
