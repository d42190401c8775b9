"""git theta track: store files matching patterns with git-theta (.gitattributes)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from git_theta import attributes, git, hooks, installation, lfs_pointer
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
        added = attributes.exclude(path, args.patterns)
        for pattern in args.patterns:
            print(f"{'excluding' if pattern in added else 'already excluded'}: {pattern} (stored by git itself)")
        return 0
    problem = installation.filter_problem(path.parent)
    if problem and not args.force:
        raise ThetaError(f"{path.name}: not tracking {' '.join(args.patterns)}: {problem} (or rerun with --force)")
    if problem:
        print(f"git-theta: warning: {problem}", file=sys.stderr)
    root = path.parent
    lfs_paths = git.ls_files_with_attr("filter", "lfs", cwd=root)
    added = attributes.track(path, args.patterns)
    for pattern in args.patterns:
        print(f"{'tracking' if pattern in added else 'already tracked'}: {pattern}")
    for pattern in set(added) & set(attributes.lfs_patterns(path)):
        print(
            f"git-lfs: {pattern} also has a filter=lfs line; git-theta's line comes after it and wins (the git-lfs "
            "line may stay: git-lfs then still pushes and fetches the objects of older commits)"
        )
    switch_from_lfs(root, lfs_paths)
    hooks.ensure_installed(root)  # as `git lfs track` does: a tracking repo pushes its objects
    return 0


def switch_from_lfs(root: Path, lfs_paths: list[str]) -> None:
    """Re-stage the files the new lines took from git-lfs, so the next commit stores them with git-theta.

    Without this a plain `git add` keeps their LFS pointers (git sees the working tree file unchanged), and
    only `git add --renormalize` would switch them.
    """
    now = git.attr_for_paths("filter", lfs_paths, cwd=root)
    switched = [p for p in lfs_paths if now.get(p) == "theta"]
    ready = [p for p in switched if not _is_lfs_pointer(root / p)]
    for pointer in sorted(set(switched) - set(ready)):
        print(
            f"git-theta: warning: {pointer}: the working tree holds a git-lfs pointer, not the file: run "
            f"`git lfs pull --include {shlex.quote(pointer)}`, then `git add --renormalize -- {shlex.quote(pointer)}`",
            file=sys.stderr,
        )
    if ready:
        git.run("add", "--renormalize", "--", *ready, cwd=root)
        for moved in ready:
            print(f"re-staged with git-theta (was git-lfs): {moved}; commit to switch it")


def _is_lfs_pointer(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(len(lfs_pointer.PREFIX)) == lfs_pointer.PREFIX
    except OSError:
        return False
