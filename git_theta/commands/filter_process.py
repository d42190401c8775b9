"""git theta filter-process: the long-running clean/smudge filter (one process per git command)."""

from __future__ import annotations

import argparse
import sys
from typing import IO

from git_theta import clean, filter_protocol, smudge
from git_theta.repo import Repo


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("filter-process", help="long-running filter (used by git)", description=__doc__)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    repo = Repo.discover()

    def on_clean(path: str, content: IO[bytes], out: IO[bytes]) -> None:
        out.write(clean.clean(repo, path, content))

    def on_smudge(path: str, content: IO[bytes], out: IO[bytes]) -> None:
        smudge.smudge(repo.store, path, content.read(), out)  # type: ignore[arg-type]

    filter_protocol.serve(sys.stdin.buffer, sys.stdout.buffer, {"clean": on_clean, "smudge": on_smudge})
    return 0
