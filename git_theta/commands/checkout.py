"""git theta checkout: write tracked checkpoints from the index straight into the working tree.

For checkpoints near the size of RAM: git holds a smudge filter's whole output
in memory, this command streams each file to disk instead (as `git lfs pull`
does). Pair it with GIT_THETA_SKIP_SMUDGE=1 on clone/checkout, which leaves the
metadata text in the working tree for this command to replace.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from git_theta import git, worktree_checkout
from git_theta.repo import Repo


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "checkout",
        help="write tracked checkpoints to the working tree, streaming",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="paths or patterns (default: every tracked checkpoint)"
    )
    parser.add_argument(
        "--force", action="store_true", help="also overwrite files that are not metadata text (local changes are lost)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    root = git.toplevel()
    repo = Repo.discover(root)
    cwd = Path.cwd().resolve()
    patterns = [os.path.relpath(cwd / p, root) if not any(c in p for c in "*?[") else p for p in args.paths]
    for path in worktree_checkout.checkout(repo=repo, patterns=patterns, force=args.force):
        print(f"wrote {path}")
    return 0
