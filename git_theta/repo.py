"""Where a repository keeps things: its object store and the prior versions of a path."""

from __future__ import annotations

import os
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
    def discover(cls, cwd: Path | str | None = None) -> Repo:
        here = Path(cwd or os.getcwd())
        common = git.common_dir(here).resolve()
        return cls(worktree=here, common_dir=common, store=ObjectStore(common / "lfs"))

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
