"""migrate export: git-theta metadata back to git-lfs pointers, the files rebuilt into .git/lfs/objects."""

from __future__ import annotations

import tempfile
from collections.abc import Callable

from git_theta import git, metadata, smudge
from git_theta.errors import MetadataError, ThetaError
from git_theta.migrate import MigrateError
from git_theta.migrate.gitattributes import default_include, export_attributes
from git_theta.migrate.patterns import Selection
from git_theta.migrate.plumbing import COPY_CHUNK, CatFile, write_object
from git_theta.migrate.refs import selected_history
from git_theta.migrate.rewrite import Rewrite, check_clean, rewrite_with
from git_theta.migrate.rewriter import Stats, TreeResult
from git_theta.repo import Repo


def pointer_text(oid: str, size: int) -> bytes:
    """A git-lfs pointer as git-lfs writes it (spec v1): version, oid, size, each line ending in a newline."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


class _Exporter:
    """Rebuilds each metadata version's file into the LFS store (once per metadata blob) and names it by pointer."""

    def __init__(self, repo: Repo, selection: Selection, remote: str | None) -> None:
        self.repo = repo
        self.selection = selection
        self.remote = remote
        self.cat: CatFile | None = None
        self.by_blob: dict[str, str] = {}

    def __call__(self, path: str, blob: str, commit: str, parents: dict[str, str]) -> str | None:
        if self.selection.pattern_of(path) is None:
            return None
        if blob in self.by_blob:
            return self.by_blob[blob]
        assert self.cat is not None
        if self.cat.size(blob) > metadata.MAX_BYTES:
            return None
        data = self.cat.read(blob)[1]
        if not metadata.looks_like_metadata(data):
            return None  # a pointer already, or a file git stores itself
        from git_theta.transfer import on_demand

        store = self.repo.store
        with tempfile.TemporaryFile(dir=self.repo.common_dir) as file:
            try:
                smudge.smudge(store, path, data, file, on_demand.fetcher(self.repo, self.remote))
            except (ThetaError, MetadataError) as error:
                raise MigrateError(f"{error} (commit {commit})") from None
            file.seek(0)
            # git-lfs's pointer names it: git-lfs pushes it, and its prune spares it until then
            oid, size = store.put(iter(lambda: file.read(COPY_CHUNK), b""), lfs_object=True)
        new = write_object("blob", pointer_text(oid, size), self.repo.worktree)
        self.by_blob[blob] = new
        return new


def _export_fix(include: list[str]) -> Callable[[bytes | None, TreeResult], bytes | None]:
    def fix(data: bytes | None, result: TreeResult) -> bytes | None:
        return None if data is None else export_attributes(data, include)

    return fix


def export_history(
    repo: Repo,
    *,
    include: list[str],
    exclude: list[str],
    everything: bool = False,
    refs: list[str] | None = None,
    include_refs: list[str] | None = None,
    exclude_refs: list[str] | None = None,
    remote: str | None = None,
) -> Rewrite:
    """Rewrite the selected refs so their commits' git-theta metadata matching `include` become git-lfs pointers."""
    check_clean(repo.worktree)
    if not (
        git.config_get("filter.lfs.process", cwd=repo.worktree)
        or git.config_get("filter.lfs.smudge", cwd=repo.worktree)
    ):
        # the checkout at the end would write pointer text where the models were
        raise MigrateError("not migrating: git-lfs's filter is not configured here; run `git lfs install` first")
    chosen, excluded = selected_history(
        repo.worktree, everything=everything, refs=refs, include_refs=include_refs, exclude_refs=exclude_refs
    )
    selection = Selection(include or default_include(repo, chosen, "theta"), exclude)
    stats = Stats()
    return rewrite_with(
        repo,
        "export",
        selection,
        chosen,
        excluded,
        _Exporter(repo, selection, remote),
        _export_fix(selection.include),
        stats,
    )
