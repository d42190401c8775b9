"""git theta ls-files: list the checkpoints git-theta tracks in the index."""

from __future__ import annotations

import argparse

from git_theta import git, snapshots


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("ls-files", help="list tracked checkpoints", description=__doc__)
    parser.add_argument("-l", "--long", action="store_true", help="also show format, parameter groups and stored bytes")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    root = git.toplevel()
    if not args.long:
        for path in git.ls_files_with_attr("filter", "theta", cwd=root):
            print(path)
        return 0
    for path, meta in snapshots.index_checkpoints(root=root):
        if meta is None:
            print(f"{path}\t(not stored by git-theta)")
            continue
        stored = sum(entry.stored_size for entry in meta.params.values())
        print(f"{path}\t{meta.format}\t{len(meta.params)} groups\t{stored} bytes stored")
    return 0
