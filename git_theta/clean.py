"""Clean: a checkpoint file in, metadata out; new tensors go to the object store."""

from __future__ import annotations

import io
import shlex
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO, Any, BinaryIO

from git_theta import git, metadata, objects, packs, parallel, plugins, progress
from git_theta.checkpoints.base import SNIFF_BYTES, CheckpointFormat
from git_theta.errors import OUT_OF_MEMORY, CheckpointError, MetadataError, ThetaError
from git_theta.metadata import Metadata, ParamEntry, StoredLink
from git_theta.repo import Repo
from git_theta.store import ObjectStore
from git_theta.tensor import Tensor
from git_theta.update_engine import auto, pending

# Tensors handed to the pool but not yet stored (large ones, or every one with theta.packs false): bounds memory
# while hashing/compressing runs in the background of reading. 16 MiB: two 8 MiB jobs keep both cores busy.
IN_FLIGHT_BYTES = 16 << 20
# Jobs queued, whatever their bytes (with theta.packs false, each small tensor is a job of its own).
MAX_PENDING_JOBS = 4
# A pack batch whose members average fewer bytes is linked on the reading thread, and only its compressing and
# writing (which hold no GIL) go to the tensor pool: its other work is mostly Python per member, and a worker
# thread doing that only contends with the reader for the GIL. Storing whole batches, first add of
# 100,000 4 KB tensors (the files of benchmarks/tensor_count_bench.py, `git add` under /usr/bin/time, 2 runs):
# on the pool 8.4-8.9 s of CPU, 7.2-7.6 s wall, 168 MiB peak; on the reading thread 5.9-6.4 s, 6.3-6.6 s,
# 135 MiB. At 16 KB members the two tie on wall time (the reading thread uses less CPU); at 256 KB the pool's
# overlap wins (1.1-1.3 s wall against 1.8-2.6 s for 1,000 of them).
INLINE_MEAN_BYTES = 64 << 10
FORMAT_ATTRIBUTE = "theta-format"


class _Prefixed(io.RawIOBase):
    """A stream that replays `head` before the rest of `rest`."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class StoringSink:
    """Hashes each tensor, reuses what an earlier version already stored, stores the rest.

    Small tensors are stored in batches, each batch writing one pack (git_theta/packs.py): per tensor there is
    no object file of its own. A batch of members averaging under INLINE_MEAN_BYTES is linked (hashed, looked
    up) on the reading thread and compressed and written on the tensor pool; the rest go to the pool whole, while
    the next tensors are read.
    """

    def __init__(
        self,
        store: ObjectStore,
        prior: list[Metadata],
        side_loaded: dict[str, tuple[str, tuple[StoredLink, ...]]] | None = None,
        related: list[Metadata] | None = None,
        pack: bool = True,
    ) -> None:
        self.store = store
        self.pack = pack  # small tensors into pack objects (theta.packs)
        self.prior = prior
        # name -> (hash, chain) left by `git theta add --update-type` (see git_theta.update_engine.pending)
        self.side_loaded = side_loaded or {}
        # Tensors reuse entries of earlier versions and of `related` files (Repo.sibling_metadata); deltas and
        # repacking look at earlier versions only.
        self.by_hash: dict[str, ParamEntry] = {}
        for meta in [*prior, *(related or [])]:
            for entry in meta.params.values():
                self.by_hash.setdefault(entry.hash, entry)
        # (byte count, job) per batch in flight, oldest first; a job gives (name, entry) pairs
        self.pending: deque[tuple[int, parallel.Job[list[tuple[str, ParamEntry]]], set[str]]] = deque()
        self.seen: set[str] = set()
        self.batch: list[tuple[str, Tensor]] = []
        self.batch_bytes = 0
        self.done: dict[str, ParamEntry] = {}
        self.in_flight = 0
        self.present: set[str] = set()  # objects found in the store: asked once per clean, not once per tensor

    def add(self, name: str, tensor: Tensor) -> None:
        if name in self.seen:
            raise CheckpointError(f"parameter {name!r} appears twice")
        self.seen.add(name)
        size = tensor.nbytes
        if size > packs.MEMBER_MAX_BYTES or not self.pack:
            self._submit([(name, tensor)], size, packed=False)
            return
        self.batch.append((name, tensor))
        self.batch_bytes += size
        if self.batch_bytes >= packs.PACK_TARGET_BYTES or len(self.batch) >= packs.MAX_MEMBERS:
            self._submit_batch()

    def _submit_batch(self) -> None:
        if self.batch:
            batch, size = self.batch, self.batch_bytes
            self.batch, self.batch_bytes = [], 0
            self._submit(batch, size, packed=True)

    def _submit(self, batch: list[tuple[str, Tensor]], size: int, packed: bool) -> None:
        if packed and size < INLINE_MEAN_BYTES * len(batch):
            # Linked here (hashing, reuse: Python per member, which a worker would only fight the reader for); the
            # pack's members are compressed and written on the pool, holding no GIL, while the next batch is read.
            writer, entries = self._link_batch(batch, packed, on_reader=True)
            if isinstance(writer, packs.PackWriter) and writer.members:
                hashes = {entry.hash for _, entry in entries if entry.stored[-1].object == packs.UNWRITTEN}
                # One pack job at a time: the tensors waiting to be packed are then one batch's.
                while any(queued for _, _, queued in self.pending):
                    self._collect_oldest()
                self._queue(size, lambda: self._write_pack(writer, entries), hashes)
            else:
                self.done.update(entries)
            return
        self._queue(size, lambda: self._store_batch(batch, packed), set())

    def _queue(self, size: int, job: Callable[[], list[tuple[str, ParamEntry]]], hashes: set[str]) -> None:
        """Run `job` on the tensor pool; `hashes`: of the new tensors whose entries it resolves (see `_store`)."""
        while self.pending and (self.in_flight + size > IN_FLIGHT_BYTES or len(self.pending) >= MAX_PENDING_JOBS):
            self._collect_oldest()
        self.pending.append((size, parallel.submit_tensor_job(job), hashes))
        self.in_flight += size

    def _collect_oldest(self) -> None:
        size, future, hashes = self.pending.popleft()
        entries = future.result()
        self.done.update(entries)
        self.in_flight -= size
        if hashes:
            for _, entry in entries:
                # A later batch with the same bytes (tied weights, zero biases) reuses this entry.
                self.by_hash.setdefault(entry.hash, entry)

    def _drain(self) -> None:
        while self.pending:
            self._collect_oldest()

    def _store_batch(self, batch: list[tuple[str, Tensor]], packed: bool) -> list[tuple[str, ParamEntry]]:
        """Entries for one batch, stored on the pool: new small tensors go to one pack, written once linked."""
        writer, entries = self._link_batch(batch, packed, on_reader=False)
        if not isinstance(writer, packs.PackWriter) or not writer.members:
            return entries
        entries = self._write_pack(writer, entries)
        for _, entry in entries:
            self.by_hash.setdefault(entry.hash, entry)
        return entries

    def _link_batch(
        self, batch: list[tuple[str, Tensor]], packed: bool, on_reader: bool
    ) -> tuple[auto.LinkWriter, list[tuple[str, ParamEntry]]]:
        # Objects written unpacked are looked for only where an earlier version exists to have written them.
        reuse = self.store if self.prior else None
        writer: auto.LinkWriter = packs.PackWriter(reuse) if packed else packs.DirectLinks(self.store)
        fresh: dict[str, ParamEntry] = {}  # hash -> unwritten entry, for equal tensors within this batch
        return writer, [(name, self._store(name, tensor, writer, fresh, on_reader)) for name, tensor in batch]

    def _write_pack(
        self, writer: packs.PackWriter, entries: list[tuple[str, ParamEntry]]
    ) -> list[tuple[str, ParamEntry]]:
        oid, _ = writer.write(self.store)
        self.present.add(oid)
        return [(name, writer.resolve(entry)) for name, entry in entries]

    def _has_all(self, links: Sequence[StoredLink]) -> bool:
        """Whether the store has every link's object (asked of the store once per object and clean)."""
        for link in links:
            if link.object not in self.present:
                if not self.store.has(link.object):
                    return False
                self.present.add(link.object)
        return True

    def _store(
        self, name: str, tensor: Tensor, writer: auto.LinkWriter, fresh: dict[str, ParamEntry], on_reader: bool
    ) -> ParamEntry:
        """Reuse a known entry, else take a side-loaded chain, else the smallest of dense/sparse/xor."""
        digest = tensor.hash()
        known = fresh.get(digest)  # an equal tensor earlier in this batch: its pack is not written yet
        if known is not None:
            return known
        if on_reader and digest not in self.by_hash and any(digest in queued for _, _, queued in self.pending):
            # An equal tensor in a batch still being written: wait for its entry, which a clean storing batch
            # after batch would reuse (so the metadata does not depend on how far the pool got).
            self._drain()
        known = self.by_hash.get(digest)
        if known is not None and self._has_all(known.stored):
            return known
        side_hash, side_chain = self.side_loaded.get(name, ("", ()))
        if side_hash == digest and self._has_all(side_chain):
            return ParamEntry(tensor.dtype, tensor.shape, digest, side_chain)
        prior = auto.prior_entry(self.prior, name, tensor, self.store)
        entry = auto.store_changed(self.store, name, tensor, digest, prior, writer)
        if isinstance(writer, packs.PackWriter):
            fresh[digest] = entry
        else:
            self.by_hash.setdefault(digest, entry)
        return entry

    def put_blob(self, data: bytes) -> dict[str, Any]:
        oid, size = self.store.put(objects.encode_blob(data))
        return {"object": oid, "size": size}

    def finish(self) -> dict[str, ParamEntry]:
        self._submit_batch()
        self._drain()
        if any(_same_entries(meta.params, self.done) for meta in self.prior):
            # The file is a version already staged or committed (`git status` after a touch, the working file
            # a merge wrote): give its metadata back unchanged, or an unchanged file would show as modified.
            return self.done
        # Only packs this file's earlier versions used: a pack a sibling file wrote (a resharded model's old
        # shard) is shared, not this file's history to compact.
        own = {link.object for meta in self.prior for entry in meta.params.values() for link in entry.stored}
        return packs.repack(self.store, self.done, own)

    def abandon(self) -> None:
        self.batch = []
        for _, future, _ in self.pending:
            future.cancel()
        for _, future, _ in self.pending:
            if not future.cancelled():
                future.exception()


def _same_entries(old: dict[str, ParamEntry], new: dict[str, ParamEntry]) -> bool:
    # Identity first: a reused entry is the prior version's own object, so this rarely compares fields.
    return len(old) == len(new) and all(
        (entry := old.get(name)) is value or entry == value for name, value in new.items()
    )


def choose_format(repo: Repo, path: str, head: bytes) -> CheckpointFormat:
    """The format forced by the theta-format attribute, else the one whose sniff accepts the file.

    A third-party format that fails to load is left out of sniffing (and named if
    nothing else accepts the file): it must not stop every other `git add`.
    """
    forced = git.check_attr(FORMAT_ATTRIBUTE, path, cwd=repo.worktree)
    if forced is not None and forced != "set":
        try:
            plugin = plugins.checkpoint(forced)
        except ThetaError as error:
            raise CheckpointError(f"{path}: {FORMAT_ATTRIBUTE}={forced} in .gitattributes: {error}") from None
        return plugin()
    loaded, broken = plugins.loadable(plugins.CHECKPOINTS)
    formats: dict[str, type[CheckpointFormat]] = loaded
    for name, why in broken.items():
        # A refused plugin that claims this extension was meant to read the file: sniffing another format instead
        # would store it under a format the author did not choose.
        claimed = getattr(plugins.rejected(plugins.CHECKPOINTS, name), "extensions", ())
        if isinstance(claimed, tuple) and all(isinstance(e, str) for e in claimed) and path.lower().endswith(claimed):
            raise CheckpointError(f"{path}: {why}")
    by_extension = [f for f in formats.values() if f.claims(path)]
    others = [f for f in formats.values() if f not in by_extension]
    for plugin in by_extension + others:
        if plugin.sniff(head, path):
            return plugin()
    if not head:
        raise CheckpointError(f"{path}: the file is empty, not a checkpoint")
    unloaded = "".join(f"; not tried: {error}" for error in broken.values())
    # Usually a config, tokenizer or README file a broad pattern (weights/**) routes to git-theta: say how to let
    # git store it, in words that can be pasted.
    hint = (
        "; if .gitattributes routes it to git-theta by mistake, let git store it: git theta track --exclude "
        f"{shlex.quote(path)}"
    )
    raise CheckpointError(
        f"{path}: not a checkpoint git-theta can read (tried formats: {', '.join(formats)}){unloaded}{hint}"
    )


def _read_at_most(stream: IO[bytes], head: bytes, limit: int) -> bytes:
    """`head` plus the rest of the stream, stopping at `limit` bytes: one byte over the metadata cap is
    enough for parse to refuse it, so a huge file is never read whole. Loops because a raw stream (the
    filter protocol's) returns one packet per read."""
    parts, size = [head], len(head)
    while size < limit:
        part = stream.read(min(limit - size, 1 << 20))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def clean(
    repo: Repo,
    path: str,
    stream: IO[bytes],
    *,
    store: ObjectStore | None = None,
    prior: list[Metadata] | None = None,
    size: int | None = None,
) -> bytes:
    """Metadata for the checkpoint read from `stream`; stores new objects on the way.

    `git theta migrate` cleans past versions: it names the `prior` versions (the parent commit's, not HEAD's), the
    `store` (a throwaway one for `migrate info`) and the file's `size`; side-loaded updates then do not apply.
    """
    head = stream.read(SNIFF_BYTES)
    if metadata.looks_like_metadata(head):
        # Already clean (e.g. a checkout made without the smudge filter): keep it.
        return metadata.parse(_read_at_most(stream, head, metadata.MAX_BYTES + 1), path).serialize()
    checkpoint = choose_format(repo, path, head)
    target = repo.store if store is None else store
    parsed: set[bytes] = set()  # prior versions' text, which parses: an equal result needs no second check
    if prior is None:
        own = repo.prior_metadata(path, parsed)
        related = [] if own else repo.sibling_metadata(path)  # a new name: its directory's files may hold its tensors
        sink = StoringSink(target, own, pending.load(repo.common_dir, path), related, packs.enabled(repo.worktree))
    else:
        sink = StoringSink(target, prior, pack=packs.enabled(repo.worktree))
    reader: BinaryIO = io.BufferedReader(_Prefixed(head, stream), 1 << 20)
    try:
        # one sync for all of the file's new objects, before git gets (and records) the metadata naming them
        total = _file_size(repo, path) if size is None else size
        with target.batch(), progress.Progress(f"git-theta: storing {path}", total) as bar:
            file_section = checkpoint.read(reader, path, progress.counting_sink(sink, bar))
            params = sink.finish()
    except ThetaError as error:
        sink.abandon()
        raise CheckpointError(f"{path}: cannot read as {checkpoint.name}: {error}") from None
    except OSError:
        sink.abandon()
        raise  # the machine's failure (disk full, permission denied), not the file's: described where caught
    except MemoryError:
        sink.abandon()
        raise CheckpointError(f"{path}: {OUT_OF_MEMORY}") from None
    except Exception as error:
        sink.abandon()
        raise CheckpointError(f"{path}: cannot read as {checkpoint.name}: {type(error).__name__}: {error}") from error
    return _checked_metadata(Metadata(checkpoint.name, file_section, params), path, parsed)


def _checked_metadata(meta: Metadata, path: str, parsed: set[bytes]) -> bytes:
    """The serialized metadata, once the parser checkout uses accepts it: clean must never commit
    metadata that smudge would refuse (a reader's slip, or a plugin's, is caught here, at `git add`).
    Text equal to a version that parsed (`git status` after a touch) is not parsed again."""
    data = meta.serialize()
    if data in parsed:
        return data
    try:
        metadata.parse(data, "its metadata", keep=False)
    except MetadataError as error:
        raise CheckpointError(
            f"{path}: cannot store as {meta.format}: {error}; checkout would refuse it, so nothing was added"
        ) from None
    return data


def _file_size(repo: Repo, path: str) -> int:
    """Size of the working tree file being cleaned, for the progress bar (0 if unknown)."""
    try:
        return (repo.worktree / path).stat().st_size
    except OSError:
        return 0


CleanFunction = Callable[[Repo, str, IO[bytes]], bytes]
