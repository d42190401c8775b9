"""What `git theta install` writes into git config, and whether git would run git-theta's filter here.

Library code for the install/track/migrate commands (commands import library modules, never the reverse).
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from git_theta import git

EXECUTABLE = "git-theta"
NOT_ON_PATH = (
    f"git-theta: error: the {EXECUTABLE} command is not on PATH (git runs it for the checkpoints this repository "
    "tracks); activate the virtual environment git-theta is installed in, or install it: pip install git-theta"
)


def guarded(command: str) -> str:
    """`command` as git runs it (through sh), saying what is missing when git-theta is not on PATH.

    Without this, sh's "git-theta: not found" is followed by git's protocol errors ("Could not write client
    identification", "the remote end hung up unexpectedly"), which do not say what to do.
    """
    program = shlex.split(command)[0]
    return (
        f"command -v {program} >/dev/null 2>&1 || {{ echo {shlex.quote(NOT_ON_PATH)} >&2; exit 127; }}; exec {command}"
    )


SETTINGS: dict[str, str] = {
    "filter.theta.process": guarded(f"{EXECUTABLE} filter-process"),
    "filter.theta.clean": guarded(f"{EXECUTABLE} clean %f"),
    "filter.theta.smudge": guarded(f"{EXECUTABLE} smudge %f"),
    "filter.theta.required": "true",
    "diff.theta.textconv": guarded(
        f"{EXECUTABLE}-textconv"
    ),  # a lean launcher: git runs it once per file version shown
    "diff.theta.binary": "false",
    "merge.theta.name": "git-theta model merge",
    "merge.theta.driver": guarded(f"{EXECUTABLE} merge-driver %O %A %B %P"),
}


def program_of(command: str) -> str:
    """The program a configured command runs: the one after `exec` in a guarded() command."""
    words = shlex.split(command.rsplit("; exec ", 1)[-1]) if command.strip() else []
    return words[0] if words else command


def filter_problem(cwd: Path | None = None) -> str | None:
    """Why `git add` here would not run git-theta's clean filter, None when it would.

    Without filter.theta.* in any scope git has no such filter and adds a tracked checkpoint raw, whole,
    into its object database, silently. A configured command git cannot start fails every add instead.
    """
    commands = {key: git.config_get(key, cwd=cwd) for key in ("filter.theta.process", "filter.theta.clean")}
    configured = {key: value for key, value in commands.items() if value}
    if not configured:
        return (
            "git-theta's filter is not configured (filter.theta.* is unset in every git config scope), so `git add` "
            "would store checkpoints raw in git; run `git theta install` (or `git theta install --local`) first"
        )
    for key, value in configured.items():
        program = program_of(value)
        if not value.strip() or shutil.which(program, path=None) is None:
            return (
                f"git config {key} runs {program!r}, which cannot be run here (not on PATH), so `git add` would fail; "
                f"activate the environment git-theta is installed in, or rerun `git theta install` from it"
            )
    return None
