"""git theta filter-process: the long-running clean/smudge filter (one process per git command)."""

from __future__ import annotations

import fcntl
import gc
import os
import sys
from typing import IO, TYPE_CHECKING

from git_theta import files, filter_protocol
from git_theta.display import invoker
from git_theta.repo import Repo

if TYPE_CHECKING:
    import argparse  # git_theta.main starts this verb without a parser: argparse is not imported for it


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("filter-process", help="long-running filter (used by git)", description=__doc__)
    parser.set_defaults(run=run)


PIPE_BYTES = 1 << 20


def _widen_pipes() -> None:
    """Ask Linux for 1 MiB pipes to and from git (default 64 KiB): fewer switches between the two processes."""
    set_pipe_size = getattr(fcntl, "F_SETPIPE_SZ", 1031)
    for stream in (sys.stdin, sys.stdout):
        try:
            fcntl.fcntl(stream.fileno(), set_pipe_size, PIPE_BYTES)
        except (OSError, ValueError):
            pass  # not a pipe, not Linux, or above the system's limit: the default works too


def _uncollected(handler: filter_protocol.Handler) -> filter_protocol.Handler:
    """`handler` with Python's cyclic garbage collector paused while it runs, and running again between files.

    A file of 10^5 tensors makes ~10^6 long-lived objects (its metadata) and almost no cycles (~400 objects), yet
    each collection of the oldest generation traversed them all: 0.52-0.63 s of the 4.1-4.8 s of CPU of a
    100,000-tensor clean, 0.13 s of its checkout. Cycles made meanwhile are collected after the file."""

    def paused(path: str, content: IO[bytes], out: IO[bytes]) -> None:
        enabled = gc.isenabled()
        gc.disable()
        try:
            handler(path, content, out)
        finally:
            if enabled:
                gc.enable()

    return paused


def run(args: argparse.Namespace | None) -> int:
    repo = Repo.discover(started_by_git=True)
    # Temp files a killed filter left in lfs/tmp go now, not only at the next write or gc (one listdir).
    files.remove_stale(repo.store.tmp_dir)
    # Read once here: leave metadata in the working tree for `git theta checkout`,
    # or its view for textconv when git only displays blobs (see git_theta/display/invoker.py).
    mode = invoker.smudge_mode()

    # clean and smudge are imported at their first request: a checkout never needs
    # clean's modules, and git waits for this process to start.
    def on_clean(path: str, content: IO[bytes], out: IO[bytes]) -> None:
        from git_theta import clean

        out.write(clean.clean(repo, path, content))

    def on_smudge(path: str, content: IO[bytes], out: IO[bytes]) -> None:
        if mode == invoker.VIEW:
            from git_theta.display import view

            out.write(view.smudged_view(content.read(), path, repo))
        elif mode == invoker.METADATA:
            out.write(content.read())
        else:
            from git_theta import smudge
            from git_theta.transfer import on_demand

            smudge.smudge_stream(repo.store, path, content, out, on_demand.fetcher(repo))  # type: ignore[arg-type]

    _widen_pipes()
    handlers = {"clean": _uncollected(on_clean), "smudge": _uncollected(on_smudge)}
    filter_protocol.serve(sys.stdin.buffer, sys.stdout.buffer, handlers)
    # git waits for this process to exit before it exits itself. Every answer is
    # written and nothing is left to clean up, so skip the interpreter's teardown
    # (joining idle pool threads, freeing modules): 30-50 ms after each checkout.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
