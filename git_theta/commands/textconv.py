"""git theta textconv: a one-line-per-group text view of a checkpoint, for `git diff`, `git log -p`, `git show`.

`git theta install` sets diff.theta.textconv to this command. Git's own line
diff of two such views then lists added (+), removed (-) and modified (- then +)
parameter groups with dtype, shape, update types and stored size. Metadata is
rendered without loading any tensor or object, so it works in a fresh clone.

For committed versions the smudge filter passes metadata through when a
display-only git command started it (git_theta/display/invoker.py). Git hands
textconv the working tree file itself (a real checkpoint, not metadata) when
the version to show is the one checked out; that file is read as the index's
metadata when it is unchanged since staging, and otherwise cleaned in memory
(hashes and sizes computed, nothing stored, index untouched). A rebuilt
checkpoint from elsewhere is matched to its metadata (git_theta/display/identify.py).
"""

from __future__ import annotations

import argparse
import sys

from git_theta.display import view
from git_theta.errors import ThetaError
from git_theta.main import tune_gc


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("textconv", help="text view of a checkpoint (used by git diff)", description=__doc__)
    parser.add_argument("file", help="a file holding git-theta metadata or a checkpoint")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(view.text_view(file=args.file))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`git-theta-textconv FILE`, what diff.theta.textconv runs: `git theta textconv` without loading
    every other command.

    Git starts it once per file version it shows (twice per file in `git log -p`), so start-up time is most of its cost.
    """
    tune_gc()
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: git-theta-textconv FILE", file=sys.stderr)
        return 1
    try:
        return run(argparse.Namespace(file=args[0]))
    except ThetaError as error:
        print(f"git-theta: error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1
