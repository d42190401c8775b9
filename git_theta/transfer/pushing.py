"""What a push must upload: objects referenced by the metadata of commits the remote does not have yet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from git_theta import git
from git_theta.repo import Repo
from git_theta.transfer import client, scan


@dataclass(frozen=True)
class RefUpdate:
    """One line of pre-push stdin: `<local ref> <local oid> <remote ref> <remote oid>`."""

    local_ref: str
    local_oid: str
    remote_ref: str
    remote_oid: str

    @classmethod
    def parse(cls, line: str) -> RefUpdate | None:
        parts = line.split()
        return cls(*parts) if len(parts) == 4 else None


def is_null(oid: str) -> bool:
    return set(oid) == {"0"}


def known_commits(ids: list[str], cwd: Path) -> list[str]:
    """The commits (annotated tags peeled) of those ids this repository has; a remote tip someone else pushed may be
    unknown here."""
    if not ids:
        return []
    peeled = "".join(f"{i}^{{commit}}\n" for i in ids).encode()
    out = git.run("cat-file", "--batch-check=%(objectname) %(objecttype)", cwd=cwd, input=peeled)
    return [line.split()[0] for line in out.stdout.decode().splitlines() if line.endswith(" commit")]


def objects_for(
    repo: Repo, remote: str, tips: list[str], remote_tips: list[str], everything: bool = False
) -> dict[str, int]:
    """oid -> size of objects needed by commits reachable from `tips` but not from what the remote has.

    What the remote has: `remote_tips` it reported and our remote-tracking refs of it (as git-lfs assumes).
    `everything` looks at the whole history of `tips` instead; the server still says what it lacks.
    """
    tips = known_commits(tips, repo.worktree)
    if not tips:
        return {}
    exclude = [] if everything else ["--not", *known_commits(remote_tips, repo.worktree), f"--remotes={remote}"]
    blobs = scan.rev_list_blobs([*tips, *exclude], repo.worktree)
    return scan.referenced(scan.metadata_of(blobs, repo.worktree))


def push_updates(repo: Repo, remote: str, updates: list[RefUpdate]) -> client.Moved:
    """Upload for a set of ref updates (deletions need nothing)."""
    pushed = [update for update in updates if not is_null(update.local_oid)]
    tips = [update.local_oid for update in pushed]
    remote_tips = [update.remote_oid for update in pushed if not is_null(update.remote_oid)]
    wanted = objects_for(repo, remote, tips, remote_tips)
    ref = pushed[0].remote_ref if pushed else None
    return client.upload(repo, wanted, remote, ref)
