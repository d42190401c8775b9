"""git theta compact: rewrite the index version's update chains as dense objects.

Every parameter stored as a chain (a dense start plus updates) is rebuilt and
stored whole; the new metadata is staged in place of the old. Checkout then
reads one object per parameter. Older commits keep their chains.
"""

from __future__ import annotations

import argparse

from git_theta import git, snapshots
from git_theta.compact import compact
from git_theta.repo import Repo


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "compact", help="rewrite update chains of staged checkpoints as dense", description=__doc__
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="checkpoints to compact (default: every tracked checkpoint in the index)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    root = git.toplevel()
    repo = Repo.discover(root)
    if args.paths:
        paths = snapshots.repo_paths(root, args.paths)
    else:
        paths = git.ls_files_with_attr("filter", "theta", cwd=root)
    for path in paths:
        count = compact(repo=repo, path=path)
        print(f"{path}: {count} chain(s) rewritten as dense" if count else f"{path}: nothing to compact")
    return 0
