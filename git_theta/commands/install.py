"""git theta install: configure the filter, diff and merge drivers in git config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from git_theta import git, hooks, raw_blobs
from git_theta.errors import ThetaError
from git_theta.installation import NOT_ON_PATH, SETTINGS, filter_problem, guarded, program_of

__all__ = ["NOT_ON_PATH", "SETTINGS", "filter_problem", "guarded", "program_of", "install"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("install", help="configure git to use git-theta", description=__doc__)
    parser.add_argument(
        "--local", action="store_true", help="configure only the current repository (default: global, for your user)"
    )
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
