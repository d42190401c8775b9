"""`git theta gc`'s library side: which local objects nothing can reach any more, and deleting them.

Reachable means referenced by metadata (or a git-lfs pointer, which shares the store) in any commit reachable from
refs or reflogs, in the index of any worktree, or by a pending side-loaded update. Objects modified in the last
`grace` seconds are kept too (a concurrent `git add`); temp files of interrupted writes go once their writer is gone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from git_theta import files
from git_theta.repo import Repo
from git_theta.transfer import scan
from git_theta.update_engine import pending

DEFAULT_GRACE_SECONDS = 3600


@dataclass
class Collected:
    """What a collection found: the unreachable objects deleted (or that would be), and what it kept."""

    deleted: list[tuple[str, int]] = field(default_factory=list)  # (oid, size in bytes)
    kept: int = 0  # referenced objects
    recent: int = 0  # unreachable, but modified within the grace period

    @property
    def freed(self) -> int:
        return sum(size for _, size in self.deleted)


def collect(*, repo: Repo, grace: int, dry_run: bool) -> Collected:
    """Delete (unless dry_run) every unreachable object older than `grace` seconds, and stale temp files."""
    keep = reachable_objects(repo)
    if not dry_run:
        repo.store.restore_unpushed()  # an unpushed object `git lfs prune` deleted is judged like any other
    cutoff = time.time() - grace
    found = Collected(kept=len(keep))
    # A dry run restores nothing, so it also looks at objects left only under their unpushed name.
    for oid in sorted(set(repo.store.all_oids()) | set(repo.store.unpushed_oids())):
        path = repo.store.stored_path(oid)
        if path is None:
            continue  # deleted since it was listed (a concurrent gc)
        stat = path.stat()
        if oid in keep:
            continue
        if stat.st_mtime > cutoff:
            found.recent += 1
            continue
        found.deleted.append((oid, stat.st_size))
        if not dry_run:
            repo.store.forget(oid)  # under both names: the unpushed one would otherwise keep it forever
    if repo.store.tmp_dir.is_dir() and not dry_run:
        _remove_temp_files(repo.store.tmp_dir, cutoff)
    return found


def reachable_objects(repo: Repo) -> set[str]:
    # Pending records first: their `git add` then puts the objects in the index before it drops the record.
    side_loaded = pending.referenced_objects(repo.common_dir)
    blobs = scan.rev_list_blobs(["--all", "--reflog", "--indexed-objects"], repo.worktree)
    found = set(scan.referenced(scan.metadata_of(blobs, repo.worktree))) | scan.lfs_pointer_oids(blobs, repo.worktree)
    return found | side_loaded


def _remove_temp_files(tmp_dir: Path, cutoff: float) -> None:
    """Ours once their writer is gone (git_theta.files); others' (git-lfs shares lfs/tmp) past the grace."""
    for temp in tmp_dir.iterdir():
        try:
            old = temp.is_file() and temp.stat().st_mtime <= cutoff
        except FileNotFoundError:
            continue
        if files.is_stale(temp) or (old and not files.is_ours(temp)):
            temp.unlink(missing_ok=True)
