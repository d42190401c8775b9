"""git theta add: stage checkpoint files (runs `git add`, which runs the clean filter)."""

from __future__ import annotations

import argparse

from git_theta import git


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("add", help="stage checkpoint files", description=__doc__)
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    git.run("add", "--", *args.paths)
    return 0
