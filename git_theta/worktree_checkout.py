"""`git theta checkout`'s library side: write tracked checkpoints from the index straight into the working tree.

Each file is streamed to disk (git holds a smudge filter's whole output in memory), written to a temp file and
renamed into place, then git's index is refreshed so `git status` stays quiet.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from pathlib import Path

from git_theta import files, git, metadata, smudge
from git_theta.errors import GitError
from git_theta.files import write_atomically
from git_theta.repo import Repo
from git_theta.transfer import on_demand


def checkout(*, repo: Repo, patterns: list[str], force: bool) -> list[str]:
    """Rebuild every tracked checkpoint matching a pattern (all when none) whose working-tree file is metadata
    text (any file with `force`); the paths written. Raises GitError when git's index cannot be refreshed."""
    root = repo.worktree
    tracked = git.ls_files_with_attr("filter", "theta", cwd=root)
    chosen = [p for p in tracked if not patterns or any(p == w or fnmatch.fnmatch(p, w) for w in patterns)]
    written = [p for p in chosen if materialize(repo, p, force)]
    if chosen:
        # Every chosen path, not just those written now: a run killed after its rename left a whole file that git's
        # index still knows by the metadata's size. A refresh re-cleans only files whose stat changed, so an
        # unchanged checkpoint costs a stat, and one the user edited stays modified.
        refreshed = git.run("update-index", "-q", "--refresh", "--", *chosen, cwd=root, check=False)
        if refreshed.returncode != 0:
            raise GitError(
                f"wrote {len(written)} file(s), but git's index could not be refreshed (git status shows them "
                f"modified until it is): {_refresh_failure(root, refreshed.stderr)}"
            )
    return written


def materialize(repo: Repo, path: str, force: bool) -> bool:
    """Rebuild one file from its index metadata; False when skipped."""
    data = git.blob(f":{path}", cwd=repo.worktree)
    if data is None or not metadata.looks_like_metadata(data):
        return False
    target = repo.worktree / path
    try:
        found = os.lstat(target)
    except FileNotFoundError:
        found = None
    if found is not None and not force:
        # lstat, never open first: opening a FIFO blocks until a writer comes, a device may never end, and
        # a symlink would be followed out of the repository. Only a regular file can hold metadata text.
        if not stat.S_ISREG(found.st_mode):
            return False  # not metadata text: someone's own thing stands here; --force replaces it as git would
        with open(target, "rb") as current:
            if not metadata.looks_like_metadata(current.read(len(metadata.PREFIX))):
                return False  # already a checkpoint; never clobber local work silently
    # Written inside .git and renamed into place: a killed checkout leaves nothing `git add -A` could pick up,
    # and the next run (or `git theta gc`) removes what it left. A worktree on another file system gets its
    # temp file beside the checkpoint instead, hidden from git by .git/info/exclude.
    repo.store.tmp_dir.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not files.same_file_system(repo.store.tmp_dir, target.parent):
        _exclude_temp_files(repo)
    write_atomically(
        target,
        lambda out: smudge.smudge(repo.store, path, data, out, on_demand.fetcher(repo)),
        temp_dir=repo.store.tmp_dir,
    )
    return True


def _exclude_temp_files(repo: Repo) -> None:
    exclude = repo.common_dir / "info" / "exclude"
    try:
        lines = exclude.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    if files.BESIDE_PATTERN not in lines:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with open(exclude, "a", encoding="utf-8") as out:
            prefix = "\n" if lines and exclude.read_bytes()[-1:] != b"\n" else ""
            out.write(
                f"{prefix}# git-theta: temp files of an interrupted `git theta checkout`\n{files.BESIDE_PATTERN}\n"
            )


def _refresh_failure(root: Path, stderr: bytes) -> str:
    """Why `git update-index --refresh` failed; with -q git says nothing of a lock a killed git left behind."""
    lock = Path(git.run("rev-parse", "--git-path", "index.lock", cwd=root).stdout.decode().strip())
    lock = lock if lock.is_absolute() else root / lock
    if lock.exists():
        return (
            f"{lock} exists (another git command is running, or one was killed: if none is running, remove it and run "
            "this again)"
        )
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[0] if lines else "git update-index failed"
