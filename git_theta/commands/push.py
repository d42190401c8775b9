"""git theta push: upload the objects that commits need to a remote, without pushing any ref.

`git push` does this on its own through the pre-push hook; this command is for
doing it explicitly (e.g. a hook was skipped with --no-verify, or for another remote).
"""

from __future__ import annotations

import argparse

from git_theta import git
from git_theta.repo import Repo
from git_theta.transfer import client, endpoint, pushing


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("push", help="upload model objects to a remote", description=__doc__)
    parser.add_argument(
        "remote", nargs="?", help="remote name, URL or path (default: the branch's push remote, else origin)"
    )
    parser.add_argument("refs", nargs="*", metavar="REF", help="commits whose objects to upload (default: HEAD)")
    parser.add_argument(
        "--all",
        action="store_true",
        help="consider the whole history of REFs, not only commits the remote-tracking refs lack",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    repo = Repo.discover(git.toplevel())
    remote = args.remote or endpoint.default_remote(repo.worktree, upload=True)
    tips = git.commit_ids(args.refs or ["HEAD"], repo.worktree)
    wanted = pushing.objects_for(repo=repo, remote=remote, tips=tips, remote_tips=[], everything=args.all)
    moved = client.upload(repo=repo, wanted=wanted, remote=remote)
    print(f"push: {len(wanted)} object(s) referenced, {moved.objects} uploaded ({moved.bytes} bytes)")
    return 0
