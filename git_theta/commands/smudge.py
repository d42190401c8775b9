"""git theta smudge: one-shot smudge filter (metadata on stdin, checkpoint on stdout)."""

from __future__ import annotations

import argparse
import sys

from git_theta import smudge
from git_theta.display import invoker
from git_theta.repo import Repo
from git_theta.transfer import on_demand


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("smudge", help="smudge filter for one file (used by git)", description=__doc__)
    parser.add_argument("path", help="the file's path in the repository (%%f)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    data = sys.stdin.buffer.read()
    mode = invoker.smudge_mode()
    if mode == invoker.VIEW:
        from git_theta.display import view

        sys.stdout.buffer.write(view.smudged_view(data, args.path, Repo.discover()))
    elif mode == invoker.METADATA:
        sys.stdout.buffer.write(data)
    else:
        repo = Repo.discover()
        smudge.smudge(
            store=repo.store, path=args.path, data=data, out=sys.stdout.buffer, fetch_missing=on_demand.fetcher(repo)
        )
    sys.stdout.buffer.flush()
    return 0
