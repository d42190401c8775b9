"""Pack objects: the objects of many small parameters stored together in one Git LFS object.

A pack is its members' objects (git_theta/objects.py) written back to back, nothing else, so an unpacked object is
a pack of one member and every reader of objects reads a member unchanged. A link names a member by the pack's oid
and size (what Git LFS moves, fsck hashes and gc keeps) plus the member's `offset` and `length` (metadata version
git-theta/2). Specified in docs/formats.md, section 3a; locked by tests/packs_test.py.

Why: one object file per tensor costs a create, a write and a rename each (and as many LFS transfers), which for
a 10^5-tensor model dwarfs hashing and compressing its bytes. Packs are never rewritten; see `repack` for when the
live members of mostly-dead packs are copied forward.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from git_theta import git, objects
from git_theta.errors import StoreError
from git_theta.metadata import ParamEntry, StoredLink
from git_theta.store import ObjectStore, object_id
from git_theta.tensor import Tensor

# Tensors of at most this many bytes go into packs; larger ones keep an object each (their own dedup and transfer
# granularity, and a pack's bytes stay few enough to hold while it is written).
MEMBER_MAX_BYTES = 1 << 20
# A pack is closed once its raw tensor bytes reach this, or it holds MAX_MEMBERS members.
PACK_TARGET_BYTES = 8 << 20
MAX_MEMBERS = 8192
# Stands for the pack's oid until the pack is written (its name is the sha256 of all its members).
UNWRITTEN = "0" * 64
# `git config theta.packs false`: store every tensor as an object of its own and write version-1 metadata, which a
# git-theta from before packs reads (for a team not all of whose machines have upgraded).
CONFIG = "theta.packs"
# A clean copies a version's members out of packs of which it uses less than this share (see `repack`).
LIVE_SHARE = 0.5


class PackWriter:
    """Collects member objects; `write` stores them as one pack, `resolve` gives the links their place in it.

    Until `write`, a link names its member by number (`offset`, with object UNWRITTEN and no length): a dense
    member's bytes are encoded only then, many at once (objects.encode_dense_many), so the work runs where
    `write` runs (the clean's tensor pool) and a caller linking tensors only hashes them.

    With `reuse_from`, a member whose bytes already are an object of that store (written unpacked by the merge
    driver, `git theta compact` or a git-theta before packs) links to that object instead: a file git just wrote
    from such metadata cleans back to the same metadata (git refreshes a merged file's index entry so), and bytes
    stored once are not stored again in a pack. Dense members are then encoded at once, to be looked for.
    """

    def __init__(self, reuse_from: ObjectStore | None = None) -> None:
        self.members: list[Sequence[bytes | memoryview] | Tensor] = []  # encoded, or a dense tensor to encode
        self.size = 0  # bytes of the members encoded so far (`repack` closes a pack by it)
        self.reuse_from = reuse_from
        self.placed: list[tuple[int, int]] = []  # (offset, length) per member, once written
        self.oid, self.pack_size = UNWRITTEN, 0

    def put_link(self, update: str, pieces: Iterable[bytes | memoryview]) -> StoredLink:
        """A link to a new member holding `pieces`; its object is UNWRITTEN until `write`."""
        pieces = list(pieces)
        if self.reuse_from is not None:
            oid, size = object_id(pieces)
            if self.reuse_from.has(oid):
                return StoredLink(update, oid, size)
        self.members.append(pieces)
        self.size += sum(len(piece) for piece in pieces)
        return StoredLink(update, UNWRITTEN, 0, len(self.members) - 1)

    def put_dense(self, tensor: Tensor) -> StoredLink:
        """A link to a new member holding `tensor` as a dense object (objects.encode_dense)."""
        if self.reuse_from is not None:
            return self.put_link("dense", objects.encode_dense(tensor))
        self.members.append(tensor)
        return StoredLink("dense", UNWRITTEN, 0, len(self.members) - 1)

    def write(self, store: ObjectStore) -> tuple[str, int]:
        """Store the members as one pack (nothing written for none); returns its (oid, size)."""
        if self.members:
            self.oid, self.pack_size = store.put(self._pack_pieces())
        return self.oid, self.pack_size

    def _pack_pieces(self) -> Iterator[bytes]:
        """The pack's bytes, one piece per WRITE_SLICE_MEMBERS members, their dense ones encoded then: a slice's
        tensors are freed once encoded, so a pack being written never holds its tensors, their planes, their
        frames and its bytes at once. One piece per slice, not per member: hashing a 4 KB piece on its own drops
        and takes back the GIL, which the reading thread then holds until the writer waits for it."""
        members, self.members = self.members, []
        offset = 0
        for start in range(0, len(members), WRITE_SLICE_MEMBERS):
            members_slice = members[start : start + WRITE_SLICE_MEMBERS]
            members[start : start + WRITE_SLICE_MEMBERS] = [()] * len(members_slice)
            encoded = iter(objects.encode_dense_many([m for m in members_slice if isinstance(m, Tensor)]))
            pieces: list[bytes | memoryview] = []
            for member in members_slice:
                member_pieces = next(encoded) if isinstance(member, Tensor) else member
                length = sum(len(piece) for piece in member_pieces)
                self.placed.append((offset, length))
                offset += length
                pieces.extend(member_pieces)
            del members_slice, encoded
            yield b"".join(pieces)

    def resolve(self, entry: ParamEntry) -> ParamEntry:
        """The entry with its UNWRITTEN link pointing into the written pack."""
        last = entry.stored[-1]  # a new link is always the last of its chain (a dense start or a delta on one)
        if last.object != UNWRITTEN:
            return entry
        # Built directly: dataclasses.replace costs ~2 us a call, 10^5 times per file.
        return ParamEntry(entry.dtype, entry.shape, entry.hash, (*entry.stored[:-1], self.resolve_link(last)))

    def resolve_link(self, link: StoredLink) -> StoredLink:
        """The UNWRITTEN link `put_link` or `put_dense` gave, pointing into the written pack."""
        assert link.object == UNWRITTEN and link.offset is not None, "only a link this writer gave is resolved"
        offset, length = self.placed[link.offset]
        return StoredLink(link.update, self.oid, self.pack_size, offset, length)


# A pack's dense members are encoded, and the pack hashed and written, this many members at a time (~1 MB of 4 KB
# tensors; see PackWriter._pack_pieces).
WRITE_SLICE_MEMBERS = 256


class DirectLinks:
    """Where a link goes when it is not packed: an object of its own."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def put_link(self, update: str, pieces: Iterable[bytes | memoryview]) -> StoredLink:
        oid, size = self.store.put(pieces)
        return StoredLink(update, oid, size)

    def put_dense(self, tensor: Tensor) -> StoredLink:
        return self.put_link("dense", objects.encode_dense(tensor))


def link_bytes(store: ObjectStore, link: StoredLink) -> Any:
    """The bytes of one link: its pack member (read alone, not the whole pack), else its whole object."""
    if link.offset is None or link.length is None:
        return store.get(link.object)
    data = store.read_range(link.object, link.offset, link.length)
    if len(data) != link.length:
        raise _truncated(link, len(data))
    return data


# A batch's members of one pack are read in one piece when that piece is at most this many times the bytes they
# use (members of one version are mostly adjacent; a repacked or sparse pack is read member by member).
SPAN_SLACK = 2


class MemberReads:
    """The pack members a batch of links needs, read with one pread per pack instead of one per member.

    A 4 KB member costs ~5 us to read alone (lock, descriptor cache, syscall), as much as decompressing it. What
    a member's bytes are, and the check that none is cut short, are the same as link_bytes's.
    """

    def __init__(self, store: ObjectStore, links: Iterable[StoredLink]) -> None:
        self.store = store
        members: dict[str, set[tuple[int, int]]] = {}
        for link in links:
            if link.offset is not None and link.length is not None:
                members.setdefault(link.object, set()).add((link.offset, link.length))
        self._spans: dict[str, tuple[int, memoryview]] = {}
        self._whole: dict[str, Any] = {}  # small unpacked objects read so far, by oid
        for oid, spans in members.items():
            if len(spans) < 2:
                continue
            start = min(offset for offset, _ in spans)
            end = max(offset + length for offset, length in spans)
            if end - start <= SPAN_SLACK * sum(length for _, length in spans):
                try:
                    self._spans[oid] = (start, _read_span(store, oid, start, end - start))
                except StoreError:
                    pass  # missing: each member's own read fails where the caller names its parameter

    def span_bytes(self, link: StoredLink) -> memoryview | None:
        """The member's bytes when they were read ahead whole with others of its pack, else None (nothing is read:
        the caller takes link_bytes, which reads it or names what is missing)."""
        span = self._spans.get(link.object)
        if span is None or link.offset is None or link.length is None:
            return None
        start, view = span
        data = view[link.offset - start : link.offset - start + link.length]
        return data if len(data) == link.length else None

    def link_bytes(self, link: StoredLink) -> Any:
        if link.offset is None and link.size <= MEMBER_MAX_BYTES:
            # A small whole object many entries share (equal tensors stored once, unpacked): read once per batch.
            data = self._whole.get(link.object)
            if data is None:
                data = self._whole[link.object] = link_bytes(self.store, link)
            return data
        span = self._spans.get(link.object)
        if span is None or link.offset is None or link.length is None:
            return link_bytes(self.store, link)
        start, view = span
        data = view[link.offset - start : link.offset - start + link.length]
        if len(data) != link.length:
            raise _truncated(link, len(data))
        return data


# A span at least this long is mapped from the page cache, not read: a read of 8 MB of 1 MB members costs fresh
# pages and a copy (~2 ms), a mapping neither.
MAP_SPAN_BYTES = 4 << 20


def _read_span(store: ObjectStore, oid: str, start: int, length: int) -> memoryview:
    """`length` bytes of the object from `start` (fewer at its end)."""
    if length < MAP_SPAN_BYTES:
        return memoryview(store.read_range(oid, start, length))
    return store.map_range(oid, start, length)


def _truncated(link: StoredLink, remain: int) -> StoreError:
    return StoreError(
        f"object {link.object} is truncated: its member at offset {link.offset} needs {link.length} bytes, "
        f"{remain} remain"
    )


def live_bytes(entries: Iterable[ParamEntry]) -> dict[str, int]:
    """Per pack, the bytes of its members these entries use (each member counted once)."""
    seen: set[tuple[str, int]] = set()
    live: dict[str, int] = {}
    for entry in entries:
        for link in entry.stored:
            if link.length is not None and link.key not in seen:
                seen.add(link.key)
                live[link.object] = live.get(link.object, 0) + link.length
    return live


def sparse_packs(entries: Iterable[ParamEntry]) -> set[str]:
    """Packs of which these entries use less than LIVE_SHARE of the bytes.

    The repack policy: a new version of a file copies its members out of such packs into the packs it writes, so
    fetching or checking out any one version never transfers more than about 1 / LIVE_SHARE times the bytes it
    uses. Packs themselves are never rewritten (their members may be shared by other versions, and an LFS object
    never changes): the copies cost store space once, bounded by the same share.
    """
    entries = list(entries)
    sizes = {link.object: link.size for entry in entries for link in entry.stored if link.length is not None}
    return {oid for oid, live in live_bytes(entries).items() if live < LIVE_SHARE * sizes[oid]}


def repack(store: ObjectStore, entries: dict[str, ParamEntry], eligible: set[str]) -> dict[str, ParamEntry]:
    """The entries with every member of a sparse pack (see `sparse_packs`) among `eligible` copied, byte for byte,
    into new packs."""
    if not eligible:
        return entries  # a first version: no pack of its own to look at (~1 us an entry saved at 10^5 entries)
    sparse = sparse_packs(entries.values()) & eligible
    if not sparse:
        return entries
    moved: dict[tuple[str, int], StoredLink] = {}  # old member -> the link to its copy
    writer = PackWriter()
    unwritten: list[tuple[str, int]] = []

    def flush() -> None:
        writer.write(store)
        for key in unwritten:
            moved[key] = writer.resolve_link(moved[key])
        unwritten.clear()

    for name in sorted(entries):
        for link in entries[name].stored:
            if link.object in sparse and link.key not in moved:
                moved[link.key] = writer.put_link(link.update, [link_bytes(store, link)])
                unwritten.append(link.key)
                if writer.size >= PACK_TARGET_BYTES:
                    flush()
                    writer = PackWriter()
    if unwritten:
        flush()
    result = dict(entries)
    for name, entry in entries.items():
        if any(link.object in sparse for link in entry.stored):
            stored = tuple(moved[link.key] if link.object in sparse else link for link in entry.stored)
            result[name] = dataclasses.replace(entry, stored=stored)
    return result


_enabled: dict[str, bool] = {}


def enabled(worktree: Path) -> bool:
    """Whether the repository packs small tensors (theta.packs, default true); asked once per process and repository."""
    key = str(worktree)
    if key not in _enabled:
        result = git.run("config", "--type=bool", "--get", CONFIG, cwd=worktree, check=False)
        _enabled[key] = not (result.returncode == 0 and result.stdout.strip() == b"false")
    return _enabled[key]
