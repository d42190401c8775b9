"""git theta merge: merge N revisions of a checkpoint, or redo the merge of a conflicted checkpoint.

    git theta merge REV1 REV2 [REV...] --path PATH [--base REV] [--strategy NAME] [--arg NAME=VALUE]...
    git theta merge --redo PATH [--strategy NAME] [--arg NAME=VALUE]...
    git theta merge --mergekit-config FILE --path PATH
    git theta merge --list-strategies

The merged model is written to the working tree and staged; commit it with
`git commit`, which records the merged revisions as parents (MERGE_HEAD is
written as `git merge --no-commit` does). Without --strategy, git config,
the policy file and the terminal prompt decide, as in `git merge`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from git_theta import git, snapshots
from git_theta.errors import ThetaError
from git_theta.merge import bundle, mergekit
from git_theta.merge import revisions as merge_revisions
from git_theta.merge.policy import make_choice, parse_assignments
from git_theta.merge.reference import strategy_reference
from git_theta.merge.unresolved import UnresolvedConflicts
from git_theta.repo import Repo


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="merge revisions of a checkpoint with a strategy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "revisions",
        nargs="*",
        metavar="REV",
        help="two or more revisions (branches, tags, commits); the first counts as ours",
    )
    parser.add_argument("--path", help="the checkpoint's path (with REVs)")
    parser.add_argument(
        "--base", metavar="REV", help="the merge base revision (default: git merge-base --octopus of the REVs)"
    )
    parser.add_argument(
        "--redo",
        metavar="PATH",
        help="redo the merge of PATH, conflicted in a running `git merge` (index stages 1, 2, 3)",
    )
    parser.add_argument(
        "--strategy",
        metavar="NAME",
        help="strategy for every parameter changed on several sides (overrides git config and the policy file)",
    )
    parser.add_argument(
        "--arg", action="append", default=[], metavar="NAME=VALUE", help="a strategy argument; repeat for several"
    )
    parser.add_argument(
        "--mergekit-config", metavar="FILE", help="merge as a mergekit YAML recipe says (models named by revisions)"
    )
    parser.add_argument(
        "--list-strategies", action="store_true", help="print every strategy with its definition and arguments"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help=(
            "overwrite uncommitted changes to PATH in the working tree (the file is first kept under "
            ".git/theta/backup/)"
        ),
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.list_strategies:
        sys.stdout.write(strategy_reference(builtin_only=False))
        return 0
    choice = (
        make_choice(args.strategy, parse_assignments(args.arg, "--arg"), f"--strategy {args.strategy}")
        if args.strategy
        else None
    )
    if args.arg and not args.strategy:
        raise ThetaError("--arg needs --strategy")
    recipe = None
    revisions: list[str] = args.revisions
    if args.mergekit_config:
        if args.revisions or args.strategy or args.base or args.redo:
            raise ThetaError(
                "--mergekit-config takes only --path (and --force): the recipe names the models, base and method"
            )
        recipe = mergekit.load(Path(args.mergekit_config))
        revisions, choice = recipe.revisions, recipe.choice
    repo = Repo.discover()
    toplevel = git.toplevel()
    try:
        if args.redo:
            if revisions or args.path or args.base:
                raise ThetaError("--redo takes only a path (and --strategy/--arg); the versions come from the index")
            redo = bundle.redo_bundle if bundle.applies(toplevel, _repo_path(toplevel, args.redo)) else None
            if redo is not None:  # a TensorFlow bundle: every file of it, then the .index's CRC-32Cs
                redo(
                    repo=repo,
                    toplevel=toplevel,
                    path=_repo_path(toplevel, args.redo),
                    choice=choice,
                    force=args.force,
                    report=_report,
                )
            else:
                merge_revisions.redo_merge(
                    repo=repo, toplevel=toplevel, path=args.redo, choice=choice, force=args.force, report=_report
                )
        else:
            if len(revisions) < 2 or not args.path:
                raise ThetaError("give two or more revisions and --path PATH (or --redo PATH, or --list-strategies)")
            if bundle.applies(toplevel, _repo_path(toplevel, args.path)):
                raise ThetaError(
                    f"{args.path}: a TensorFlow bundle is merged as a unit after `git merge` stops on it, with "
                    f"`git theta merge --redo {args.path}`; merging revisions with --path does not rewrite its .index"
                )
            merge_revisions.merge_revisions(
                repo=repo,
                toplevel=toplevel,
                revisions=revisions,
                path=args.path,
                base=args.base,
                choice=choice,
                recipe=recipe,
                recipe_file=args.mergekit_config,
                strategy=args.strategy,
                force=args.force,
                report=_report,
            )
    except UnresolvedConflicts as error:
        print(f"git-theta: {error}", file=sys.stderr)
        return 1
    return 0


def _report(line: str) -> None:
    print(line, file=sys.stderr)


def _repo_path(toplevel: Path, path: str) -> str:
    return snapshots.repo_paths(toplevel, [path])[0]
