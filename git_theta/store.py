"""The content-addressed object store, in the Git LFS layout.

Objects live at <git-common-dir>/lfs/objects/<oid[0:2]>/<oid[2:4]>/<oid>,
oid = sha256 of the object's bytes, so stock git-lfs and LFS servers accept
them. Writes go to a temp file first, are synced and renamed into place; an
object that is written again keeps its file and gets a fresh mtime (gc's grace).

An object made here (not downloaded) also gets a second hard link under
<git-common-dir>/theta/unpushed/ until a push uploads it: `git lfs prune` of
git-lfs < 3.5 deletes every object no LFS pointer names, and never looks there
(docs/design.md, "The object store").
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
# \A and \Z, not ^ and $: `$` also matches before a final newline, so "<64 hex>\n" would pass.
OID_PATTERN = re.compile(r"\A[0-9a-f]{64}\Z")


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
        try:
            return _mapped(file, size, 0)
        except OSError:
            pass
    return file.read()


def _mapped(file: BinaryIO, length: int, offset: int) -> mmap.mmap:
    """`length` bytes of the file from `offset` (a multiple of mmap.ALLOCATIONGRANULARITY), mapped read-only;
    MAP_POPULATE maps every page at once instead of faulting them in one by one."""
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(file.fileno(), length, flags=flags, prot=mmap.PROT_READ, offset=offset)


class ObjectStore:
    def __init__(self, lfs_dir: Path, unpushed_dir: Path | None = None) -> None:
        self.lfs_dir = lfs_dir
        self.objects_dir = lfs_dir / "objects"
        self.tmp_dir = lfs_dir / "tmp"
        # A second hard link of each object this store made itself (not downloaded), until a push uploads it.
        # `git lfs prune` before git-lfs 3.5 deletes every object no git-lfs pointer names, unpushed ones too
        # (docs/migrating.md, "Mixed repositories"); it never looks here, so such an object is linked back into
        # place when next needed. Same file, so no extra disk; `git theta gc` deletes both names. None: a store
        # that is not a repository's own (a remote's, a staging area), whose objects are never "unpushed".
        self.unpushed_dir = unpushed_dir
        self.restored = 0  # objects linked back into place (fsck reports them)
        self._swept = False
        # Open files of recently read packs: a checkout reads thousands of members of a few packs.
        self._open: dict[str, int] = {}
        self._open_lock = threading.Lock()
        self._batches = 0  # > 0 inside `batch()`: objects are synced once at its end, not one by one

    def path(self, oid: str) -> Path:
        check_oid(oid)
        return self.objects_dir / oid[0:2] / oid[2:4] / oid

    def has(self, oid: str) -> bool:
        return self.path(oid).is_file() or self._restore(oid)

    def unpushed_path(self, oid: str) -> Path | None:
        """The object's second name while no remote has it (None for a store that keeps none)."""
        check_oid(oid)
        return None if self.unpushed_dir is None else self.unpushed_dir / oid[0:2] / oid[2:4] / oid

    def _restore(self, oid: str) -> bool:
        """Link an unpushed object that something else deleted from objects/ back into place; True if it is there."""
        kept = self.unpushed_path(oid)
        if kept is None or not kept.is_file():
            return False  # not kept (the usual case: a downloaded or pushed object); and no directories made
        final = self.path(oid)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.link(kept, final)
            self.restored += 1
        except FileExistsError:
            pass  # another process restored it, or wrote it again, just now
        except OSError:
            return False  # no hard links here, or deleted just now (gc)
        return final.is_file()

    def _keep_unpushed(self, oid: str, final: Path) -> None:
        kept = self.unpushed_path(oid)
        if kept is None:
            return
        try:
            kept.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(final, kept)
            except FileExistsError:
                if os.path.samefile(kept, final):
                    return
                # A damaged copy was replaced (or a pruned one written again): keep the new file, not the old.
                spare = kept.with_name(f"{oid}.{os.getpid()}.{threading.get_ident()}")
                os.link(final, spare)
                os.replace(spare, kept)
        except OSError:
            pass  # no hard links here: the object is still stored, only not protected from git lfs prune

    def pushed(self, oids: Iterable[str]) -> None:
        """A remote holds these now: git lfs prune may delete them (they are fetched again when needed)."""
        for oid in oids:
            kept = self.unpushed_path(oid)
            if kept is not None:
                kept.unlink(missing_ok=True)

    def forget(self, oid: str) -> None:
        """Delete an object under both its names (`git theta gc`)."""
        self._close(oid)
        self.path(oid).unlink(missing_ok=True)
        self.pushed([oid])

    def unpushed_oids(self) -> Iterator[str]:
        """Every object kept under the second name, whether or not objects/ still has it."""
        if self.unpushed_dir is None or not self.unpushed_dir.is_dir():
            return
        for kept in sorted(self.unpushed_dir.glob("??/??/*")):
            if OID_PATTERN.match(kept.name):
                yield kept.name

    def stored_path(self, oid: str) -> Path | None:
        """The file that holds the object: its objects/ name, else its unpushed name (pruned, not restored yet)."""
        for path in (self.path(oid), self.unpushed_path(oid)):
            if path is not None and path.is_file():
                return path
        return None

    def restore_unpushed(self) -> None:
        """Link every unpushed object something deleted from objects/ back into place (before gc looks)."""
        for oid in self.unpushed_oids():
            if not self.path(oid).is_file():
                self._restore(oid)

    def put(
        self, pieces: Iterable[bytes | memoryview], expect: str | None = None, *, lfs_object: bool = False
    ) -> tuple[str, int]:
        """Store the concatenated pieces; returns (oid, size). Idempotent.

        With `expect` (a download), bytes that do not hash to it are discarded
        and StoreError is raised: a corrupt or truncated object never lands.
        `lfs_object`: a git-lfs pointer will name it (an export), so git-lfs
        pushes it and keeps it from its prune while unpushed: no second name.
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
                if expect is None and not lfs_object:  # made here, not downloaded: only this repository has it
                    self._keep_unpushed(oid, final)
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
            if not self._restore(oid):
                raise StoreError(f"object {oid} is missing from {self.objects_dir}") from None
            with open(path, "rb") as file:
                data = _map(file)
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
                    if not self._restore(oid):
                        raise StoreError(f"object {oid} is missing from {self.objects_dir}") from None
                    fd = os.open(self.path(oid), os.O_RDONLY | os.O_CLOEXEC)
            self._open[oid] = fd  # most recently used last
            while len(self._open) > OPEN_FILES:
                os.close(self._open.pop(next(iter(self._open))))
            return os.pread(fd, length, offset)

    def map_range(self, oid: str, offset: int, length: int) -> memoryview:
        """read_range's bytes, mapped read-only from the page cache instead of copied (for spans of megabytes)."""
        start = offset - offset % mmap.ALLOCATIONGRANULARITY  # a mapping starts at a page boundary
        try:
            with open(self.path(oid), "rb") as file:
                size = os.fstat(file.fileno()).st_size
                if offset >= size:
                    return memoryview(b"")
                try:
                    mapped = _mapped(file, min(size, offset + length) - start, start)
                except OSError:  # a file system that cannot map: read, as read_range does
                    return memoryview(self.read_range(oid, offset, length))
        except FileNotFoundError:
            return memoryview(self.read_range(oid, offset, length))  # restores an unpushed copy, or names it missing
        return memoryview(mapped)[offset - start :]

    def all_oids(self) -> Iterator[str]:
        if not self.objects_dir.is_dir():
            return
        for path in sorted(self.objects_dir.glob("??/??/*")):
            if OID_PATTERN.match(path.name):
                yield path.name
