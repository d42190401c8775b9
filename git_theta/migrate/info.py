"""migrate info: the sizes before and after an import, measured by cleaning into a throwaway store."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from git_theta.migrate.gitattributes import default_include
from git_theta.migrate.importing import Importer, import_fix
from git_theta.migrate.patterns import Selection
from git_theta.migrate.refs import peel_tags, selected_history
from git_theta.migrate.rewriter import CommitProgress, Rewriter, Stats
from git_theta.migrate.signatures import SignatureCounts, unsigned_tag
from git_theta.repo import Repo
from git_theta.store import ObjectStore


@dataclass
class InfoRow:
    pattern: str
    versions: int
    lfs_bytes: int
    theta_bytes: int
    not_local: int


def _store_bytes(store: ObjectStore) -> int:
    return sum(p.stat().st_size for p in store.objects_dir.glob("??/??/*")) if store.objects_dir.is_dir() else 0


@dataclass
class Info:
    rows: list[InfoRow]
    signatures: SignatureCounts  # the signed commits and tags an import would rewrite


def info(
    repo: Repo,
    *,
    include: list[str],
    exclude: list[str],
    everything: bool = False,
    refs: list[str] | None = None,
    include_refs: list[str] | None = None,
    exclude_refs: list[str] | None = None,
) -> Info:
    """Per include pattern: distinct git-lfs objects in the history, their size, and the size git-theta's store would
    have after import, measured by cleaning every version into a throwaway store (objects not local are counted,
    not fetched)."""
    chosen, excluded = selected_history(
        repo.worktree, everything=everything, refs=refs, include_refs=include_refs, exclude_refs=exclude_refs
    )
    selection = Selection(include or default_include(repo, chosen, "lfs"), exclude)
    rows: list[InfoRow] = []
    signatures = SignatureCounts()
    with tempfile.TemporaryDirectory(prefix="git-theta-migrate-") as temp:
        for pattern in selection.include:
            # one store per pattern: its size is that pattern's share
            only = Selection(
                [pattern],
                selection.exclude
                + [
                    p
                    for p in selection.include
                    if p != pattern and selection.include.index(p) < selection.include.index(pattern)
                ],
            )
            store = ObjectStore(Path(temp) / str(len(rows)))
            stats = Stats()
            importer = Importer(repo, only, store, stats, None, fetch=False, write=False)
            rewriter = Rewriter(repo, only, importer, import_fix(only.include), write=False)
            importer.cat = rewriter.cat
            try:
                commits, tags = peel_tags(rewriter.cat, chosen)
                rewriter.run(sorted(set(commits.values())), CommitProgress("info"), excluded)
                # a pattern's walk rewrites what the whole import would for that pattern: their union is the import's
                signatures.dropped_commits |= rewriter.signatures.dropped_commits
                for ref, raw in tags.items():
                    if rewriter.commits.get(commits[ref], commits[ref]) != commits[ref] and unsigned_tag(raw):
                        signatures.dropped_tags.add(chosen[ref])
            finally:
                rewriter.close()
            rows.append(
                InfoRow(
                    pattern,
                    len(stats.versions.get(pattern, ())),
                    stats.source_bytes.get(pattern, 0),
                    _store_bytes(store),
                    len(stats.missing.get(pattern, ())),
                )
            )
    return Info(rows, signatures)


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
