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

from git_theta import git
from git_theta.gc import DEFAULT_GRACE_SECONDS, collect
from git_theta.repo import Repo


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


def run(args: argparse.Namespace) -> int:
    repo = Repo.discover(git.toplevel())
    found = collect(repo=repo, grace=args.grace, dry_run=args.dry_run)
    if args.dry_run:
        for oid, size in found.deleted:
            print(f"would delete {oid} ({size} bytes)")
    verb = "would free" if args.dry_run else "freed"
    print(
        f"gc: {len(found.deleted)} unreachable object(s), {verb} {found.freed} bytes; "
        f"{found.kept} referenced object(s) kept"
    )
    if found.recent:
        # Otherwise "0 unreachable" reads as "nothing to collect" while objects wait out the grace period.
        print(
            f"gc: {found.recent} more unreachable object(s) kept: modified in the last {args.grace} s (--grace SECONDS)"
        )
    return 0
