"""git theta fetch: download the objects that revisions need and this repository lacks.

A checkout downloads what it needs by itself; fetch does it ahead of time (e.g.
before going offline). By default the objects of HEAD's checkpoints are fetched;
REVs name other commits (e.g. origin/main after `git fetch`); --all takes every
object referenced anywhere in the history of all refs.

--repair also re-hashes every local object those revisions reference and
downloads each corrupt one again (sha256-verified, then renamed over the
damaged file): what to run when a checkout or fsck reports a corrupt object.
"""

from __future__ import annotations

import argparse

from git_theta import git
from git_theta.repo import Repo
from git_theta.transfer import client, scan


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("fetch", help="download model objects from a remote", description=__doc__)
    parser.add_argument(
        "remote", nargs="?", help="remote name, URL or path (default: the branch's remote, else origin)"
    )
    parser.add_argument("revs", nargs="*", metavar="REV", help="commits whose checkpoints to fetch (default: HEAD)")
    parser.add_argument("--all", action="store_true", help="every object referenced in the history of all refs")
    parser.add_argument(
        "--repair",
        action="store_true",
        help="also verify the local objects they reference and download corrupt ones again",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    repo = Repo.discover(git.toplevel())
    wanted = scan.objects_of_revisions(cwd=repo.worktree, revs=args.revs, everything=args.all)
    if args.repair:
        corrupt, moved = client.repair(repo=repo, wanted=wanted, remote=args.remote)
        print(
            f"fetch: {len(wanted)} object(s) referenced and verified, {len(corrupt)} corrupt, {moved.objects} "
            f"downloaded ({moved.bytes} bytes)"
        )
        return 0
    moved = client.download(repo=repo, wanted=wanted, remote=args.remote)
    print(f"fetch: {len(wanted)} object(s) referenced, {moved.objects} downloaded ({moved.bytes} bytes)")
    return 0
