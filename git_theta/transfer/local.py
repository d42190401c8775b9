"""file:// and plain-path remotes: objects in <remote git dir>/lfs/objects, as git-lfs keeps them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from git_theta.store import ObjectStore
from git_theta.transfer.lfs_http import CHUNK_BYTES, Cancelled


def remote_store(git_dir: Path) -> ObjectStore:
    return ObjectStore(git_dir / "lfs")


def copy(source: ObjectStore, target: ObjectStore, oid: str, cancel: threading.Event) -> int:
    """Copy one object, re-hashing on the way so a corrupt source object is never copied."""
    return target.put(_chunks(source.path(oid), cancel), expect=oid)[1]


def _chunks(path: Path, cancel: threading.Event) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            if cancel.is_set():
                raise Cancelled()
            yield chunk
