"""git theta track: store files matching patterns with git-theta (.gitattributes)."""

from __future__ import annotations

import argparse
import sys

from git_theta import attributes, git, hooks
from git_theta.commands import install
from git_theta.errors import ThetaError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("track", help="track checkpoint files matching patterns", description=__doc__)
    parser.add_argument("patterns", nargs="+", metavar="PATTERN", help="gitattributes pattern, e.g. '*.safetensors'")
    parser.add_argument("--exclude", action="store_true", help="the patterns name files git should store itself, though a tracked pattern matches them (e.g. 'weights/*.json' under 'weights/**')")
    parser.add_argument("--force", action="store_true", help="write .gitattributes even when git-theta's filter is not set up (git would then add such files raw)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = git.toplevel() / ".gitattributes"
    if args.exclude:
        added = attributes.exclude(path, args.patterns)
        for pattern in args.patterns:
            print(f"{'excluding' if pattern in added else 'already excluded'}: {pattern} (stored by git itself)")
        return 0
    problem = install.filter_problem(path.parent)
    if problem and not args.force:
        raise ThetaError(f"{path.name}: not tracking {' '.join(args.patterns)}: {problem} (or rerun with --force)")
    if problem:
        print(f"git-theta: warning: {problem}", file=sys.stderr)
    added = attributes.track(path, args.patterns)
    for pattern in args.patterns:
        print(f"{'tracking' if pattern in added else 'already tracked'}: {pattern}")
    hooks.ensure_installed(path.parent)  # as `git lfs track` does: a tracking repo pushes its objects
    return 0
