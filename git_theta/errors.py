"""One root error class; the CLI maps it to exit code 1 (user error). Environment failures (OSError
with a known errno) are described in one line too, by `describe_os_error`."""

from __future__ import annotations

import errno
import os


class ThetaError(Exception):
    """A problem the user can fix: bad input, missing object, wrong config.

    The message is shown as is, so it names the file and the problem.
    """


class CheckpointError(ThetaError):
    """A checkpoint file could not be read or written."""


class StoreError(ThetaError):
    """An object is missing or corrupt in the object store."""


class MetadataError(ThetaError):
    """A metadata file is malformed."""


class GitError(ThetaError):
    """A git command failed."""


class TransferError(ThetaError):
    """Objects could not be moved to or from a remote (LFS server or file remote)."""


class PluginError(ThetaError):
    """A plugin could not be found or loaded."""


# OSError numbers that mean the machine, not git-theta, is at fault, each with what the user can do. Any
# other errno (EBADF, EINVAL, ...) stays a bug: it means our code used the system wrongly.
_ENVIRONMENT_HINTS = {
    errno.ENOSPC: "free some space and retry",
    errno.EDQUOT: "free some space (disk quota) and retry",
    errno.EFBIG: "the file system cannot hold a file this large",
    errno.EACCES: "check the permissions and owner of the file and its directory",
    errno.EPERM: "check the permissions and owner of the file and its directory",
    errno.EROFS: "the file system is mounted read-only",
    errno.EISDIR: "a directory is where a file should be; move it away",
    errno.ENOTDIR: "a file is where a directory should be; move it away",
    errno.ENOENT: "it is not there (removed while git-theta ran?)",
    errno.EEXIST: "something is already there; move it away",
    errno.ENOTEMPTY: "the directory is not empty",
    errno.EIO: "the disk or file system reported an I/O error; check it, then run `git theta fsck`",
    errno.ENXIO: "the device is not there",
    errno.ENODEV: "the device is not there",
    errno.ESTALE: "the network file system lost the file; retry",
    errno.EBUSY: "the file or device is busy; retry",
    errno.ETXTBSY: "the file is busy; retry",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) and retry",
    errno.ENFILE: "too many open files on this machine; retry later",
    errno.ENOMEM: "out of memory",
    errno.ENAMETOOLONG: "the path is too long for the file system",
    errno.ELOOP: "too many symbolic links in the path",
    errno.EXDEV: "the two paths are on different file systems",
}


def describe_os_error(error: OSError) -> str | None:
    """One line for an environment failure (disk full, permission denied, ...): the path(s), the system's
    reason and what to do; None when the error is not one the user can fix (a bug: let it show as one)."""
    hint = _ENVIRONMENT_HINTS.get(error.errno or 0)
    if hint is None:
        return None
    reason = error.strerror or os.strerror(error.errno or 0)
    paths = [str(name) for name in (error.filename, error.filename2) if name is not None]
    where = f"{' -> '.join(paths)}: " if paths else ""
    return f"{where}{reason}; {hint}".replace("\n", " ")


OUT_OF_MEMORY = "out of memory; close other programs or add memory (swap), then retry"
