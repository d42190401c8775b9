"""git theta uninstall: remove git-theta's filter, diff and merge settings from git config."""

from __future__ import annotations

import argparse

from git_theta import git, hooks
from git_theta.commands.install import SETTINGS, scope_of


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("uninstall", help="remove git-theta's git config", description=__doc__)
    parser.add_argument("--local", action="store_true", help="change only the current repository (default: global)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    scope = scope_of(args.local)
    for key in SETTINGS:
        git.config_unset(key, scope)
    print(f"git-theta settings removed from {scope} git config")
    if git.is_inside_repo():
        # As install sets up the pre-push hook of the repository it runs in, whatever the scope;
        # but while another scope still runs our filter here, pushes still need the hook to upload objects.
        if git.config_get("filter.theta.process") is None:
            print(hooks.uninstall())
        else:
            print("pre-push hook kept: git-theta's filter is still configured for this repository (in another scope)")
    return 0
