"""Which git command started this filter, read from /proc.

Git smudges every blob it hands to a textconv program (`git diff A B`,
`git log -p`, `git show`), which would rebuild whole models just to print
their parameter list. Those commands never write the working tree, so when
one of them started the filter, smudge renders the metadata's text view and
textconv only copies it: no tensor is loaded, no object is needed (a fresh
clone shows history without downloading anything), and no Python starts per
version shown. Anywhere /proc is
missing, or the parent is not recognised, smudge rebuilds as usual.
"""

from __future__ import annotations

import os
from pathlib import Path

# git commands that read blobs for display only and never check out files.
DISPLAY_ONLY = {"diff", "diff-files", "diff-index", "diff-tree", "log", "show", "whatchanged", "format-patch"}
# Global git options that take their value as the next argument.
_VALUE_OPTIONS = {
    "-c",
    "-C",
    "--git-dir",
    "--work-tree",
    "--namespace",
    "--super-prefix",
    "--config-env",
    "--exec-path",
}
_MAX_ANCESTORS = 4  # git may start the filter through `sh -c`


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", errors="replace") for part in raw.split(b"\0") if part]


def git_command(argv: list[str]) -> list[str]:
    """The subcommand and its arguments from a git command line (global options skipped)."""
    rest = argv[1:]
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        if option in _VALUE_OPTIONS and rest:
            rest.pop(0)
    return rest


def invoking_git_command() -> list[str]:
    """The nearest ancestor git process's subcommand and arguments, or [] if none is found."""
    pid: int | None = os.getppid()
    for _ in range(_MAX_ANCESTORS):
        if pid is None or pid <= 1:
            return []
        argv = _argv(pid)
        if argv and os.path.basename(argv[0]) == "git":
            return git_command(argv)
        pid = _parent(pid)
    return []


SKIP_SMUDGE_VARIABLE = "GIT_THETA_SKIP_SMUDGE"

REBUILD, METADATA, VIEW = "rebuild", "metadata", "view"


def smudge_mode() -> str:
    """What smudge writes: the checkpoint (REBUILD), the metadata as committed (METADATA, asked for by
    GIT_THETA_SKIP_SMUDGE) or its text view (VIEW, for a display-only git command).

    Under a display-only command the smudged blob only ever reaches textconv, so rendering it here, in the one
    filter process git starts per command, lets textconv copy it instead of starting Python once per version.
    """
    if os.environ.get(SKIP_SMUDGE_VARIABLE, "") not in ("", "0"):
        return METADATA
    return VIEW if display_only(invoking_git_command()) else REBUILD


def display_only(command: list[str]) -> bool:
    """True for git commands that only show blobs (diff, log -p, show, stash show)."""
    if not command:
        return False
    return command[0] in DISPLAY_ONLY or command[:2] == ["stash", "show"]
