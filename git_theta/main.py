"""The `git theta` / `git-theta` command line: parse arguments, dispatch, map errors to exit codes."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence

from git_theta import __version__
from git_theta.commands import add, checkout, clean, filter_process, fsck, install, ls_files, smudge, textconv, track, uninstall, untrack
from git_theta.errors import ThetaError

COMMANDS = [install, uninstall, track, untrack, add, checkout, ls_files, fsck, clean, smudge, filter_process, textconv]

EXIT_USER_ERROR = 1
EXIT_BUG = 3
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="git theta", description="Version-control machine-learning model checkpoints in git.")
    parser.add_argument("--version", action="version", version=f"git-theta {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.run(args))
    except ThetaError as error:
        print(f"git-theta: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("git-theta: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_USER_ERROR
    except Exception:
        return _report_bug()


def _report_bug() -> int:
    fd, log_path = tempfile.mkstemp(prefix="git-theta-crash-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        traceback.print_exc(file=log)
    print(f"git-theta: internal error (a bug): {sys.exc_info()[1]!r}\nthe traceback is in {log_path}; please report it", file=sys.stderr)
    return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
