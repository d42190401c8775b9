"""git theta pre-push: run by the pre-push hook; uploads the objects the pushed commits need and the remote lacks."""

from __future__ import annotations

import argparse
import sys

from git_theta import git
from git_theta.repo import Repo
from git_theta.transfer import pushing


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("pre-push", help="pre-push hook body (used by git push)", description=__doc__)
    parser.add_argument("remote", help="the remote's name (or its URL when pushing to a URL)")
    parser.add_argument("url", nargs="?", help="the remote's URL")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    repo = Repo.discover(git.toplevel())
    updates = [u for u in (pushing.RefUpdate.parse(line) for line in sys.stdin.read().splitlines()) if u is not None]
    pushing.push_updates(repo=repo, remote=args.remote, updates=updates)
    return 0
