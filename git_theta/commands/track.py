"""git theta track: store files matching patterns with git-theta (.gitattributes)."""

from __future__ import annotations

import argparse

from git_theta import attributes, git, hooks


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("track", help="track checkpoint files matching patterns", description=__doc__)
    parser.add_argument("patterns", nargs="+", metavar="PATTERN", help="gitattributes pattern, e.g. '*.safetensors'")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = git.toplevel() / ".gitattributes"
    added = attributes.track(path, args.patterns)
    for pattern in args.patterns:
        print(f"{'tracking' if pattern in added else 'already tracked'}: {pattern}")
    hooks.ensure_installed(path.parent)  # as `git lfs track` does: a tracking repo pushes its objects
    return 0
