"""git theta install: configure the filter, diff and merge drivers in git config."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

from git_theta import git, hooks, raw_blobs
from git_theta.errors import ThetaError

EXECUTABLE = "git-theta"

SETTINGS: dict[str, str] = {
    "filter.theta.process": f"{EXECUTABLE} filter-process",
    "filter.theta.clean": f"{EXECUTABLE} clean %f",
    "filter.theta.smudge": f"{EXECUTABLE} smudge %f",
    "filter.theta.required": "true",
    "diff.theta.textconv": f"{EXECUTABLE}-textconv",  # a lean launcher: git runs it once per file version shown
    "diff.theta.binary": "false",
    "merge.theta.name": "git-theta model merge",
    "merge.theta.driver": f"{EXECUTABLE} merge-driver %O %A %B %P",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("install", help="configure git to use git-theta", description=__doc__)
    parser.add_argument("--local", action="store_true", help="configure only the current repository (default: global, for your user)")
    parser.set_defaults(run=run)


def scope_of(local: bool) -> str:
    if local and not git.is_inside_repo():
        raise ThetaError("--local needs to run inside a git repository")
    return "local" if local else "global"


def install(scope: str, cwd: Path | None = None) -> list[str]:
    """Set every key; returns the keys that changed (none on a second run)."""
    changed = []
    for key, value in SETTINGS.items():
        if git.config_get(key, cwd=cwd, scope=scope) != value:
            git.config_set(key, value, scope, cwd=cwd)
            changed.append(key)
    return changed


def filter_problem(cwd: Path | None = None) -> str | None:
    """Why `git add` here would not run git-theta's clean filter, None when it would.

    Without filter.theta.* in any scope git has no such filter and adds a tracked checkpoint raw, whole,
    into its object database, silently. A configured command git cannot start fails every add instead.
    """
    commands = {key: git.config_get(key, cwd=cwd) for key in ("filter.theta.process", "filter.theta.clean")}
    configured = {key: value for key, value in commands.items() if value}
    if not configured:
        return ("git-theta's filter is not configured (filter.theta.* is unset in every git config scope), so `git add` "
                "would store checkpoints raw in git; run `git theta install` (or `git theta install --local`) first")
    for key, value in configured.items():
        words = shlex.split(value) if value.strip() else []
        if not words or shutil.which(words[0], path=None) is None:
            program = words[0] if words else value
            return (f"git config {key} runs {program!r}, which cannot be run here (not on PATH), so `git add` would fail; "
                    f"activate the environment git-theta is installed in, or rerun `git theta install` from it")
    return None


def run(args: argparse.Namespace) -> int:
    scope = scope_of(args.local)
    changed = install(scope)
    print(f"git-theta configured ({scope} git config, {len(changed)} setting(s) changed)")
    if git.is_inside_repo():
        # Hooks are per repository (like `git lfs install`): run inside a repo, set up its pre-push hook.
        print(hooks.install())
        # Checkpoints added before the filter existed went into git raw; now is when they can be fixed.
        for problem in raw_blobs.problems(git.toplevel()):
            print(f"git-theta: warning: {problem}", file=sys.stderr)
    return 0
