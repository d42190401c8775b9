"""Environment failures (disk full, permission denied, a directory where an object should be) are one line
naming the path and the problem, exit 1 (git's 128 for a filter), never a traceback or "internal error"."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import git, theta
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).parent))
from hostile_support import RepoState, assert_refused, run_bounded, tmpfs  # noqa: E402

from git_theta.errors import describe_os_error  # noqa: E402

MODEL = "model.safetensors"
# Root obeys file permissions once these capabilities are gone (the tests run as root).
# A Python internal is never the reason shown (IsADirectoryError, OSError, [Errno 28], ...).
PYTHON_NAMES = re.compile(r"\w+Error\b|\[Errno")
NO_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def _model(path: Path, megabytes: float, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    count = int(megabytes * (1 << 20)) // 4 // 8
    save_file({f"layer{i}": rng.standard_normal(count, dtype=np.float32) for i in range(8)}, str(path))
    return path.read_bytes()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs of our own (needs root)."""
    with tmpfs(tmp_path / "disk", 6) as mount:
        yield mount


def _repo_on(disk: Path) -> Path:
    repo = disk / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    theta(repo, "install", "--local")
    theta(repo, "track", "*.safetensors")
    return repo


def _fill(disk: Path, leave_bytes: int) -> None:
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / "filler", "wb") as filler:
        filler.write(b"\0" * max(free - leave_bytes, 0))


def test_disk_full_during_git_add(small_disk: Path) -> None:
    repo = _repo_on(small_disk)
    _model(repo / MODEL, 2)
    _fill(small_disk, 1 << 20)  # the store's copy of the tensors does not fit
    state = RepoState.capture(repo)
    line = assert_refused(
        run_bounded(["git", "add", MODEL], cwd=repo), [MODEL, "No space left on device", "free some space"]
    )
    assert str(repo / ".git" / "lfs" / "tmp") in line and not PYTHON_NAMES.search(line), line
    state.assert_unchanged(repo, store_may_grow=True)
    (small_disk / "filler").unlink()
    git(repo, "add", MODEL)  # a retry with space completes
    assert theta(repo, "fsck").returncode == 0


def test_disk_full_during_git_theta_checkout(small_disk: Path) -> None:
    repo = _repo_on(small_disk)
    want = _model(repo / MODEL, 1.5)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "model")
    (repo / MODEL).unlink()
    subprocess.run(
        ["git", "checkout", "--", MODEL], cwd=repo, env=os.environ | {"GIT_THETA_SKIP_SMUDGE": "1"}, check=True
    )
    _fill(small_disk, 512 << 10)
    state = RepoState.capture(repo)
    line = assert_refused(run_bounded(["git-theta", "checkout"], cwd=repo), [MODEL, "No space left on device"])
    assert line.startswith(f"git-theta: error: {repo / MODEL}: No space left on device; free some space"), line
    state.assert_unchanged(repo)
    (small_disk / "filler").unlink()
    theta(repo, "checkout")
    assert (repo / MODEL).read_bytes() == want


def _committed(repo: Path) -> Path:
    """The model committed, removed from the working tree; the path of its first object."""
    _model(repo / MODEL, 0.1)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "model")
    (repo / MODEL).unlink()
    return sorted((repo / ".git" / "lfs" / "objects").glob("??/??/*"))[0]


def test_an_object_without_read_permission(repo: Path) -> None:
    victim = _committed(repo)
    victim.chmod(0)
    state = RepoState.capture(repo)
    result = run_bounded([*NO_OVERRIDE, "git", "checkout", "--", MODEL], cwd=repo)
    line = assert_refused(
        result, [MODEL, str(victim.resolve()), "Permission denied", "check the permissions"], exit_code=128
    )
    assert not PYTHON_NAMES.search(line), line
    victim.chmod(0o644)
    state.assert_unchanged(repo)


def test_a_store_without_write_permission(repo: Path) -> None:
    _model(repo / MODEL, 0.1)
    lfs = repo / ".git" / "lfs"
    lfs.mkdir(mode=0o555)
    state = RepoState.capture(repo)
    result = run_bounded([*NO_OVERRIDE, "git", "add", MODEL], cwd=repo)
    line = assert_refused(
        result, [MODEL, str((lfs / "tmp").resolve()), "Permission denied", "check the permissions"], exit_code=128
    )
    assert not PYTHON_NAMES.search(line), line
    lfs.chmod(0o755)
    state.assert_unchanged(repo)


def test_a_directory_where_an_object_should_be(repo: Path) -> None:
    victim = _committed(repo)
    git(repo, "checkout", "--", MODEL)
    git(repo, "rm", "-q", "--cached", MODEL)
    victim.unlink()
    victim.mkdir()
    state = RepoState.capture(repo)
    result = run_bounded(["git", "add", MODEL], cwd=repo)
    line = assert_refused(result, [MODEL, str(victim.resolve()), "Is a directory", "move it away"])
    assert not PYTHON_NAMES.search(line), line
    state.assert_unchanged(repo, known_damaged={victim.name})


@pytest.mark.parametrize("number", [errno.EIO, errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EISDIR])
def test_environment_errors_are_one_line_with_the_path(number: int) -> None:
    message = describe_os_error(OSError(number, os.strerror(number), "/store/ab/cd/abcd", None))
    assert (
        message is not None
        and message.startswith(f"/store/ab/cd/abcd: {os.strerror(number)}; ")
        and "\n" not in message
    )


@pytest.mark.parametrize("number", [errno.EBADF, errno.EINVAL, errno.EFAULT, None])
def test_other_os_errors_stay_bugs(number: int | None) -> None:
    assert describe_os_error(OSError(number, "whatever") if number else OSError("no errno")) is None
