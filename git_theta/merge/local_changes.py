"""Uncommitted edits of a checkpoint that a merge would lose: finding them, refusing, keeping a backup.

git protects a dirty file only when the merge result for it differs from HEAD: it checks just before writing
the working tree. A merge driver that answers "conflict" with %A left as ours (what an unresolved checkpoint
merge does) therefore never triggers that check, the path becomes unmerged with the user's edit in the working
tree, and `git merge --abort` (which resets unmerged paths to HEAD) then throws the edit away. So the driver
checks first, the way git does for an ordinary file: the working-tree file, cleaned, against our version.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from git_theta import git, metadata
from git_theta.errors import ThetaError


class LocalChangesError(ThetaError):
    """The working-tree file holds uncommitted changes that the requested operation would overwrite."""


def blob_id(data: bytes, toplevel: Path) -> str:
    """git's object id of `data` as a blob, in the repository's own hash (sha1 or sha256)."""
    return git.run("hash-object", "--no-filters", "--stdin", cwd=toplevel, input=data).stdout.decode().strip()


def worktree_differs(toplevel: Path, path: str, version: bytes) -> bool:
    """Whether the working-tree file at `path` holds anything but the committed metadata `version` describes.

    A missing file holds nothing to lose. Cheap when git's index already vouches for the file (its entry is
    `version` and the file's stat matches; `git merge` refreshes the index before it merges); otherwise the
    file is cleaned exactly as `git add` would clean it (the checkpoint is read once) and the two blobs compared.
    """
    target = toplevel / path
    if not target.is_file():
        return False
    wanted = blob_id(version, toplevel)
    staged = git.run("rev-parse", "-q", "--verify", f":0:{path}", cwd=toplevel, check=False).stdout.decode().strip()
    if staged == wanted and git.run("diff-files", "--quiet", "--", path, cwd=toplevel, check=False).returncode == 0:
        return False
    cleaned = git.run("hash-object", "-w", "--", path, cwd=toplevel, check=False)  # runs the clean filter for `path`
    if cleaned.returncode != 0:
        return True  # not even a checkpoint git-theta can read (the filter said why): certainly not our version
    blob = cleaned.stdout.decode().strip()
    if blob == wanted:
        return False
    # The same tensors can be stored by other chains (a clean that found a base object missing stores it whole
    # again): what the file holds is its format, its file section and each parameter's dtype, shape and hash.
    return _content(git.run("cat-file", "blob", blob, cwd=toplevel).stdout) != _content(version)


def _content(data: bytes) -> object:
    try:
        meta = metadata.parse(data, "metadata")
    except ThetaError:
        return data
    return meta.format, meta.file, {name: (e.dtype, e.shape, e.hash) for name, e in meta.params.items()}


def back_up(common_dir: Path, toplevel: Path, path: str) -> Path:
    """Keep the working-tree file at `path` under <git-common-dir>/theta/backup/ (a hard link where it can be:
    the file is replaced by rename, never rewritten in place, so the link keeps the old bytes). Outside the
    working tree, so `git add -A` never commits the raw copy."""
    directory = common_dir / "theta" / "backup"
    directory.mkdir(parents=True, exist_ok=True)
    backup = directory / f"{path.replace('/', '__')}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
    try:
        os.link(toplevel / path, backup)
    except OSError:
        shutil.copy2(toplevel / path, backup)
    return backup
