"""git theta fsck: verify that every tracked checkpoint reachable from the index and all refs can be checked out.

For each metadata blob: it parses (with every limit of docs/formats.md 2.3), its format plugin and the update
plugins of its links exist and load, every object exists and matches its sha256, every file-level blob decodes,
and (without --quick) every distinct chain of links rebuilds to its recorded tensor hash. Problems are printed
one per line as `git-theta: error: PATH@COMMIT: problem` (PATH@index for a version only staged).
"""

from __future__ import annotations

import argparse
import sys

from git_theta import fsck, git, raw_blobs
from git_theta.repo import Repo


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("fsck", help="verify stored objects", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="only check metadata, plugins, and that objects exist and match their sha256; do not rebuild tensors",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    repo = Repo.discover(git.toplevel())
    problems = fsck.check(repo=repo, quick=args.quick) + raw_blobs.problems(repo.worktree)
    for problem in problems:
        print(f"git-theta: error: {problem}", file=sys.stderr)
    print(f"fsck: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    if repo.store.restored:
        # git lfs prune before git-lfs 3.5 deletes unpushed git-theta objects; their second name kept them
        print(f"fsck: {repo.store.restored} unpushed object(s) deleted from the store (git lfs prune) were linked back")
    if any(" is missing from " in problem for problem in problems):
        # a clone downloads only what its checkouts needed; older versions' objects stay on the server
        print("hint: objects of versions never checked out here are not downloaded; `git theta fetch --all` gets them")
    return 1 if problems else 0
