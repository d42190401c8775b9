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

from git_theta import git, metadata, smudge, snapshots
from git_theta.errors import ThetaError
from git_theta.files import write_atomically
from git_theta.merge import local_changes, mergekit, record, settings
from git_theta.merge.choose import chooser
from git_theta.merge.engine import merge_metadata
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
    command_line = (
        make_choice(args.strategy, parse_assignments(args.arg, "--arg"), f"--strategy {args.strategy}")
        if args.strategy
        else None
    )
    if args.arg and not args.strategy:
        raise ThetaError("--arg needs --strategy")
    recipe = None
    if args.mergekit_config:
        if args.revisions or args.strategy or args.base or args.redo:
            raise ThetaError(
                "--mergekit-config takes only --path (and --force): the recipe names the models, base and method"
            )
        recipe = mergekit.load(Path(args.mergekit_config))
        args.revisions, command_line = recipe.revisions, recipe.choice
    repo = Repo.discover()
    toplevel = git.toplevel()
    base_spec: str | None
    parents: list[str] = []
    if args.redo:
        if args.revisions or args.path or args.base:
            raise ThetaError("--redo takes only a path (and --strategy/--arg); the versions come from the index")
        path = snapshots.repo_paths(toplevel, [args.redo])[0]
        specs, base_spec, labels = [f":2:{path}", f":3:{path}"], f":1:{path}", ["ours", "theirs"]
        if not args.force:
            refuse_edits_since_conflict(toplevel, path)
    else:
        if len(args.revisions) < 2 or not args.path:
            raise ThetaError("give two or more revisions and --path PATH (or --redo PATH, or --list-strategies)")
        path = snapshots.repo_paths(toplevel, [args.path])[0]
        if not args.force:
            refuse_local_changes(toplevel, path)
        base_rev = recipe.base if recipe else args.base or merge_base(args.revisions, toplevel)
        specs, labels = [_spec(rev, path, recipe is not None) for rev in args.revisions], list(args.revisions)
        base_spec = _spec(base_rev, path, recipe is not None) if base_rev else None
    versions = [read_version(spec, toplevel, required=True) for spec in specs]
    base = read_version(base_spec, toplevel, required=False) if base_spec else None
    if recipe and recipe.dtype:
        mergekit.check_dtype(recipe.dtype, [v for v in versions if v is not None], args.mergekit_config)
    if recipe and recipe.layer_range:
        mergekit.check_layers(recipe.layer_range, [v for v in versions if v is not None], args.mergekit_config)
    if not args.redo:
        commits = [_commit_part(rev, recipe is not None) for rev in args.revisions]
        parents = record.merge_parents(commits, path, toplevel)
    hint = (
        f"run `git theta merge ... --strategy NAME` for {path}"
        if not args.redo
        else f"run `git theta merge --redo {path} --strategy NAME`"
    )
    context = version_context(labels, versions, base, toplevel, bool(args.redo))
    choose = chooser(toplevel, path, labels, command_line, hint, context)
    try:
        present = [v for v in versions if v is not None]
        result = merge_metadata(repo.store, path, present, base, labels, choose, exhaustive=recipe is not None)
    except UnresolvedConflicts as error:
        print(f"git-theta: {error}", file=sys.stderr)
        return 1
    if args.force and (toplevel / path).is_file():
        backup = local_changes.back_up(repo.common_dir, toplevel, path)
        print(f"git-theta: the working-tree {path} before this merge is kept as {backup}", file=sys.stderr)
    write_and_stage(repo, toplevel, path, result.metadata)
    print(result.summary(path).replace("git-theta: merged", "git-theta: merged and staged"), file=sys.stderr)
    if parents:
        how = f"mergekit recipe {args.mergekit_config}" if recipe else args.strategy
        record.record(parents, record.message(args.revisions, path, how), toplevel)
        print(
            f"git-theta: `git commit` records a merge of HEAD and {len(parents)} more parent(s) (MERGE_HEAD written; "
            "`git merge --abort` undoes it)",
            file=sys.stderr,
        )
    return 0


def version_context(
    labels: list[str],
    versions: list[metadata.Metadata | None],
    base: metadata.Metadata | None,
    toplevel: Path,
    redo: bool,
) -> settings.Context:
    """Per-model values name versions by label (the revisions as given): `ours` the first, `HEAD` the current commit."""
    names = [name for meta in [*versions, base] if meta is not None for name in meta.params]
    aliases = {"ours": 0, "HEAD": 0}
    if not redo:
        head = git.commit_id("HEAD", toplevel)
        commits = git.commit_ids([label.partition(":")[0] for label in labels], toplevel)
        found = [index for index, commit in enumerate(commits) if commit == head]
        if found:
            aliases["HEAD"] = found[0]
        else:
            del aliases["HEAD"]
    return settings.Context(tuple(labels), aliases, settings.layer_count(names))


def _spec(rev: str, path: str, recipe: bool) -> str:
    """REV:PATH for a revision; a recipe's model may name its own file as REV:FILE."""
    return rev if recipe and ":" in rev else f"{rev}:{path}"


def _commit_part(rev: str, recipe: bool) -> str:
    return rev.partition(":")[0] if recipe else rev


def refuse_local_changes(toplevel: Path, path: str) -> None:
    """The merge overwrites PATH in the working tree and the index: never over uncommitted work."""
    # By content, as git does: a checkpoint whose timestamp changed but whose content did not is no change.
    index_version = git.blob(f":0:{path}", cwd=toplevel)
    unstaged = index_version is not None and local_changes.worktree_differs(toplevel, path, index_version)
    has_head = git.run("rev-parse", "--verify", "-q", "HEAD", cwd=toplevel, check=False).returncode == 0
    staged = (
        has_head
        and git.run("diff-index", "--cached", "--quiet", "HEAD", "--", path, cwd=toplevel, check=False).returncode != 0
    )
    if unstaged or staged:
        raise local_changes.LocalChangesError(
            f"{path} has uncommitted changes; commit or stash them first (the merge overwrites the file and its index "
            "entry), or rerun with --force (a backup is kept under .git/theta/backup/)"
        )


def refuse_edits_since_conflict(toplevel: Path, path: str) -> None:
    """--redo replaces PATH; the conflict left our version (:2:) there, so anything else is the user's work."""
    ours = git.blob(f":2:{path}", cwd=toplevel)
    if ours is not None and local_changes.worktree_differs(toplevel, path, ours):
        raise local_changes.LocalChangesError(
            f"{path}: the working-tree file has changes that are not in the merge's 'ours' version (:2:{path}); "
            "--redo would overwrite them. Rerun with --force to overwrite them (a backup is kept under "
            ".git/theta/backup/)"
        )


def merge_base(revisions: list[str], toplevel: Path) -> str | None:
    """The octopus merge base of the revisions, None for unrelated histories."""
    result = git.run("merge-base", "--octopus", *revisions, cwd=toplevel, check=False)
    if result.returncode != 0:
        return None
    return result.stdout.decode().strip() or None


def read_version(spec: str, toplevel: Path, required: bool) -> metadata.Metadata | None:
    data = git.blob(spec, cwd=toplevel)
    if data is None:
        if required:
            raise ThetaError(
                f"{spec}: no such file (a missing revision, or no merge conflict for this path in the index)"
            )
        return None
    if not metadata.looks_like_metadata(data):
        raise ThetaError(f"{spec}: not git-theta metadata (is the path tracked with `git theta track`?)")
    return metadata.parse(data, spec)


def write_and_stage(repo: Repo, toplevel: Path, path: str, meta: metadata.Metadata) -> None:
    """Write the merged checkpoint to the working tree (atomically), then stage exactly this metadata."""
    data = meta.serialize()
    write_atomically(toplevel / path, lambda out: smudge.smudge(repo.store, path, data, out))
    blob = git.run("hash-object", "-w", "--no-filters", "--stdin", cwd=toplevel, input=data).stdout.decode().strip()
    git.run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", cwd=toplevel)
    # Re-adds the file with the metadata just staged as the prior version: nothing is stored
    # again, and the index records the file's stat so `git status` stays quiet.
    git.run("add", "--", path, cwd=toplevel)
