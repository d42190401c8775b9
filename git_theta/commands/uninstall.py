"""git theta uninstall: remove git-theta's filter, diff and merge settings from git config.

The git-lfs prune settings go too where install set them and they still hold its value.
"""

from __future__ import annotations

import argparse
import sys

from git_theta import git, hooks
from git_theta.installation import scope_of, unfiltered_checkpoints, uninstall


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "uninstall",
        help="remove git-theta's git config",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--local", action="store_true", help="change only the current repository (default: global)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    scope = scope_of(local=args.local)
    removed = uninstall(scope=scope)
    if removed:
        print(f"git-theta settings removed from {scope} git config ({len(removed)} setting(s))")
    else:
        print(f"git-theta was not configured in {scope} git config: nothing to remove")
    if git.is_inside_repo():
        stranded = unfiltered_checkpoints()
        if stranded:
            # filter.theta.required only fails when the filter is configured: without it, git checks out the
            # stored metadata text as the file, silently.
            print(
                f"git-theta: warning: {len(stranded)} tracked checkpoint(s) here (e.g. {stranded[0]}) will now check "
                f"out as git-theta's metadata text, not the model; run `git theta install` to restore them",
                file=sys.stderr,
            )
        # As install sets up the pre-push hook of the repository it runs in, whatever the scope;
        # but while another scope still runs our filter here, pushes still need the hook to upload objects.
        if git.config_get("filter.theta.process") is None:
            print(hooks.uninstall())
        else:
            print("pre-push hook kept: git-theta's filter is still configured for this repository (in another scope)")
    return 0
