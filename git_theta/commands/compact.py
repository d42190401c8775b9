"""git theta compact: rewrite the index version's update chains as dense objects.

Every parameter stored as a chain (a dense start plus updates) is rebuilt and
stored whole; the new metadata is staged in place of the old. Checkout then
reads one object per parameter. Older commits keep their chains.
"""

from __future__ import annotations

import argparse

from git_theta import git, metadata, smudge, snapshots
from git_theta.errors import ThetaError
from git_theta.repo import Repo
from git_theta.update_engine import auto


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "compact", help="rewrite update chains of staged checkpoints as dense", description=__doc__
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="checkpoints to compact (default: every tracked checkpoint in the index)",
    )
    parser.set_defaults(run=run)


def compact(repo: Repo, path: str) -> int:
    """Compact the index version of `path` (relative to the top level); returns how many chains were rewritten."""
    data = git.blob(f":{path}", cwd=repo.worktree)
    if data is None:
        raise ThetaError(f"{path} is not in the index")
    if not metadata.looks_like_metadata(data):
        raise ThetaError(f"{path} is not stored by git-theta in the index")
    meta = metadata.parse(data, f":{path}")
    rewritten = 0
    for name, entry in sorted(meta.params.items()):
        if len(entry.stored) > 1:
            value = smudge.rebuild(repo.store, name, entry, path)
            meta.params[name] = auto.store_dense(repo.store, value, entry.hash)
            rewritten += 1
    if rewritten:
        blob = (
            git.run("hash-object", "-w", "--no-filters", "--stdin", cwd=repo.worktree, input=meta.serialize())
            .stdout.decode()
            .strip()
        )
        mode = git.output("ls-files", "-s", "--", path, cwd=repo.worktree).split()[0]
        git.run("update-index", "--cacheinfo", f"{mode},{blob},{path}", cwd=repo.worktree)
    return rewritten


def run(args: argparse.Namespace) -> int:
    root = git.toplevel()
    repo = Repo.discover(root)
    if args.paths:
        paths = snapshots.repo_paths(root, args.paths)
    else:
        paths = git.ls_files_with_attr("filter", "theta", cwd=root)
    for path in paths:
        count = compact(repo, path)
        print(f"{path}: {count} chain(s) rewritten as dense" if count else f"{path}: nothing to compact")
    return 0
