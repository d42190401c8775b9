"""git theta diff: how the parameter groups of tracked checkpoints changed, with numbers.

  git theta diff                 index -> working tree (like `git diff`)
  git theta diff REV             REV -> working tree
  git theta diff A B | A..B      A -> B
  git theta diff --cached [REV]  REV (default HEAD) -> index

Add `-- PATH...` (or just PATH...) to limit to some checkpoints. A sharded
Hugging Face checkpoint's index (model.safetensors.index.json) as PATH
compares the whole model across its shards: a tensor that went to another
shard is listed as moved, not as removed and added. For each
modified group: the L2 norm of the change, the relative change
||new - old|| / ||old||, the share of entries whose bits changed, the largest
|new - old| and the cosine similarity of old and new. Groups are compared by
hash first: only modified groups are loaded, one at a time (--no-stats loads
none). A working tree file that changed since it was staged is cleaned first,
which stores its new objects (as `git diff` does) but leaves the index alone.
A version committed through git-lfs, before the path switched to git-theta, is
read through its pointer: the object from the local store (fetched when
missing, even with --no-stats) is cleaned and compared like any other version.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from git_theta import git, snapshots
from git_theta.display import diff_view
from git_theta.display.diff_view import SORT_KEYS
from git_theta.errors import ThetaError
from git_theta.repo import Repo


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="show how parameter groups changed, with numbers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("items", nargs="*", metavar="[A [B]] [--] [PATH]", help="revisions, then paths of checkpoints")
    parser.add_argument(
        "--cached", "--staged", action="store_true", help="compare a revision (default HEAD) with the index"
    )
    parser.add_argument(
        "--sort",
        choices=SORT_KEYS,
        default="name",
        help=(
            "order of groups: name (default), largest norm/relative/changed/max/size/stored first, lowest cosine first"
        ),
    )
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only groups whose name matches this glob, e.g. 'encoder.layer.0.*' (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document for scripts")
    parser.add_argument(
        "--no-stats", action="store_true", help="metadata only: do not load tensors (works without the objects)"
    )
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the output (auto: only on a terminal)",
    )
    parser.set_defaults(run=run)


def split_items(items: list[str], cached: bool, root: Path) -> tuple[str, str, list[str]]:
    """(old side, new side, repo paths) from the positional arguments."""
    revs: list[str] = []
    rest = list(items)
    while rest and len(revs) < 2 and not (cached and revs):
        item = rest[0]
        if ".." in item and not revs and not Path(item).exists():
            a, b = item.split("..", 1)
            if git.commit_id(a or "HEAD", root) and git.commit_id(b or "HEAD", root):
                revs = [a or "HEAD", b or "HEAD"]
                rest.pop(0)
                break
        if git.commit_id(item, root) is None:
            break
        revs.append(item)
        rest.pop(0)
    for path in rest:
        if (
            not Path(path).exists()
            and git.run("ls-files", "--error-unmatch", "--", path, check=False).returncode != 0
            and not revs
        ):
            raise ThetaError(f"{path}: neither a revision nor a path in the working tree")
    paths = snapshots.repo_paths(root, rest)
    if cached:
        return (revs[0] if revs else "HEAD"), snapshots.INDEX, paths
    if len(revs) == 2:
        return revs[0], revs[1], paths
    if len(revs) == 1:
        return revs[0], snapshots.WORKTREE, paths
    return snapshots.INDEX, snapshots.WORKTREE, paths


def run(args: argparse.Namespace) -> int:
    root = git.toplevel()
    repo = Repo.discover(root)
    old, new, paths = split_items(args.items, args.cached, root)
    diffs = diff_view.compute(
        repo=repo, old=old, new=new, paths=paths, patterns=args.filter, with_stats=not args.no_stats
    )
    if args.json:
        json.dump(diff_view.to_json(old=old, new=new, diffs=diffs, key=args.sort), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    sys.stdout.write(diff_view.render(old=old, new=new, diffs=diffs, key=args.sort, color=color))
    return 0
