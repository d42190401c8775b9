"""A whole rewrite: every object built first, then every ref moved in one transaction, old tips backed up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from git_theta import git
from git_theta.migrate import BACKUP_PREFIX, MigrateError
from git_theta.migrate.patterns import Selection
from git_theta.migrate.plumbing import CatFile
from git_theta.migrate.refs import peel_tags, retagged
from git_theta.migrate.rewriter import BlobConverter, CommitProgress, Rewriter, Stats, TreeResult
from git_theta.migrate.signatures import Originals, unsigned_tag
from git_theta.repo import Repo


def check_clean(cwd: Path) -> None:
    status = git.run("status", "--porcelain", "--untracked-files=no", cwd=cwd).stdout
    if status.strip():
        raise MigrateError(
            "the working tree or index has changes: commit or stash them first (migrate checks out the rewritten HEAD)"
        )


@dataclass
class Rewrite:
    """What `rewrite` did: refs moved (ref -> (old, new)) and where their old tips are kept."""

    moved: dict[str, tuple[str, str]]
    backup: str
    stats: Stats


def _rewrite(
    repo: Repo,
    *,
    verb: str,
    selection: Selection,
    refs: dict[str, str],
    excluded: list[str],
    convert: BlobConverter,
    fix_attributes: Callable[[bytes | None, TreeResult], bytes | None],
    stats: Stats,
) -> Rewrite:
    cwd = repo.worktree
    backup = f"{BACKUP_PREFIX}/{verb}"
    existing = git.output("for-each-ref", "--format=%(refname)", backup, cwd=cwd).split()
    if existing:
        raise MigrateError(
            f"{existing[0]}: a backup of an earlier `git theta migrate {verb}` is still there; delete the old "
            f"backups first: git for-each-ref --format='delete %(refname)' {backup} | git update-ref --stdin"
        )
    rewriter = Rewriter(repo, selection, convert, fix_attributes, write=True)
    try:
        rewriter.originals = Originals.from_backups(cwd, rewriter.cat, rewriter.ids)
        commits, tags = peel_tags(rewriter.cat, refs)
        # one sync for every object stored, before any ref names them
        with repo.store.batch():
            rewriter.run(sorted(set(commits.values())), CommitProgress(verb), excluded)
    finally:
        rewriter.close()
    stats.commits = len(rewriter.commits)
    stats.rewritten = sum(1 for old, new in rewriter.commits.items() if old != new)
    stats.signatures = rewriter.signatures
    moved = {}
    for ref, old in refs.items():
        new_commit = rewriter.commits.get(commits[ref], commits[ref])  # reachable from an excluded ref: as is
        if new_commit == commits[ref]:
            continue
        new = _retag(tags[ref], new_commit, rewriter, cwd) if ref in tags else new_commit
        if new != old:
            moved[ref] = (old, new)
    if moved:
        _move(cwd, backup, moved)
    return Rewrite(moved, backup, stats)


def _move(cwd: Path, backup: str, moved: dict[str, tuple[str, str]]) -> None:
    """Every ref to its new object and its old one under `backup`, in one transaction: all or none."""
    lines = ["start"]
    for ref, (old, new) in sorted(moved.items()):
        lines += [f"update {ref} {new} {old}", f"create {backup}/{ref} {old}"]
    lines += ["prepare", "commit"]
    git.run("update-ref", "--stdin", cwd=cwd, input=("\n".join(lines) + "\n").encode())
    head = git.run("symbolic-ref", "-q", "HEAD", cwd=cwd, check=False).stdout.decode().strip()
    if head in moved:
        git.run("reset", "-q", "--hard", "HEAD", cwd=cwd)  # the working tree gets the rewritten files


def _retag(raw: bytes, commit: str, rewriter: Rewriter, cwd: Path) -> str:
    """An annotated tag re-created with its tagger and message on the rewritten commit: the signed original when
    these bytes are exactly what it signed, else written without its signature."""
    new = retagged(raw, commit)
    original = rewriter.originals.by_unsigned.get(rewriter.ids("tag", new))
    if original is not None:
        rewriter.signatures.restored_tags.add(original)
        return original
    if unsigned_tag(raw) is not None:
        rewriter.signatures.dropped_tags.add(rewriter.ids("tag", raw))
    return git.run("mktag", cwd=cwd, input=new).stdout.decode().strip()


def rewrite_with(
    repo: Repo,
    verb: str,
    selection: Selection,
    refs: dict[str, str],
    excluded: list[str],
    converter: Any,
    fix: Callable[[bytes | None, TreeResult], bytes | None],
    stats: Stats,
) -> Rewrite:
    converter.cat = CatFile(repo.worktree)
    try:
        return _rewrite(
            repo,
            verb=verb,
            selection=selection,
            refs=refs,
            excluded=excluded,
            convert=converter,
            fix_attributes=fix,
            stats=stats,
        )
    finally:
        converter.cat.close()
