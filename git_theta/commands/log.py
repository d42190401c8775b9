"""git theta log: the commits that changed a checkpoint, or one parameter group of it.

  git theta log [PATH...]               every commit that changed the checkpoint(s)
  git theta log PATH --param NAME       only commits that changed group NAME
  git theta log -v PATH                 also list each changed group
  git theta log model.safetensors.index.json
                                        a sharded model as one: commits that changed any of its
                                        shards, tensors that moved between shards counted apart

Each change shows its update type and the bytes it stored. Merge commits are
compared with their first parent. Read from metadata alone (no tensor loaded).
"""

from __future__ import annotations

import argparse
import json
import sys

from git_theta import git, history, sharded, snapshots
from git_theta.display import log_view
from git_theta.errors import ThetaError
from git_theta.repo import Repo


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "log",
        help="history of a checkpoint or a parameter group",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="checkpoints (default: every tracked checkpoint)")
    parser.add_argument("--param", metavar="NAME", help="only commits that changed this parameter group")
    parser.add_argument("-v", "--verbose", action="store_true", help="list each changed group under its commit")
    parser.add_argument("-n", "--max-count", type=int, metavar="N", help="at most N commits")
    parser.add_argument("--rev", default="HEAD", help="start from this revision (default HEAD)")
    parser.add_argument("--json", action="store_true", help="print one JSON document for scripts")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    root = git.toplevel()
    repo = Repo.discover(root)
    if args.max_count is not None and args.max_count < 0:
        raise ThetaError(f"-n/--max-count must be 0 or more, not {args.max_count}")
    if git.commit_id(args.rev, root) is None:
        raise ThetaError(f"{args.rev}: not a revision in this repository (no commits yet?)")
    paths = snapshots.repo_paths(root, args.paths)
    indexes = [path for path in paths if sharded.is_index(path)]
    if indexes and len(paths) > 1:
        raise ThetaError("give a sharded model's index alone: git theta log PATH.index.json")
    if indexes:
        commits = history.model_history(
            repo=repo, rev=args.rev, index=indexes[0], param=args.param, limit=args.max_count
        )
    else:
        commits = history.history(repo=repo, rev=args.rev, paths=paths, param=args.param, limit=args.max_count)
    if args.json:
        json.dump(log_view.to_json(commits), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(log_view.render(commits=commits, param=args.param, verbose=args.verbose))
    return 0
