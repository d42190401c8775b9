"""git theta untrack: stop tracking patterns with git-theta (.gitattributes)."""

from __future__ import annotations

import argparse

from git_theta import attributes, git


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("untrack", help="stop tracking patterns", description=__doc__)
    parser.add_argument("patterns", nargs="+", metavar="PATTERN", help="a pattern given to `git theta track`")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = git.toplevel() / ".gitattributes"
    removed = attributes.untrack(path=path, patterns=args.patterns)
    for pattern in args.patterns:
        print(f"{'untracked' if pattern in removed else 'was not tracked'}: {pattern}")
    return 0
