"""What every hostile-input and fault test asserts, in one place.

A hostile input (a checkpoint, committed metadata, a store object, a server answer, pkt-line bytes) must make the
command fail the way a user can act on: exit 1, exactly one `git-theta: error:` line that names the file or object,
no traceback, no "internal error", no crash log, memory and time bounded, and nothing lost or half-written: the
index, the working tree and the store are as they were (or, for a store, hold only verified objects).

    state = RepoState.capture(repo)
    result = run_bounded(["git", "add", "model.safetensors"], cwd=repo)
    assert_refused(result, names="model.safetensors")
    state.assert_unchanged(repo)
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Generous on purpose: these catch "allocates what the input declares" (GiBs) and "exponential" (minutes),
# not ordinary speed, on a shared 2-core machine.
DEFAULT_MAX_RSS_MB = 400
DEFAULT_MAX_SECONDS = 60.0

NEVER_SHOWN = (
    "Traceback (most recent call last)",
    "internal error",
    "git-theta-crash-",
    "RecursionError",
    "MemoryError",
)


@dataclass(frozen=True)
class BoundedResult:
    """A finished command with what it cost: peak RSS of it and every descendant it reaped, and wall time."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    max_rss_mb: float
    seconds: float
    stdout_bytes: bytes = b""  # stdout as written (a protocol's binary answer); `stdout` is it decoded for messages

    def describe(self) -> str:
        return (
            f"{' '.join(self.args)} -> exit {self.returncode}, {self.max_rss_mb:.0f} MB, {self.seconds:.1f} s\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


def run_bounded(
    args: list[str],
    cwd: Path,
    *,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    max_rss_mb: float = DEFAULT_MAX_RSS_MB,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> BoundedResult:
    """Run `args` (git or git-theta; git's filters are descendants it reaps, so their memory counts) and assert the
    bounds. Peak RSS comes from wait4 on this one command (forked by a small launcher, see _MEASURE), so neither the
    test process nor other tests of the same worker count. A command
    still running at 2 x max_seconds is killed and fails the test instead of hanging the suite."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as peak:
        start = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-c", _MEASURE, str(peak.fileno()), *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            pass_fds=[peak.fileno()],
            start_new_session=True,
        )
        feeder = threading.Thread(target=_feed, args=(process, input or b""), daemon=True)
        feeder.start()
        status = _wait(process, args, deadline=start + 2 * max_seconds)
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        peak.seek(0)
        raw = out.read()
        result = BoundedResult(
            list(args),
            status,
            raw.decode(errors="replace"),
            err.read().decode(errors="replace"),
            int(peak.read() or 0) / 1024,
            seconds,
            raw,
        )
    assert seconds <= max_seconds, f"took {seconds:.1f} s > {max_seconds} s\n{result.describe()}"
    assert result.max_rss_mb <= max_rss_mb, (
        f"peak RSS {result.max_rss_mb:.0f} MB > {max_rss_mb} MB\n{result.describe()}"
    )
    return result


def _feed(process: subprocess.Popen[bytes], data: bytes) -> None:
    assert process.stdin is not None
    try:
        process.stdin.write(data)
        process.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # the command stopped reading: that is its answer to the input


# The command is forked from this small launcher, not from the test process: a child forked (or vforked) from a
# pytest worker starts with the worker's memory, and the kernel counts that in the child's peak RSS, so a worker
# grown to 500 MB made `true` measure 500 MB. The launcher reports the command's peak (wait4) on fd argv[1] and
# exits as the command did (the same signal, if it was killed).
_MEASURE = """
import os, signal, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    except OSError as error:
        print(f"cannot run {sys.argv[2]}: {error}", file=sys.stderr)
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
os.write(int(sys.argv[1]), str(usage.ru_maxrss).encode())
if os.WIFSIGNALED(status):
    if os.WTERMSIG(status) not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
    os.kill(os.getpid(), os.WTERMSIG(status))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _wait(process: subprocess.Popen[bytes], args: list[str], deadline: float) -> int:
    while True:
        pid, status = os.waitpid(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait for it again
            return process.returncode
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)  # the launcher and the command (its own session)
            _, status = os.waitpid(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            raise AssertionError(f"{' '.join(args)} still ran at its time limit (killed)")
        time.sleep(0.01)


# A transfer's progress lines ("git-theta: downloading 13 object(s), 42.4 MB, from ..."), not part of a failure.
TRANSFER_PROGRESS = re.compile(r"^git-theta: (downloading|downloaded|uploading|uploaded) \d+ object\(s\)")


def git_theta_lines(text: str, progress: bool = False) -> list[str]:
    """The `git-theta:` lines of `text`; with `progress`, a transfer's progress lines are left out."""
    return [
        line
        for line in text.splitlines()
        if line.startswith("git-theta:") and not (progress and TRANSFER_PROGRESS.match(line))
    ]


def assert_refused(
    result: BoundedResult, names: str | list[str], exit_code: int | None = None, progress: bool = False
) -> str:
    """Failed the way a user can act on: exactly one `git-theta:` line, naming every one of `names`, and nothing a
    user should never see. The exit code is `exit_code`; by default 1 for git-theta itself and, for a git command
    whose filter or driver refused, git's own failure code (1 or 128: git says "fatal: ... clean filter failed").
    git's own lines around the failure are allowed; with `progress` (a download or upload), so are its progress
    lines. Returns the git-theta line."""
    names = [names] if isinstance(names, str) else names
    expected = {exit_code} if exit_code is not None else ({1, 128} if result.args[0] == "git" else {1})
    assert result.returncode in expected, f"expected exit {sorted(expected)}\n{result.describe()}"
    assert_nothing_internal(result)
    lines = git_theta_lines(result.stderr, progress)
    assert len(lines) == 1, f"expected one 'git-theta:' line, got {len(lines)}\n{result.describe()}"
    for name in names:
        assert name in lines[0], f"the error does not name {name!r}\n{result.describe()}"
    return lines[0]


def assert_nothing_internal(result: BoundedResult) -> None:
    for text in NEVER_SHOWN:
        assert text not in result.stdout + result.stderr, f"output shows {text!r}\n{result.describe()}"


@dataclass(frozen=True)
class RepoState:
    """What a failed command must leave as it was: the index, the working tree, git's status and the store."""

    index: str
    status: str
    files: dict[str, str]
    objects: frozenset[str]

    @classmethod
    def capture(cls, repo: Path) -> RepoState:
        return cls(
            index=_git(repo, "ls-files", "--stage", "-z"),
            status=_git(repo, "status", "--porcelain=v1", "-z"),
            files=_tree_hashes(repo),
            objects=frozenset(_store_objects(repo)),
        )

    def assert_unchanged(
        self, repo: Path, *, store_may_grow: bool = False, known_damaged: Collection[str] = ()
    ) -> None:
        """`store_may_grow`: a refused add may have stored some verified objects before it met the bad part
        (content-addressed and harmless); they must still be whole (their sha256 is their name).
        `known_damaged`: objects the test itself damaged; every other object must be whole."""
        after = RepoState.capture(repo)
        assert after.index == self.index, "the index changed"
        assert after.status == self.status, f"git status changed:\n{self.status!r}\n->\n{after.status!r}"
        assert after.files == self.files, (
            f"the working tree changed: {sorted(set(after.files.items()) ^ set(self.files.items()))}"
        )
        if store_may_grow:
            assert self.objects <= after.objects, "objects were lost from the store"
        else:
            assert after.objects == self.objects, f"the store changed: {sorted(after.objects ^ self.objects)}"
        assert_store_whole(repo, known_damaged)


def assert_store_whole(repo: Path, known_damaged: Collection[str] = ()) -> None:
    """Every object in the store (but `known_damaged`) is named by its sha256, and no temp file was left behind."""
    lfs = _lfs_dir(repo)
    for path in sorted((lfs / "objects").glob("??/??/*")):
        assert path.name in known_damaged or hashlib.sha256(path.read_bytes()).hexdigest() == path.name, (
            f"object {path} is not whole"
        )
    leftovers = sorted(p.name for p in (lfs / "tmp").iterdir()) if (lfs / "tmp").is_dir() else []
    assert not leftovers, f"temp files left in {lfs / 'tmp'}: {leftovers}"


def _lfs_dir(repo: Path) -> Path:
    common = Path(_git(repo, "rev-parse", "--git-common-dir").strip())
    return (common if common.is_absolute() else repo / common) / "lfs"


def _store_objects(repo: Path) -> list[str]:
    objects = _lfs_dir(repo) / "objects"
    return [path.name for path in objects.glob("??/??/*")] if objects.is_dir() else []


def _tree_hashes(repo: Path) -> dict[str, str]:
    files = {}
    for path in sorted(repo.rglob("*")):
        if ".git" in path.relative_to(repo).parts or not path.is_file() or path.is_symlink():
            continue
        files[str(path.relative_to(repo))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


# Committed metadata and store objects as a hostile collaborator leaves them: written straight into git and the
# store, past the filters that would never produce them.


def commit_blob(repo: Path, path: str, data: bytes, message: str = "hostile") -> str:
    """Commit `data` as the blob at `path` without running any filter; returns the new commit id."""
    blob = (
        subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=data, capture_output=True, check=True)
        .stdout.decode()
        .strip()
    )
    _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD").strip()


def put_object(repo: Path, data: bytes) -> str:
    """Store `data` as an object named by its sha256 (a well-formed name, whatever the bytes are); returns the oid."""
    oid = hashlib.sha256(data).hexdigest()
    path = store_path(repo, oid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return oid


def store_path(repo: Path, oid: str) -> Path:
    return _lfs_dir(repo) / "objects" / oid[:2] / oid[2:4] / oid


@contextmanager
def tmpfs(folder: Path, megabytes: int) -> Iterator[Path]:
    """`folder` as a tmpfs of `megabytes` (a small disk to fill, or another file system), unmounted afterwards.
    Mounting needs root (CI runs as root); elsewhere the test is skipped, saying why."""
    import pytest

    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)
