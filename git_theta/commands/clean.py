"""git theta clean: one-shot clean filter (checkpoint on stdin, metadata on stdout)."""

from __future__ import annotations

import argparse
import sys

from git_theta import clean
from git_theta.repo import Repo


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("clean", help="clean filter for one file (used by git)", description=__doc__)
    parser.add_argument("path", help="the file's path in the repository (%%f)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    output = clean.clean(repo=Repo.discover(), path=args.path, stream=sys.stdin.buffer)
    sys.stdout.buffer.write(output)
    sys.stdout.buffer.flush()
    return 0
