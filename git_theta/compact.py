"""`git theta compact`'s library side: rewrite the index version's update chains as dense objects."""

from __future__ import annotations

from git_theta import git, metadata, smudge
from git_theta.errors import ThetaError
from git_theta.repo import Repo
from git_theta.update_engine import auto


def compact(*, repo: Repo, path: str) -> int:
    """Compact the index version of `path` (relative to the top level); returns how many chains were rewritten."""
    data = git.blob(f":{path}", cwd=repo.worktree)
    if data is None:
        raise ThetaError(f"{path} is not in the index")
    if not metadata.looks_like_metadata(data):
        raise ThetaError(f"{path} is not stored by git-theta in the index")
    meta = metadata.parse(data, f":{path}")
    rewritten = 0
    for name, entry in sorted(meta.params.items()):
        if len(entry.stored) > 1:
            value = smudge.rebuild(repo.store, name, entry, path)
            meta.params[name] = auto.store_dense(repo.store, value, entry.hash)
            rewritten += 1
    if rewritten:
        blob = (
            git.run("hash-object", "-w", "--no-filters", "--stdin", cwd=repo.worktree, input=meta.serialize())
            .stdout.decode()
            .strip()
        )
        mode = git.output("ls-files", "-s", "--", path, cwd=repo.worktree).split()[0]
        git.run("update-index", "--cacheinfo", f"{mode},{blob},{path}", cwd=repo.worktree)
    return rewritten
