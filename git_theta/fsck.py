"""`git theta fsck`'s checks: every tracked checkpoint reachable from the index and all refs can be checked out.

For each metadata blob: it parses (with every limit of docs/formats.md 2.3), its format plugin and the update
plugins of its links exist and load, every object exists and matches its sha256, every file-level blob decodes,
and (unless quick) every distinct chain of links rebuilds to its recorded tensor hash.
"""

from __future__ import annotations

from collections.abc import Iterator

from git_theta import git, metadata, plugins, smudge
from git_theta.errors import StoreError, ThetaError
from git_theta.metadata import ParamEntry
from git_theta.repo import Repo


def tracked_blobs(repo: Repo) -> Iterator[tuple[str, str, bool, bytes]]:
    """(blob id, a path it was seen at, whether it is in history, content) for every reachable tracked blob."""
    blobs = git.reachable_blobs(cwd=repo.worktree)
    attrs = git.attr_for_paths("filter", sorted({path for _, path, _ in blobs}), cwd=repo.worktree)
    wanted: dict[str, str] = {}
    in_history: set[str] = set()
    for oid, path, where in blobs:
        if attrs.get(path) == "theta":
            wanted.setdefault(oid, path)
            if where == "history":
                in_history.add(oid)
    for oid, data in git.cat_file_batch(sorted(wanted), cwd=repo.worktree).items():
        yield oid, wanted[oid], oid in in_history, data


class Checker:
    """Checks metadata blobs, each object, plugin and chain once however many versions share it."""

    def __init__(self, repo: Repo, quick: bool) -> None:
        self.repo = repo
        self.quick = quick
        self.objects: dict[str, str | None] = {}
        self.plugins: dict[tuple[str, str], str | None] = {}
        # By the whole entry (its chain of objects and what it must rebuild to), not by tensor hash: a broken
        # chain that claims a good chain's hash must still be tried.
        self.chains: dict[ParamEntry, str | None] = {}
        self.blobs: dict[str, str | None] = {}

    def check(self, path: str, data: bytes) -> list[str]:
        """Problems of one metadata blob, each `path: problem`."""
        try:
            meta = metadata.parse(data, path)
        except ThetaError as error:
            return [str(error)]
        problems = []
        found = self._plugin(plugins.CHECKPOINTS, meta.format)
        if found:
            problems.append(f"{path}: {found}")
        for name, entry in sorted(meta.params.items()):
            problems += self._entry(path, name, entry)
        for oid in sorted(set(metadata.file_objects(meta.file))):
            found = self._object(oid)
            if found:
                problems.append(f"{path}: file data: {found}")
            elif found := self._blob(oid):
                problems.append(f"{path}: {found}")
        return problems

    def _entry(self, path: str, name: str, entry: ParamEntry) -> list[str]:
        problems = []
        for update in dict.fromkeys(link.update for link in entry.stored):
            found = self._plugin(plugins.UPDATES, update)
            if found:
                problems.append(f"{path}: parameter {name!r}: {found}")
        for oid in entry.objects():
            found = self._object(oid)
            if found:
                problems.append(f"{path}: parameter {name!r}: {found}")
        if problems or self.quick:
            return problems
        if entry not in self.chains:
            try:
                smudge.rebuild(self.repo.store, name, entry, every_link=True)
                self.chains[entry] = None
            except ThetaError as error:
                self.chains[entry] = str(error).removeprefix(f"parameter {name!r}: ")
        found = self.chains[entry]
        return [f"{path}: parameter {name!r}: {found}"] if found else []

    def _plugin(self, group: str, name: str) -> str | None:
        if (group, name) not in self.plugins:
            try:
                plugins.get(group, name)
                self.plugins[group, name] = None
            except ThetaError as error:
                self.plugins[group, name] = str(error)
        return self.plugins[group, name]

    def _object(self, oid: str) -> str | None:
        if oid not in self.objects:
            try:
                self.repo.store.get(oid, verify=True)
                self.objects[oid] = None
            except StoreError as error:
                self.objects[oid] = str(error)
        return self.objects[oid]

    def _blob(self, oid: str) -> str | None:
        if self.quick:
            return None
        if oid not in self.blobs:
            try:
                smudge.read_blob(self.repo.store, oid, "")
                self.blobs[oid] = None
            except ThetaError as error:
                self.blobs[oid] = str(error).removeprefix(": ")
        return self.blobs[oid]


def check(*, repo: Repo, quick: bool) -> list[str]:
    """Every problem, one line each, as `path@commit: problem` (commit: one that holds that version)."""
    checker = Checker(repo, quick)
    problems = []
    for blob_id, path, in_history, data in sorted(tracked_blobs(repo), key=lambda blob: (blob[1], blob[0])):
        if not metadata.looks_like_metadata(data):
            continue  # not stored by git-theta (committed before tracking): nothing of it in the store
        found = checker.check(path, data)
        if found:
            where = f"{path}@{_commit_of(repo, blob_id) if in_history else 'index'}"
            problems += [where + problem.removeprefix(path) for problem in found]
    return problems


def _commit_of(repo: Repo, blob_id: str) -> str:
    """A commit (abbreviated) that holds the blob: the newest one that added it."""
    out = (
        git.run("log", "--all", "--format=%h", "-1", f"--find-object={blob_id}", cwd=repo.worktree)
        .stdout.decode()
        .strip()
    )
    return out or blob_id[:12]
