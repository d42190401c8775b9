"""git theta track: store files matching patterns with git-theta (.gitattributes)."""

from __future__ import annotations

import argparse
import shlex
import sys

from git_theta import attributes, git, hooks, installation
from git_theta.errors import ThetaError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("track", help="track checkpoint files matching patterns", description=__doc__)
    parser.add_argument("patterns", nargs="+", metavar="PATTERN", help="gitattributes pattern, e.g. '*.safetensors'")
    parser.add_argument(
        "--exclude",
        action="store_true",
        help=(
            "the patterns name files git should store itself, though a tracked pattern matches them (e.g. "
            "'weights/*.json' under 'weights/**')"
        ),
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write .gitattributes even when git-theta's filter is not set up (git would then add such files raw)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = git.toplevel() / ".gitattributes"
    if args.exclude:
        added = attributes.exclude(path=path, patterns=args.patterns)
        for pattern in args.patterns:
            print(f"{'excluding' if pattern in added else 'already excluded'}: {pattern} (stored by git itself)")
        return 0
    problem = installation.filter_problem(cwd=path.parent)
    if problem and not args.force:
        raise ThetaError(f"{path.name}: not tracking {' '.join(args.patterns)}: {problem} (or rerun with --force)")
    if problem:
        print(f"git-theta: warning: {problem}", file=sys.stderr)
    root = path.parent
    lfs_paths = git.ls_files_with_attr("filter", "lfs", cwd=root)
    added = attributes.track(path=path, patterns=args.patterns)
    for pattern in args.patterns:
        print(f"{'tracking' if pattern in added else 'already tracked'}: {pattern}")
    for pattern in set(added) & set(attributes.lfs_patterns(path=path)):
        print(
            f"git-lfs: {pattern} also has a filter=lfs line; git-theta's line comes after it and wins (the git-lfs "
            "line may stay: git-lfs then still pushes and fetches the objects of older commits)"
        )
    pointers, restaged = installation.switch_from_lfs(root=root, lfs_paths=lfs_paths)
    for pointer in pointers:
        print(
            f"git-theta: warning: {pointer}: the working tree holds a git-lfs pointer, not the file: run "
            f"`git lfs pull --include {shlex.quote(pointer)}`, then `git add --renormalize -- {shlex.quote(pointer)}`",
            file=sys.stderr,
        )
    for moved in restaged:
        print(f"re-staged with git-theta (was git-lfs): {moved}; commit to switch it")
    hooks.ensure_installed(cwd=root)  # as `git lfs track` does: a tracking repo pushes its objects
    return 0
