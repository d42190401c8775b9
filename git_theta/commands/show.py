"""git theta show: the parameter groups of a checkpoint at any revision, as a table with totals.

  git theta show REV:PATH     at a revision (e.g. HEAD~2:model.safetensors)
  git theta show :PATH        in the index
  git theta show PATH         at HEAD

Read from metadata alone: no tensor is loaded, so it works before objects are fetched.
"""

from __future__ import annotations

import argparse
import json
import sys

from git_theta import git, snapshots
from git_theta.display import show_view
from git_theta.display.show_view import SORT_KEYS
from git_theta.errors import ThetaError
from git_theta.metadata import Metadata
from git_theta.repo import Repo


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "show",
        help="table of a checkpoint's parameter groups at a revision",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", metavar="[REV]:PATH", help="REV:PATH, :PATH (index) or PATH (HEAD)")
    parser.add_argument(
        "--sort",
        choices=SORT_KEYS,
        default="name",
        help="order of groups: name (default), largest size or stored size first",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document for scripts")
    parser.set_defaults(run=run)


def split_spec(spec: str) -> tuple[str, str]:
    """(side, user path) of REV:PATH, :PATH or PATH."""
    if ":" not in spec:
        return "HEAD", spec
    rev, path = spec.split(":", 1)
    return (rev or snapshots.INDEX), path


def load(spec: str) -> tuple[str, str, Metadata]:
    root = git.toplevel()
    side, user_path = split_spec(spec)
    # REV:PATH names a path from the top level, as in `git show`; ./ or ../ make it relative to here.
    path = snapshots.repo_paths(root, [user_path])[0] if user_path.startswith(("./", "../")) else user_path.strip("/")
    repo = Repo.discover(root)
    if side != snapshots.INDEX and git.commit_id(side, root) is None:
        raise ThetaError(f"{side}: not a revision in this repository")
    meta = snapshots.blob_metadata(repo, side, path)
    if meta is None:
        raise ThetaError(
            f"{path}: no git-theta checkpoint at {snapshots.label(side)} (absent, or not stored by git-theta)"
        )
    return side, path, meta


def run(args: argparse.Namespace) -> int:
    side, path, meta = load(args.spec)
    if args.json:
        json.dump(show_view.to_json(side=side, path=path, meta=meta, key=args.sort), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(show_view.render(side=side, path=path, meta=meta, key=args.sort))
    return 0
