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
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# Generous on purpose: these catch "allocates what the input declares" (GiBs) and "exponential" (minutes),
# not ordinary speed, on a shared 2-core machine.
DEFAULT_MAX_RSS_MB = 400
DEFAULT_MAX_SECONDS = 60.0

NEVER_SHOWN = ("Traceback (most recent call last)", "internal error", "git-theta-crash-", "RecursionError", "MemoryError")


@dataclass(frozen=True)
class BoundedResult:
    """A finished command with what it cost: peak RSS of it and every descendant it reaped, and wall time."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    max_rss_mb: float
    seconds: float

    def describe(self) -> str:
        return (f"{' '.join(self.args)} -> exit {self.returncode}, {self.max_rss_mb:.0f} MB, {self.seconds:.1f} s\n"
                f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}")


# Linux carries a process's peak RSS across fork and exec, so wait4 on a command this (pytest) process starts
# reports at least this process's own RSS (~230 MB once torch is imported): a command is started by this small
# launcher instead, a fresh interpreter that forks it and reports the command's own wait4 peak on a pipe.
_LAUNCHER = r"""
import os, signal, sys
report = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    os.close(report)
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    except OSError as error:
        sys.stderr.write(f"cannot run {sys.argv[2]}: {error}\n")
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
os.write(report, str(usage.ru_maxrss).encode())
code = os.waitstatus_to_exitcode(status)
if code < 0:
    try:
        signal.signal(-code, signal.SIG_DFL)
    except (OSError, ValueError):
        pass
    os.kill(os.getpid(), -code)
os._exit(code)
"""


def run_bounded(args: list[str], cwd: Path, *, input: bytes | None = None, env: dict[str, str] | None = None,
                max_rss_mb: float = DEFAULT_MAX_RSS_MB, max_seconds: float = DEFAULT_MAX_SECONDS) -> BoundedResult:
    """Run `args` (git or git-theta; git's filters are descendants it reaps, so their memory counts) and assert the
    bounds. Peak RSS comes from wait4 on this one command (through _LAUNCHER), so neither this process nor other
    tests of the same worker count. A command still running at 2 x max_seconds is killed and fails the test
    instead of hanging the suite."""
    report, report_end = os.pipe()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        try:
            process = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(report_end), *args], cwd=cwd, env=env,
                                       stdin=subprocess.PIPE, stdout=out, stderr=err, pass_fds=(report_end,), start_new_session=True)
        finally:
            os.close(report_end)
        feeder = threading.Thread(target=_feed, args=(process, input or b""), daemon=True)
        feeder.start()
        try:
            status, usage = _wait(process, args, deadline=start + 2 * max_seconds)
        finally:
            with os.fdopen(report, "rb") as reported:
                peak_kb = reported.read()
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        result = BoundedResult(list(args), status, out.read().decode(errors="replace"),
                               err.read().decode(errors="replace"), int(peak_kb or usage.ru_maxrss) / 1024, seconds)
    assert seconds <= max_seconds, f"took {seconds:.1f} s > {max_seconds} s\n{result.describe()}"
    assert result.max_rss_mb <= max_rss_mb, f"peak RSS {result.max_rss_mb:.0f} MB > {max_rss_mb} MB\n{result.describe()}"
    return result


def _feed(process: subprocess.Popen[bytes], data: bytes) -> None:
    assert process.stdin is not None
    try:
        process.stdin.write(data)
        process.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # the command stopped reading: that is its answer to the input


def _wait(process: subprocess.Popen[bytes], args: list[str], deadline: float) -> tuple[int, resource.struct_rusage]:
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait for it again
            return process.returncode, usage
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)  # the launcher, the command and everything it started
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            raise AssertionError(f"{' '.join(args)} still ran at its time limit (killed)")
        time.sleep(0.01)


# A transfer's progress lines ("git-theta: downloading 13 object(s), 42.4 MB, from ..."), not part of a failure.
TRANSFER_PROGRESS = re.compile(r"^git-theta: (downloading|downloaded|uploading|uploaded) \d+ object\(s\)")


def git_theta_lines(text: str, progress: bool = False) -> list[str]:
    """The `git-theta:` lines of `text`; with `progress`, a transfer's progress lines are left out."""
    return [line for line in text.splitlines() if line.startswith("git-theta:") and not (progress and TRANSFER_PROGRESS.match(line))]


def assert_refused(result: BoundedResult, names: str | list[str], exit_code: int | None = None, progress: bool = False) -> str:
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
        return cls(index=_git(repo, "ls-files", "--stage", "-z"), status=_git(repo, "status", "--porcelain=v1", "-z"),
                   files=_tree_hashes(repo), objects=frozenset(_store_objects(repo)))

    def assert_unchanged(self, repo: Path, *, store_may_grow: bool = False) -> None:
        """`store_may_grow`: a refused add may have stored some verified objects before it met the bad part
        (content-addressed and harmless); they must still be whole (their sha256 is their name)."""
        after = RepoState.capture(repo)
        assert after.index == self.index, "the index changed"
        assert after.status == self.status, f"git status changed:\n{self.status!r}\n->\n{after.status!r}"
        assert after.files == self.files, f"the working tree changed: {sorted(set(after.files.items()) ^ set(self.files.items()))}"
        if store_may_grow:
            assert self.objects <= after.objects, "objects were lost from the store"
        else:
            assert after.objects == self.objects, f"the store changed: {sorted(after.objects ^ self.objects)}"
        assert_store_whole(repo)


def assert_store_whole(repo: Path) -> None:
    """Every object in the store is named by its sha256, and no temp file was left behind."""
    lfs = _lfs_dir(repo)
    for path in sorted((lfs / "objects").glob("??/??/*")):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"object {path} is not whole"
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
