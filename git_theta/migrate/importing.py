"""migrate import: git-lfs pointers become git-theta metadata, each object cleaned once against its prior."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import IO

from git_theta import clean, hooks, installation, lfs_pointer, metadata, smudge
from git_theta.errors import ThetaError
from git_theta.metadata import Metadata
from git_theta.migrate import MigrateError
from git_theta.migrate.gitattributes import default_include, import_attributes
from git_theta.migrate.patterns import Selection
from git_theta.migrate.plumbing import COPY_CHUNK, CatFile, write_object
from git_theta.migrate.refs import selected_history
from git_theta.migrate.rewrite import Rewrite, check_clean, rewrite_with
from git_theta.migrate.rewriter import Stats, TreeResult
from git_theta.repo import Repo, repository_store
from git_theta.store import ObjectStore


class _HashingReader:
    """Reads a git-lfs object while hashing it, so a corrupt copy is refused before its metadata is committed."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, count: int = -1) -> bytes:
        data = self.file.read(count)
        self.digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(COPY_CHUNK):
            pass


class Importer:
    """Converts git-lfs pointers to metadata, each LFS object once, against the previous version of its path."""

    def __init__(
        self,
        repo: Repo,
        selection: Selection,
        store: ObjectStore,
        stats: Stats,
        remote: str | None,
        fetch: bool,
        write: bool,
    ) -> None:
        self.repo = repo
        self.selection = selection
        self.store = store
        self.stats = stats
        self.remote = remote
        self.fetch = fetch
        self.write = write
        self.cat: CatFile | None = None
        self.by_oid: dict[lfs_pointer.Pointer, str] = {}  # each distinct pointer checked once -> new blob id
        self.blob_meta: dict[str, Metadata] = {}  # new blob id -> its metadata, for later versions' prior
        self.last: dict[str, str] = {}  # path -> the last converted blob there

    def __call__(self, path: str, blob: str, commit: str, parents: dict[str, str]) -> str | None:
        pattern = self.selection.pattern_of(path)
        if pattern is None:
            return None
        assert self.cat is not None
        if self.cat.size(blob) > lfs_pointer.MAX_BYTES:
            return None  # not a pointer: already stored some other way
        pointer = lfs_pointer.parse(self.cat.read(blob)[1])
        if pointer is None:
            return None
        versions = self.stats.versions.setdefault(pattern, set())
        first = pointer.oid not in versions
        versions.add(pointer.oid)
        if pointer in self.by_oid:
            return self.by_oid[pointer]
        source = repository_store(self.repo.common_dir)
        if not source.has(pointer.oid):
            if not self.fetch:
                self.stats.missing.setdefault(pattern, set()).add(pointer.oid)
                return None
            self._download(path, pointer, commit)
        on_disk = source.path(pointer.oid).stat().st_size  # what the store holds, whatever a pointer declares
        if first:
            self.stats.source_bytes[pattern] = self.stats.source_bytes.get(pattern, 0) + on_disk
        prior = [
            self.blob_meta[b]
            for b in dict.fromkeys([parents.get(path, ""), self.last.get(path, "")])
            if b in self.blob_meta
        ]
        with source.path(pointer.oid).open("rb") as file:
            reader = _HashingReader(file)
            try:
                data = clean.clean(self.repo, path, reader, store=self.store, prior=prior, size=on_disk)  # type: ignore[arg-type]
            except ThetaError as error:
                reader.drain()  # a damaged copy is the object's fault, not the format's: say which
                self._check(path, pointer, commit, reader, source)
                raise MigrateError(
                    f"{error} (git-lfs object {pointer.oid}, commit {commit}); leave such files to git-lfs "
                    f"with --exclude"
                ) from None
            reader.drain()
        self._check(path, pointer, commit, reader, source)
        new = write_object("blob", data, self.repo.worktree) if self.write else hashlib.sha1(data).hexdigest()
        self.by_oid[pointer] = new
        self.blob_meta[new] = metadata.parse(data, path)
        self.last[path] = new
        return new

    @staticmethod
    def _check(
        path: str, pointer: lfs_pointer.Pointer, commit: str, reader: _HashingReader, source: ObjectStore
    ) -> None:
        """The object read is the one the pointer names: its sha256, then the size the pointer declares."""
        if reader.digest.hexdigest() != pointer.oid:
            raise MigrateError(
                f"{path}: git-lfs object {pointer.oid} (commit {commit}): {smudge.corrupt_object(source, pointer.oid)}"
            )
        if reader.size != pointer.size:
            raise MigrateError(
                f"{path}: the git-lfs pointer in commit {commit} declares {pointer.size} bytes, its object "
                f"{pointer.oid} holds {reader.size}: the pointer is wrong"
            )

    def _download(self, path: str, pointer: lfs_pointer.Pointer, commit: str) -> None:
        from git_theta.transfer import client  # imported only when an object is missing

        try:
            client.download(self.repo, {pointer.oid: pointer.size}, self.remote)
        except ThetaError as error:
            raise MigrateError(
                f"{path}: git-lfs object {pointer.oid} (commit {commit}) is not in the local store and "
                f"fetching it failed: {error}"
            ) from None
        if not self.repo.store.has(pointer.oid):
            raise MigrateError(
                f"{path}: git-lfs object {pointer.oid} (commit {commit}) is not in the local store and the remote "
                "did not send it"
            )


def import_fix(include: list[str]) -> Callable[[bytes | None, TreeResult], bytes | None]:
    def fix(data: bytes | None, result: TreeResult) -> bytes | None:
        return import_attributes(data, include, result.patterns, result.kept_lfs)

    return fix


def import_history(
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
    """Rewrite the selected refs so their commits' git-lfs pointers matching `include` become git-theta metadata."""
    check_clean(repo.worktree)
    problem = installation.filter_problem(repo.worktree)
    if problem:
        raise MigrateError(f"not migrating: {problem}")
    chosen, excluded = selected_history(
        repo.worktree, everything=everything, refs=refs, include_refs=include_refs, exclude_refs=exclude_refs
    )
    selection = Selection(include or default_include(repo, chosen, "lfs"), exclude)
    stats = Stats()
    importer = Importer(repo, selection, repo.store, stats, remote, fetch=True, write=True)
    rewrite = rewrite_with(repo, "import", selection, chosen, excluded, importer, import_fix(selection.include), stats)
    hooks.ensure_installed(repo.worktree)  # as `git theta track` does: the next push sends git-theta's objects
    return rewrite
