"""git theta install: configure the filter, diff and merge drivers in git config.

Also sets git-lfs's lfs.pruneverifyremotealways and lfs.pruneverifyunreachablealways
to true where they are unset, so that `git lfs prune` (git-lfs 3.5 and later) checks
git-theta's objects with the LFS server before deleting any, and keeps them while
one is only local; an older git-lfs cannot, and install warns where one is set up.
"""

from __future__ import annotations

import argparse
import sys

from git_theta import git, hooks, raw_blobs
from git_theta.installation import install, lfs_prune_problem, scope_of


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "install",
        help="configure git to use git-theta",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--local", action="store_true", help="configure only the current repository (default: global, for your user)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    scope = scope_of(local=args.local)
    changed = install(scope=scope)
    print(f"git-theta configured ({scope} git config, {len(changed)} setting(s) changed)")
    prune_problem = lfs_prune_problem()
    if prune_problem is not None:
        print(f"git-theta: warning: {prune_problem}", file=sys.stderr)
    if git.is_inside_repo():
        # Hooks are per repository (like `git lfs install`): run inside a repo, set up its pre-push hook.
        print(hooks.install())
        # Checkpoints added before the filter existed went into git raw; now is when they can be fixed.
        for problem in raw_blobs.problems(toplevel=git.toplevel()):
            print(f"git-theta: warning: {problem}", file=sys.stderr)
    return 0
