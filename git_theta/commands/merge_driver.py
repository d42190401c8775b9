"""git theta merge-driver: git's merge driver for tracked checkpoints (merge.theta.driver, %O %A %B %P).

Exit 0 with the merged metadata in %A; on a conflict, exit 1 with %A left as
ours (so the working tree holds our model) and say how to resolve.
"""

from __future__ import annotations

import argparse
import sys

from git_theta import git
from git_theta.merge import driver
from git_theta.merge.engine import MergeError
from git_theta.merge.unresolved import UnresolvedConflicts
from git_theta.repo import Repo


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "merge-driver", help="merge driver for checkpoints (used by git merge)", description=__doc__
    )
    parser.add_argument("base", help="the merge base's version (%%O)")
    parser.add_argument("ours", help="our version; receives the result (%%A)")
    parser.add_argument("theirs", help="their version (%%B)")
    parser.add_argument("path", help="the file's path in the repository (%%P)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    repo = Repo.discover()
    toplevel = git.toplevel()
    try:
        summary = driver.merge_files(
            repo=repo,
            toplevel=toplevel,
            path=args.path,
            base_file=args.base,
            ours_file=args.ours,
            theirs_file=args.theirs,
        )
    except UnresolvedConflicts as error:
        print(f"git-theta: {error}", file=sys.stderr)
        return 1
    except MergeError as error:
        # git shows a conflict; the working tree keeps our model. Say how to get out of it.
        print(f"git-theta: error: {error}\nTo resolve:\n  - {driver.resolve_hint(args.path)}", file=sys.stderr)
        return 1
    if summary is None:
        print(
            f"git-theta: error: {args.path}: your uncommitted changes to this checkpoint would be overwritten by the "
            f"merge; commit them (`git commit {args.path}`) or stash them (`git stash`), then merge again. Nothing was "
            "merged.",
            file=sys.stderr,
        )
        return 1
    print(summary, file=sys.stderr)
    return 0
