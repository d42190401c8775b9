"""`git theta merge A B C` records a real merge: the merged revisions become parents of the next commit.

Like `git merge --no-commit --no-ff`, it writes MERGE_HEAD (one commit per
line: git's `git commit` makes an octopus merge of several), MERGE_MODE
(`no-ff`, so git keeps HEAD as the first parent even when HEAD is an ancestor
of the inputs) and MERGE_MSG. Recording a revision as merged tells git every
change on it is in the result, so the merge refuses when that would be false:
when the current branch's changes are in none of the inputs, or when an input
changed another file than the merged checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from git_theta import git
from git_theta.errors import ThetaError

LISTED_FILES = 5


class MergeRecordError(ThetaError):
    """The merge could not be recorded truthfully, so nothing was merged."""


def _is_ancestor(older: str, newer: str, toplevel: Path) -> bool:
    return git.run("merge-base", "--is-ancestor", older, newer, cwd=toplevel, check=False).returncode == 0


def _names(*args: str, toplevel: Path) -> set[str]:
    output = git.run(*args, cwd=toplevel).stdout.decode("utf-8", errors="surrogateescape")
    return {line for line in output.split("\0") if line}


def git_path(name: str, toplevel: Path) -> Path:
    """A file in this worktree's git dir (MERGE_HEAD lives per worktree)."""
    path = Path(git.output("rev-parse", "--git-path", name, cwd=toplevel))
    return path if path.is_absolute() else toplevel / path


def merge_parents(revisions: Sequence[str], path: str, toplevel: Path) -> list[str]:
    """The commits to record besides HEAD (input order, HEAD's ancestors left out), or a refusal."""
    head = git.commit_id("HEAD", toplevel)
    if head is None:
        raise MergeRecordError("the current branch has no commit yet; commit something first, then merge")
    if git_path("MERGE_HEAD", toplevel).exists():
        raise MergeRecordError("a merge is in progress (MERGE_HEAD exists); commit it or `git merge --abort` first")
    commits = git.commit_ids(list(revisions), toplevel)
    if not any(_is_ancestor(head, commit, toplevel) for commit in commits):
        branch = git.run("symbolic-ref", "--short", "-q", "HEAD", cwd=toplevel, check=False).stdout.decode().strip()
        raise MergeRecordError(
            f"the current branch ({branch or 'HEAD'}) is not among the revisions and none of them contains it: "
            "its changes "
            f"would be dropped; list it among them (e.g. `git theta merge HEAD {' '.join(revisions)} ...`)"
        )
    parents: list[str] = []
    for revision, commit in zip(revisions, commits):
        if commit in parents or _is_ancestor(commit, head, toplevel):
            continue  # already in HEAD's history: nothing to record
        _refuse_other_changes(revision, commit, head, path, toplevel)
        parents.append(commit)
    return parents


def _refuse_other_changes(revision: str, commit: str, head: str, path: str, toplevel: Path) -> None:
    """Recording `commit` as merged claims its changes to every file; only `path` is merged here."""
    base = git.run("merge-base", head, commit, cwd=toplevel, check=False).stdout.decode().strip()
    if base:
        changed = _names("diff", "--no-renames", "--name-only", "-z", base, commit, toplevel=toplevel)
    else:
        changed = _names("ls-tree", "-r", "--name-only", "-z", commit, toplevel=toplevel)
    differs = _names("diff", "--no-renames", "--name-only", "-z", head, commit, toplevel=toplevel)
    lost = sorted((changed & differs) - {path})
    if lost:
        shown = ", ".join(lost[:LISTED_FILES]) + (
            f" and {len(lost) - LISTED_FILES} more" if len(lost) > LISTED_FILES else ""
        )
        raise MergeRecordError(
            f"{revision} also changed {shown}; recording it as merged would drop those changes "
            f"(git theta merge merges only {path}): bring them in first "
            f"(`git merge {revision}`, resolving {path} with `git theta merge --redo {path}`)"
        )


def message(revisions: Sequence[str], path: str, strategy: str | None) -> str:
    how = f", strategy {strategy}" if strategy else ""
    return f"Merge {', '.join(revisions)} (git theta merge --path {path}{how})\n"


def record(parents: Sequence[str], text: str, toplevel: Path) -> None:
    """Make the next `git commit` a merge with HEAD and `parents` as parents (nothing to write for none)."""
    if not parents:
        return
    git_path("MERGE_MSG", toplevel).write_text(text, encoding="utf-8")
    git_path("MERGE_MODE", toplevel).write_text("no-ff", encoding="ascii")
    # MERGE_HEAD last: it is what makes git consider a merge in progress.
    git_path("MERGE_HEAD", toplevel).write_text("".join(f"{commit}\n" for commit in parents), encoding="ascii")
