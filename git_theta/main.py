"""The `git theta` / `git-theta` command line: parse arguments, dispatch, map errors to exit codes."""

from __future__ import annotations

import gc
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from git_theta import __version__
from git_theta.errors import OUT_OF_MEMORY, ThetaError, describe_os_error

if TYPE_CHECKING:
    import argparse

# verb -> module in git_theta.commands, in the order `--help` lists them. Modules
# are imported only when needed: git starts some verbs (filters, textconv) often.
COMMANDS = {
    "install": "install",
    "uninstall": "uninstall",
    "track": "track",
    "untrack": "untrack",
    "add": "add",
    "checkout": "checkout",
    "ls-files": "ls_files",
    "fsck": "fsck",
    "diff": "diff",
    "log": "log",
    "show": "show",
    "merge": "merge",
    "compact": "compact",
    "push": "push",
    "fetch": "fetch",
    "gc": "gc",
    "migrate": "migrate",
    "clean": "clean",
    "smudge": "smudge",
    "filter-process": "filter_process",
    "textconv": "textconv",
    "merge-driver": "merge_driver",
    "pre-push": "pre_push",
}

# Verbs git starts itself, for each command that cleans or smudges, with no options: run without building a
# parser, since argparse (with gettext and locale) is ~2.5 ms of every filter's start-up.
UNPARSED = {"filter-process": "filter_process"}

EXIT_USER_ERROR = 1
EXIT_BUG = 3
EXIT_INTERRUPTED = 130


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or one that knows only the verb `only` (cheaper to import)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="git theta", description="Version-control machine-learning model checkpoints in git."
    )
    parser.add_argument("--version", action="version", version=f"git-theta {__version__}")
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="show no progress bars (for git's filters: git config theta.progress false)",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for verb, module in COMMANDS.items():
        if only is None or verb == only:
            importlib.import_module(f"git_theta.commands.{module}").register(subparsers)
    return parser


# Python's default collector (a young-generation pass every 700 new containers) keeps re-traversing what a large
# parse builds: a 10^5-entry metadata file or safetensors header is ~10^6 containers that all stay alive, and
# the passes cost ~20% of parsing it, more at 10^6 entries. git-theta makes almost no reference cycles (frozen
# dataclasses, dicts, tuples: refcounting frees them), so it collects rarely instead of never.
GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


def main(argv: Sequence[str] | None = None) -> int:
    tune_gc()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:
        print(f"git-theta {__version__}")
        return 0
    args: argparse.Namespace | None = None
    run: Callable[[Any], int]
    if len(argv) == 1 and argv[0] in UNPARSED:
        run = importlib.import_module(f"git_theta.commands.{UNPARSED[argv[0]]}").run
    else:
        parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
        args = parser.parse_args(argv)
        if not hasattr(args, "run"):
            parser.print_help()
            return EXIT_USER_ERROR
        if args.quiet:
            from git_theta import progress

            progress.set_quiet()
        run = args.run
    try:
        return int(run(args))
    except ThetaError as error:
        from git_theta import redact  # a message may quote a URL (a remote's, a server's) with a token in it

        print(f"git-theta: error: {redact.text(str(error))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("git-theta: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_USER_ERROR
    except OSError as error:
        message = describe_os_error(error)
        if message is None:
            return _report_bug()
        print(f"git-theta: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except MemoryError:
        print(f"git-theta: error: {OUT_OF_MEMORY}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception:
        return _report_bug()


def _report_bug() -> int:
    # A bug's message and traceback may quote a URL with a token in it: the log and the line are redacted.
    # traceback is imported here: with linecache and tokenize it costs ~5 ms of every filter's start-up.
    import tempfile
    import traceback

    from git_theta import redact

    fd, log_path = tempfile.mkstemp(prefix="git-theta-crash-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        log.write(redact.text(traceback.format_exc()))
    print(
        f"git-theta: internal error (a bug): {redact.text(repr(sys.exc_info()[1]))}\nthe traceback is in {log_path}; "
        "please report it",
        file=sys.stderr,
    )
    return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
