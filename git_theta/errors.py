"""One root error class; the CLI maps it to exit code 1 (user error)."""

from __future__ import annotations


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
