"""The content-addressed object store, in the Git LFS layout.

Objects live at <git-common-dir>/lfs/objects/<oid[0:2]>/<oid[2:4]>/<oid>,
oid = sha256 of the object's bytes, so stock git-lfs and LFS servers accept
them. Writes go to a temp file first, are synced and renamed into place; an
object that is written again keeps its file and gets a fresh mtime (gc's grace).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from git_theta import files
from git_theta.errors import StoreError

# Pack files kept open by read_range.
OPEN_FILES = 16
OID_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def check_oid(oid: str) -> str:
    if not isinstance(oid, str) or not OID_PATTERN.match(oid):
        raise StoreError(f"invalid object id {oid!r}: expected 64 lowercase hex digits")
    return oid


def object_id(pieces: Iterable[bytes | memoryview]) -> tuple[str, int]:
    """(oid, size) that `ObjectStore.put` gives these pieces, without writing them."""
    hasher = hashlib.sha256()
    size = 0
    for piece in pieces:
        hasher.update(piece)
        size += len(piece)
    return hasher.hexdigest(), size


def _map(file: BinaryIO) -> bytes | mmap.mmap:
    """The whole file mapped read-only; read instead where it cannot be mapped (empty, some FUSE/9p mounts)."""
    size = os.fstat(file.fileno()).st_size
    if size:
        # MAP_POPULATE maps every page at once instead of faulting them in one by one.
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        try:
            return mmap.mmap(file.fileno(), size, flags=flags, prot=mmap.PROT_READ)
        except OSError:
            pass
    return file.read()


class ObjectStore:
    def __init__(self, lfs_dir: Path) -> None:
        self.lfs_dir = lfs_dir
        self.objects_dir = lfs_dir / "objects"
        self.tmp_dir = lfs_dir / "tmp"
        self._swept = False
        # Open files of recently read packs: a checkout reads thousands of members of a few packs.
        self._open: dict[str, int] = {}
        self._open_lock = threading.Lock()
        self._batches = 0  # > 0 inside `batch()`: objects are synced once at its end, not one by one

    def path(self, oid: str) -> Path:
        check_oid(oid)
        return self.objects_dir / oid[0:2] / oid[2:4] / oid

    def has(self, oid: str) -> bool:
        return self.path(oid).is_file()

    def put(self, pieces: Iterable[bytes | memoryview], expect: str | None = None) -> tuple[str, int]:
        """Store the concatenated pieces; returns (oid, size). Idempotent.

        With `expect` (a download), bytes that do not hash to it are discarded
        and StoreError is raised: a corrupt or truncated object never lands.
        """
        if not self._swept:
            # Leftovers of killed writers (named with their pid, see git_theta.files) go at the next write.
            self._swept = True
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            files.remove_stale(self.tmp_dir)
        hasher = hashlib.sha256()
        size = 0
        with files.temp_file(self.tmp_dir) as (tmp, tmp_name):
            for piece in pieces:
                hasher.update(piece)
                tmp.write(piece)
                size += len(piece)
            oid = hasher.hexdigest()
            if expect is not None and oid != expect:
                raise StoreError(f"object {expect}: received {size} bytes whose sha256 is {oid}; discarded")
            final = self.path(oid)
            # An existing object of the wrong size (a damaged copy) is replaced, not trusted.
            if not self._reuse(final, size):
                final.parent.mkdir(parents=True, exist_ok=True)
                files.replace(tmp, tmp_name, final, 0o644, durable=not self._batches)
                self._close(oid)  # a damaged copy was replaced: read the new file from now on
        return oid, size

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Objects put inside are made durable together at the end (one syncfs), not each with two fsyncs:
        a clean of 10,000 small tensors otherwise spends ~2 ms an object in fsync. Until the end a crash may
        leave an object short or empty; its size or sha256 then no longer matches its name, so `put`
        replaces it and readers report it as corrupt (repairable). Nothing refers to such an object yet: the
        clean filter answers git, which records the metadata, only after the batch is synced."""
        self._batches += 1
        try:
            yield
        finally:
            self._batches -= 1
        if self.objects_dir.is_dir():
            files.sync_file_system(self.objects_dir)

    @staticmethod
    def _reuse(final: Path, size: int) -> bool:
        """Keep an existing whole object, refreshing its mtime as git does for a loose object it finds
        again: `git theta gc` spares young objects, and this one is about to be referenced anew."""
        try:
            if final.stat().st_size != size:
                return False
            os.utime(final)
        except FileNotFoundError:
            return False  # not there, or gc removed it just now: write it
        except PermissionError:
            return False  # another user's object: a fresh copy renamed over it is young too (as git does)
        return True

    def get(self, oid: str, verify: bool = False) -> bytes | mmap.mmap:
        """The object's bytes, read-only; `verify` re-hashes them (fsck, downloads).

        Mapped from the page cache, not copied: a checkout reads every object
        once, and a copy costs a fresh page per 4 KiB (~50 ms per 90 MB here).
        Objects never change in place (see put), so the mapping stays valid.
        """
        path = self.path(oid)
        try:
            with open(path, "rb") as file:
                data = _map(file)
        except FileNotFoundError:
            raise StoreError(f"object {oid} is missing from {self.objects_dir}") from None
        if verify and hashlib.sha256(data).hexdigest() != oid:
            raise StoreError(f"object {oid} is corrupt: its sha256 does not match ({path})")
        return data

    def _close(self, oid: str) -> None:
        with self._open_lock:
            fd = self._open.pop(oid, None)
        if fd is not None:
            os.close(fd)

    def read_range(self, oid: str, offset: int, length: int) -> bytes:
        """`length` bytes of the object from `offset` (fewer at its end), without mapping or reading the rest."""
        # Read under the lock: another thread may otherwise close (evict) the file between lookup and read, and
        # its descriptor number be reused for another file. Members are at most 1 MiB, so a read is brief.
        with self._open_lock:
            fd = self._open.pop(oid, None)
            if fd is None:
                try:
                    fd = os.open(self.path(oid), os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    raise StoreError(f"object {oid} is missing from {self.objects_dir}") from None
            self._open[oid] = fd  # most recently used last
            while len(self._open) > OPEN_FILES:
                os.close(self._open.pop(next(iter(self._open))))
            return os.pread(fd, length, offset)

    def all_oids(self) -> Iterator[str]:
        if not self.objects_dir.is_dir():
            return
        for path in sorted(self.objects_dir.glob("??/??/*")):
            if OID_PATTERN.match(path.name):
                yield path.name
