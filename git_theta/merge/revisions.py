"""`git theta merge`'s library side: merge N revisions of a checkpoint, or redo the merge of a conflicted one.

The merged checkpoint is written to the working tree and staged; for revisions, MERGE_HEAD is written so that
`git commit` records them as parents. Progress lines go to `report` (the command prints them to stderr).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from git_theta import git, metadata, smudge, snapshots
from git_theta.errors import ThetaError
from git_theta.files import write_atomically
from git_theta.merge import local_changes, mergekit, record, settings
from git_theta.merge.choose import chooser
from git_theta.merge.engine import merge_metadata
from git_theta.merge.policy import Choice
from git_theta.repo import Repo


@dataclass(frozen=True)
class Versions:
    """What one merge reads: a blob spec and a label per version, and the base's spec."""

    path: str
    specs: list[str]
    labels: list[str]
    base_spec: str | None


def merge_revisions(
    *,
    repo: Repo,
    toplevel: Path,
    revisions: list[str],
    path: str,
    base: str | None,
    choice: Choice | None,
    recipe: mergekit.Recipe | None,
    recipe_file: str | None,
    strategy: str | None,
    force: bool,
    report: Callable[[str], None],
) -> None:
    """Merge REV:PATH for each revision (the first counts as ours), write and stage it, and write MERGE_HEAD.

    Raises UnresolvedConflicts when no choice covers a conflicting parameter, LocalChangesError over
    uncommitted changes to PATH (unless `force`).
    """
    path = snapshots.repo_paths(toplevel, [path])[0]
    if not force:
        refuse_local_changes(toplevel, path)
    base_rev = recipe.base if recipe else base or merge_base(revisions, toplevel)
    specs = [_spec(rev, path, recipe is not None) for rev in revisions]
    base_spec = _spec(base_rev, path, recipe is not None) if base_rev else None
    versions = Versions(path, specs, list(revisions), base_spec)

    def parents() -> list[str]:
        commits = [_commit_part(rev, recipe is not None) for rev in revisions]
        return record.merge_parents(commits, path, toplevel)

    hint = f"run `git theta merge ... --strategy NAME` for {path}"
    found = _merge(
        repo=repo,
        toplevel=toplevel,
        versions=versions,
        choice=choice,
        recipe=recipe,
        recipe_file=recipe_file,
        parents=parents,
        hint=hint,
        force=force,
        report=report,
    )
    if found:
        how = f"mergekit recipe {recipe_file}" if recipe else strategy
        record.record(found, record.message(revisions, path, how), toplevel)
        report(
            f"git-theta: `git commit` records a merge of HEAD and {len(found)} more parent(s) (MERGE_HEAD written; "
            "`git merge --abort` undoes it)"
        )


def redo_merge(
    *,
    repo: Repo,
    toplevel: Path,
    path: str,
    choice: Choice | None,
    force: bool,
    report: Callable[[str], None],
) -> None:
    """Merge again PATH, conflicted in a running `git merge` (index stages 1, 2, 3), and stage the result."""
    path = snapshots.repo_paths(toplevel, [path])[0]
    versions = Versions(path, [f":2:{path}", f":3:{path}"], ["ours", "theirs"], f":1:{path}")
    if not force:
        refuse_edits_since_conflict(toplevel, path)
    _merge(
        repo=repo,
        toplevel=toplevel,
        versions=versions,
        choice=choice,
        recipe=None,
        recipe_file=None,
        parents=None,
        hint=f"run `git theta merge --redo {path} --strategy NAME`",
        force=force,
        report=report,
    )


def _merge(
    *,
    repo: Repo,
    toplevel: Path,
    versions: Versions,
    choice: Choice | None,
    recipe: mergekit.Recipe | None,
    recipe_file: str | None,
    parents: Callable[[], list[str]] | None,
    hint: str,
    force: bool,
    report: Callable[[str], None],
) -> list[str]:
    """Read, check, merge, back up, write and stage; the parents to record (none for a redo)."""
    path = versions.path
    read = [read_version(spec, toplevel, required=True) for spec in versions.specs]
    base = read_version(versions.base_spec, toplevel, required=False) if versions.base_spec else None
    present = [v for v in read if v is not None]
    if recipe and recipe.dtype:
        mergekit.check_dtype(recipe.dtype, present, recipe_file or "")
    if recipe and recipe.layer_range:
        mergekit.check_layers(recipe.layer_range, present, recipe_file or "")
    found = parents() if parents else []
    context = version_context(versions.labels, read, base, toplevel, parents is None)
    choose = chooser(toplevel, path, versions.labels, choice, hint, context)
    result = merge_metadata(repo.store, path, present, base, versions.labels, choose, exhaustive=recipe is not None)
    if force and (toplevel / path).is_file():
        backup = local_changes.back_up(repo.common_dir, toplevel, path)
        report(f"git-theta: the working-tree {path} before this merge is kept as {backup}")
    write_and_stage(repo, toplevel, path, result.metadata)
    report(result.summary(path).replace("git-theta: merged", "git-theta: merged and staged"))
    return found


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
