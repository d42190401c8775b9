"""git theta gc: delete local objects nothing can reach any more.

Reachable means referenced by metadata (or a git-lfs pointer, which shares the
store) in any commit reachable from refs or reflogs (stashes included), or in the
index of any worktree. Objects younger than --grace seconds are kept, so a
`git add` running at the same time cannot lose what it just stored. Stale temp
files of interrupted writes are removed too.
"""

from __future__ import annotations

import argparse
import time

from git_theta import git
from git_theta.repo import Repo
from git_theta.transfer import scan

DEFAULT_GRACE_SECONDS = 3600


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("gc", help="delete unreachable local objects", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    parser.add_argument("--grace", type=int, default=DEFAULT_GRACE_SECONDS, metavar="SECONDS", help=f"keep objects modified in the last SECONDS (default {DEFAULT_GRACE_SECONDS})")
    parser.set_defaults(run=run)


def reachable_objects(repo: Repo) -> set[str]:
    blobs = scan.rev_list_blobs(["--all", "--reflog", "--indexed-objects"], repo.worktree)
    return set(scan.referenced(scan.metadata_of(blobs, repo.worktree))) | scan.lfs_pointer_oids(blobs, repo.worktree)


def run(args: argparse.Namespace) -> int:
    repo = Repo.discover(git.toplevel())
    keep = reachable_objects(repo)
    cutoff = time.time() - args.grace
    count = freed = 0
    for oid in repo.store.all_oids():
        path = repo.store.path(oid)
        stat = path.stat()
        if oid in keep or stat.st_mtime > cutoff:
            continue
        count += 1
        freed += stat.st_size
        if args.dry_run:
            print(f"would delete {oid} ({stat.st_size} bytes)")
        else:
            path.unlink()
    if repo.store.tmp_dir.is_dir():
        for temp in repo.store.tmp_dir.iterdir():
            if temp.is_file() and temp.stat().st_mtime <= cutoff and not args.dry_run:
                temp.unlink()
    verb = "would free" if args.dry_run else "freed"
    print(f"gc: {count} unreachable object(s), {verb} {freed} bytes; {len(keep)} referenced object(s) kept")
    return 0
