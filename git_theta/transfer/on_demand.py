"""Downloading on demand: the callback smudge uses when a checkpoint needs objects the store lacks.

Kept import-light: the transfer machinery (urllib, http) loads only when something is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from git_theta.metadata import Metadata
from git_theta.repo import Repo


def fetcher(repo: Repo, remote: str | None = None) -> Callable[[Metadata | Mapping[str, int]], None]:
    """fetch(meta) downloads the objects `meta` needs that are missing, from `remote` (default: as git-lfs picks).

    `meta` may also be {oid: size} of objects named elsewhere (a git-lfs pointer).
    """

    def fetch(meta: Metadata | Mapping[str, int]) -> None:
        from git_theta import hooks
        from git_theta.errors import TransferError
        from git_theta.transfer import client, scan

        # A clone gets its pre-push hook here, as git-lfs's filter installs its hooks.
        hooks.ensure_installed(repo.worktree)
        wanted = dict(meta) if isinstance(meta, Mapping) else scan.referenced([meta])
        missing = sum(1 for oid in wanted if not repo.store.has(oid))
        try:
            client.download(repo, wanted, remote)
        except TransferError as error:
            raise TransferError(
                f"{missing} object(s) of this checkpoint are not in the local store and could not be downloaded: "
                f"{error}"
            ) from None

    return fetch


def repair(repo: Repo, corrupt: Mapping[str, int], remote: str | None = None) -> None:
    """Download again the objects of `corrupt` (oid -> size) that the store has but that failed verification on use,
    each sha256-verified and renamed over the damaged file; for the smudge path that detects a corrupt object
    (the same as `git theta fetch --repair` does for whole revisions). Raises TransferError if any stays corrupt."""
    from git_theta.errors import TransferError
    from git_theta.transfer import client

    try:
        client.download(repo, corrupt, remote, replace=frozenset(corrupt))
    except TransferError as error:
        raise TransferError(f"{len(corrupt)} corrupt object(s) could not be downloaded again: {error}") from None
