"""Where a repository keeps things: its object store and the prior versions of a path."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from git_theta import git, metadata
from git_theta.errors import MetadataError
from git_theta.store import ObjectStore


@dataclass
class Repo:
    worktree: Path
    common_dir: Path
    store: ObjectStore

    @classmethod
    def discover(cls, cwd: Path | str | None = None, *, started_by_git: bool = False) -> Repo:
        """The repository at `cwd` (default: the current directory). `started_by_git`: the caller is a filter
        git started, in the worktree's top level, whose git dir is then read from `.git` where that is certain
        (git.common_dir_of_toplevel); elsewhere, and otherwise, `git rev-parse` says."""
        here = Path(cwd or os.getcwd())
        found = git.common_dir_of_toplevel(here) if started_by_git else None
        common = (found or git.common_dir(here)).resolve()
        return cls(worktree=here, common_dir=common, store=repository_store(common))

    def prior_metadata(self, path: str, texts: set[bytes] | None = None) -> list[metadata.Metadata]:
        """Metadata of `path` in the index and at HEAD, where they exist and parse (their bytes added to `texts`)."""
        found = []
        seen: set[bytes] = set()
        for spec in (f":{path}", f"HEAD:{path}"):
            data = git.blob(spec, cwd=self.worktree)
            if data is None or data in seen or not metadata.looks_like_metadata(data):
                continue
            seen.add(data)
            try:
                found.append(metadata.parse(data, spec))
                if texts is not None:
                    texts.add(data)
            except MetadataError:
                continue  # a broken prior version only costs us deduplication
        return found

    def sibling_metadata(self, path: str) -> list[metadata.Metadata]:
        """Metadata of the other git-theta files staged in `path`'s directory (at most SIBLING_FILES of at most
        SIBLING_BYTES in all), for a file new under its name: a resharded checkpoint's shards, a copy. Its
        tensors that they already store are then linked, not stored again (tensors are deduplicated by hash
        within pack objects, not by object name across files)."""
        directory = posixpath.dirname(path)
        listing = git.run("ls-files", "-s", "-z", "--", directory or ".", cwd=self.worktree).stdout.split(b"\0")
        staged: dict[str, str] = {}
        for record in listing:
            info, _, name_bytes = record.partition(b"\t")
            fields = info.split()
            name = name_bytes.decode("utf-8", errors="surrogateescape")
            if len(fields) == 3 and fields[2] == b"0" and name != path and posixpath.dirname(name) == directory:
                staged[name] = fields[1].decode()
        tracked = git.attr_for_paths("filter", list(staged), cwd=self.worktree)
        candidates = [staged[name] for name in sorted(staged) if tracked.get(name) == "theta"][:SIBLING_FILES]
        sizes = git.blob_sizes(candidates, cwd=self.worktree)
        chosen, total = [], 0
        for oid in candidates:
            if oid in sizes and total + sizes[oid] <= SIBLING_BYTES:
                chosen.append(oid)
                total += sizes[oid]
        found = []
        for oid, data in git.cat_file_batch(chosen, cwd=self.worktree).items():
            if metadata.looks_like_metadata(data):
                try:
                    found.append(metadata.parse(data, f"blob {oid}"))
                except MetadataError:
                    continue  # only costs deduplication
        return found


def repository_store(common_dir: Path) -> ObjectStore:
    """The object store of the repository whose git common dir this is, keeping its unpushed objects safe from
    `git lfs prune` (git_theta.store)."""
    return ObjectStore(common_dir / "lfs", common_dir / "theta" / "unpushed")


# What a new file's clean reads of its directory's other git-theta files (Repo.sibling_metadata).
SIBLING_FILES = 64
SIBLING_BYTES = 64 << 20
