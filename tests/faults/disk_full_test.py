"""Disk full, on a small tmpfs the test mounts: add, checkout and fetch fail with one line naming the file and
"No space left on device", leave the index, working tree and store consistent (no partial object, no temp file),
and succeed once there is room again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "transfer"))
from fault_support import (  # noqa: E402
    MODEL,
    Models,
    a_clone,
    assert_checks_out,
    assert_fsck_ok,
    assert_status,
    assert_whole,
    assert_worktree_file,
    committed,
    init_repo,
    publisher,
    run,
)
from hostile_support import RepoState, assert_nothing_internal, assert_refused, run_bounded, tmpfs  # noqa: E402
from lfs_server import LfsServer  # noqa: E402

NO_SPACE = "No space left on device"
MB = 1 << 20


def assert_says_disk_full(line: str) -> None:
    """The reason is the disk, in words: not a Python exception's name, and not blamed on reading the input."""
    assert "OSError" not in line and "Errno" not in line, f"a Python internal is the reason shown: {line}"
    assert "cannot read" not in line, f"a full disk is reported as a problem reading the input: {line}"


class SmallDisk:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def resize(self, megabytes: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={megabytes}m", str(self.folder)], check=True, capture_output=True)

    def fill(self, leave_mb: float) -> Path:
        """A filler file that leaves about `leave_mb` MB free."""
        stat = os.statvfs(self.folder)
        free = stat.f_bavail * stat.f_frsize
        filler = self.folder / "filler"
        with open(filler, "wb") as out:
            out.truncate(0)
            chunk = b"\0" * MB
            for _ in range(max(0, int((free - leave_mb * MB) // MB))):
                out.write(chunk)  # written, not sparse: tmpfs counts only written pages
        return filler


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    with tmpfs(tmp_path / "small-disk", 90) as folder:
        yield SmallDisk(folder)


def test_add_on_a_full_disk_names_the_file_and_changes_nothing(small_disk: SmallDisk, models: Models) -> None:
    small_disk.resize(80)
    repo = init_repo(small_disk.folder / "repo")
    models.place(repo, 1)  # ~50 MB of the 80: its objects cannot all fit
    state = RepoState.capture(repo)
    result = run_bounded(["git", "add", MODEL], cwd=repo)
    assert_says_disk_full(assert_refused(result, names=[MODEL, NO_SPACE]))
    state.assert_unchanged(repo, store_may_grow=True)
    small_disk.resize(300)
    run(["git", "add", MODEL], repo)
    run(["git", "commit", "-q", "-m", "v1"], repo)
    assert_checks_out(repo, "HEAD", models.sha(1))
    assert_fsck_ok(repo)
    assert_status(repo)
    assert_whole(repo)


def test_git_checkout_on_a_full_disk_then_with_room(small_disk: SmallDisk, models: Models) -> None:
    small_disk.resize(300)
    repo = committed(init_repo(small_disk.folder / "repo"), models, 1, 2)
    run(["git", "checkout", "-q", "v1"], repo)
    (repo / MODEL).unlink()  # (else git's unlink of v1 frees the room v2 needs)
    filler = small_disk.fill(leave_mb=20)
    result = run_bounded(["git", "checkout", "-q", "v2"], cwd=repo)
    # git itself writes the smudged bytes into the working tree, so the failure is git's to report
    # ("error: unable to write file model.safetensors", "Out of diskspace"); git-theta must not add a crash to it
    assert result.returncode != 0, result.describe()
    assert f"unable to write file {MODEL}" in result.stderr, result.describe()
    assert_nothing_internal(result)
    assert_whole(repo)
    filler.unlink()
    retry = run(["git", "checkout", "-q", "v2"], repo, check=False)
    if retry.returncode != 0:
        # git leaves what it could write of the file, which its next checkout counts as a local change
        assert "Your local changes to the following files would be overwritten" in retry.stderr, retry.stderr
        run(["git", "checkout", "-q", "-f", "v2"], repo)
    assert_worktree_file(repo, models.sha(2))
    assert_checks_out(repo, "v1", models.sha(1))
    assert_status(repo)
    assert_fsck_ok(repo)
    assert_whole(repo)


def test_git_theta_checkout_on_a_full_disk_names_the_file_and_leaves_no_temp_file(
    small_disk: SmallDisk, models: Models
) -> None:
    small_disk.resize(300)
    repo = committed(init_repo(small_disk.folder / "repo"), models, 1)
    (repo / MODEL).unlink()
    run(["git", "checkout", "--", MODEL], repo, env={**os.environ, "GIT_THETA_SKIP_SMUDGE": "1"})
    filler = small_disk.fill(leave_mb=20)
    state = RepoState.capture(repo)
    result = run_bounded(["git-theta", "checkout"], cwd=repo)
    assert_says_disk_full(assert_refused(result, names=[MODEL, NO_SPACE]))
    state.assert_unchanged(repo)
    filler.unlink()
    run(["git-theta", "checkout"], repo)
    assert_worktree_file(repo, models.sha(1))
    assert_status(repo)
    assert_whole(repo)


def test_fetch_on_a_full_disk_names_the_problem_and_lands_no_partial_object(
    tmp_path: Path, small_disk: SmallDisk, models: Models, lfs_server: LfsServer
) -> None:
    (tmp_path / "team").mkdir()
    origin, alice = publisher(tmp_path / "team", models, lfs_server, (1,))
    run(["git", "push", "-q", "origin", "main"], alice)
    small_disk.resize(300)
    bob = a_clone(small_disk.folder, origin, "bob")
    filler = small_disk.fill(leave_mb=20)
    state = RepoState.capture(bob)
    result = run_bounded(["git-theta", "fetch"], cwd=bob)
    assert_says_disk_full(assert_refused(result, names=NO_SPACE, progress=True))
    state.assert_unchanged(bob, store_may_grow=True)
    filler.unlink()
    run(["git-theta", "fetch"], bob)
    assert_fsck_ok(bob)
    run(["git", "checkout", "-q", "main"], bob)
    assert_worktree_file(bob, models.sha(1))
    assert_status(bob)
    assert_whole(bob)
