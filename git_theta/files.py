"""Temp files renamed into place: a reader never sees half a file, a crash leaves nothing that looks real.

Every temp file this tool writes is named `<prefix>theta-<pid>.<space>-<random>`, so the next run can tell
leftovers of a killed process (pid gone) from the writes of a live one and remove them. `<space>` names the
pid space the pid belongs to (this boot, this pid namespace): only there does "no such process" mean the
writer is gone, so only there is a leftover removed at once; elsewhere (another container, another machine
sharing the repository) it must also be old.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from git_theta.errors import ThetaError

TEMP_INFIX = "theta-"
# A leftover is removed only once its writer's pid is gone AND it has not been written to for this long:
# a pid may be another container's (not visible here), and a live writer touches its file as it goes.
STALE_SECONDS = 300
# <prefix>theta-<pid>[.<space>]-<8 random chars from mkstemp>, nothing after (a sideload's ".orig" backup is
# the user's own file and never removed). Names without <space> were written before it existed.
_TEMP_NAME = re.compile(r"theta-(\d+)(?:\.([0-9a-f]{8}))?-[a-z0-9_]{8}$")
# Errors of a write to an open file, which name no file by themselves.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


# What temp_file buffers: a pack arrives as thousands of ~4 KB members (see temp_file).
WRITE_BUFFER_BYTES = 1 << 20


@contextmanager
def temp_file(directory: Path, prefix: str = "", label: Path | None = None) -> Iterator[tuple[BinaryIO, Path]]:
    """A new file `<prefix>theta-<pid>-XXXXXXXX` in `directory`, open for writing; removed on the way out
    unless the caller has renamed it away (see `replace`). A failed write (disk full, I/O error) names
    `label` (default: the temp file), as the system's error for a write to an open file names nothing."""
    directory.mkdir(parents=True, exist_ok=True)
    import tempfile  # here: a filter that only reads (a checkout's) never needs it, and it is ~4 ms to import

    fd, name = tempfile.mkstemp(dir=directory, prefix=f"{prefix}{TEMP_INFIX}{os.getpid()}.{pid_space()}-")
    path = Path(name)
    try:
        # A 1 MiB buffer: a pack is written as thousands of ~4 KB members, and each unbuffered write that ends
        # inside a file-system block costs the kernel a zeroed block (~20% of a 100,000-tensor first add's CPU).
        with os.fdopen(fd, "wb", buffering=WRITE_BUFFER_BYTES) as file:
            yield file, path
    except OSError as error:
        if error.filename is None and error.errno in _WRITE_ERRNOS:
            error.filename = str(label or path)
        raise
    finally:
        try:
            path.unlink()
        except FileNotFoundError:
            pass  # renamed into place


def replace(file: BinaryIO, temp: Path, target: Path, mode: int, durable: bool = True) -> None:
    """Make the written temp file durable, then rename it over `target`: after a power cut the target is
    the old file or the whole new one, never an empty or partial one. `durable=False` leaves the syncing to
    the caller (`sync_file_system` after a batch of renames, see ObjectStore.batch)."""
    file.flush()
    if durable:
        os.fsync(file.fileno())
    os.chmod(temp, mode)
    os.replace(temp, target)
    if durable:
        _fsync_directory(target.parent)


def sync_file_system(path: Path) -> None:
    """Write out everything pending on the file system holding `path` (Linux syncfs; elsewhere sync)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    except (AttributeError, OSError):
        pass  # no syncfs here
    os.sync()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the data itself is synced
    finally:
        os.close(fd)


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
}


def open_regular(path: Path | str) -> io.BufferedReader:
    """Open a working-tree file for reading; a FIFO, socket, device or directory is refused (ThetaError).

    Opened with O_NONBLOCK and checked with fstat on that descriptor (no lstat-then-open race): opening a FIFO
    blocking would wait forever for a writer, and a device can be endless. A symlink is followed, as `open` does.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "an unusual file")
            raise ThetaError(
                f"{path}: is {kind}, not a regular file; git-theta reads only regular files (remove or rename it)"
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def write_atomically(
    target: Path, write: Callable[[BinaryIO], None], temp_dir: Path | None = None, mode: int | None = None
) -> None:
    """Call `write` on a temp file, then rename it over `target` with `mode` (default: the target's, else 0o644).

    The temp file goes in `temp_dir` when that is on the same file system as `target` (e.g. inside .git,
    where a killed write is invisible to `git status` and `git add -A`), else beside `target`.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    directory, prefix = target.parent, f".{target.name}."
    remove_stale(directory, prefix)
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
        remove_stale(temp_dir)
        if same_file_system(temp_dir, target.parent):
            directory, prefix = temp_dir, "checkout-"
    with temp_file(directory, prefix, label=target) as (out, temp):
        write(out)
        replace(out, temp, target, mode)


def same_file_system(first: Path, second: Path) -> bool:
    """Whether a file can be renamed from one directory into the other (both must exist)."""
    return os.stat(first).st_dev == os.stat(second).st_dev


# For .git/info/exclude: temp files written beside a file (see write_atomically) are never shown or added.
BESIDE_PATTERN = f".*.{TEMP_INFIX}*"


def is_stale(path: Path) -> bool:
    """A temp file of ours whose writer is gone: its pid is no process of this pid space, or (written in
    another pid space, where we cannot ask) it is not alive here and nobody has written it for STALE_SECONDS."""
    match = _TEMP_NAME.search(path.name)
    if match is None:
        return False
    pid, space = int(match.group(1)), match.group(2)
    if _alive(pid):
        return False
    if space == pid_space():
        return True
    try:
        age = time.time() - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    return age > STALE_SECONDS


def _host_name() -> str:
    """platform.node(), without importing platform (~1 ms of every process start) where os.uname has it."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import platform

    return platform.node()


@functools.cache
def pid_space() -> str:
    """8 hex digits naming this boot and this pid namespace: where a pid means one process."""
    parts = [_host_name()]
    for source in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(os.readlink(source) if source.endswith("/ns/pid") else Path(source).read_text().strip())
        except OSError:
            parts.append("?")  # not Linux: the host name alone then says whose pid it is
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:8]


def is_ours(path: Path) -> bool:
    return _TEMP_NAME.search(path.name) is not None


def remove_stale(directory: Path, prefix: str = "") -> int:
    """Remove the stale temp files (`is_stale`) named `<prefix>...theta-...` in `directory`; how many went."""
    removed = 0
    try:
        names = os.listdir(directory)  # once per filter start: a listing, not a glob (its patterns, fnmatch's)
    except OSError:
        return 0
    candidates = [directory / name for name in names if name.startswith(prefix) and TEMP_INFIX in name[len(prefix) :]]
    for path in candidates:
        if is_stale(path):
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass  # another run removed it first
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process (or a pid we cannot ask about): assume it is writing
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that has exited but is not yet reaped (a killed git's filter, until init reaps it) still answers
    kill(pid, 0), yet writes nothing more."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (not Linux), or just reaped: kill's answer stands
    return stat[stat.rindex(")") + 2 :].startswith("Z")
