"""Smudge: metadata in, the exact checkpoint file out."""

from __future__ import annotations

import functools
import hashlib
import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import IO, TYPE_CHECKING, Any, BinaryIO, TypeVar

from git_theta import (
    buffer_pool,
    densecodec,
    dtypes,
    metadata,
    objects,
    packs,
    parallel,
    plugins,
    progress,
)
from git_theta.errors import StoreError, ThetaError
from git_theta.metadata import ParamEntry, StoredLink
from git_theta.store import ObjectStore
from git_theta.tensor import Buffer, Tensor, hash_prefix, hash_with_prefix

if TYPE_CHECKING:
    from git_theta import lfs_pointer  # imported where a pointer is met: its patterns are ~1 ms of a filter's start

# How many bytes of rebuilt tensors may wait ahead of the writer.
PREFETCH_BYTES = 32 << 20
COPY_CHUNK = 8 << 20
# Small tensors are rebuilt this many (or this many bytes) per job. A batch is held ~3 times at once (its members
# read, its tensors, them joined) by each worker and up to MAX_QUEUED_BATCHES times waiting: at 1024 4 KB tensors
# a batch, the 100,000-tensor checkout peaked at 139 MiB, at 512 128 MiB, for the same CPU time.
BATCH_COUNT = 512
# Batches rebuilt ahead, whatever their bytes: 10^6 one-element tensors are a few MB, but a thousand batches of
# Tensor objects waiting would hold hundreds.
MAX_QUEUED_BATCHES = 4
BATCH_BYTES = 8 << 20
# A batch's tensors are joined into one buffer for the writer when they average fewer bytes than this; larger ones
# are written one by one: a write call is nothing beside them, and the joined copy of 8 MB (fresh pages, a copy)
# cost ~20 ms of a 100 MB model's ~110 ms of decoding.
JOIN_MEAN_BYTES = 64 << 10
# Small dense members decoded per call of the compiled decoder: a group's output (256 KB of 4 KB tensors) is still
# in cache when it is hashed; a whole batch's 4 MB is not (~2 us more per tensor).
FAST_GROUP = 64
# An unpacked dense object (a whole object is one member) this small goes through the compiled decoder too.
MAX_WHOLE = packs.MEMBER_MAX_BYTES
# Downloads what a checkpoint needs: its metadata's objects, or {oid: size} (git_theta.transfer.on_demand).
Fetch = Callable[[metadata.Metadata | Mapping[str, int]], None]
_Result = TypeVar("_Result")


def rebuild(
    store: ObjectStore,
    name: str,
    entry: ParamEntry,
    source: str = "",
    *,
    every_link: bool = False,
    reads: packs.MemberReads | None = None,
) -> Tensor:
    """Apply the entry's stored links in order and check the result's hash.

    The links after the first apply in place and unchecked (UpdateType.apply_in_place): only the result is hashed,
    and it must match the metadata. Should anything fail, the chain runs again with each link's own checks, so the
    error names the object at fault. `every_link` (fsck) always runs the checked chain: every link's base too.
    `reads`: the batch's pack members, read ahead (the checked run reads each link on its own).
    """
    value: Tensor | None = None
    if not every_link:
        try:
            value = _apply_links(store, entry, in_place=True, reads=reads)
            if _matches(value, entry):
                return value
        except ThetaError:
            pass  # the checked run below says what is wrong
    where = f"{source}: parameter {name!r}" if source else f"parameter {name!r}"
    value = None
    for link in entry.stored:
        try:
            value, _ = _apply_link(store, entry, link, value, in_place=False)
        except ThetaError as error:
            raise _damage(store, where, [link.object], error) from None
    assert value is not None  # metadata.parse guarantees at least one link
    if not _matches(value, entry):
        raise _damage(store, where, entry.objects(), StoreError("rebuilt tensor does not match its recorded hash"))
    return value


def _matches(value: Tensor, entry: ParamEntry) -> bool:
    return value.dtype == entry.dtype and value.shape == entry.shape and value.hash() == entry.hash


def _apply_links(store: ObjectStore, entry: ParamEntry, in_place: bool, reads: packs.MemberReads | None) -> Tensor:
    value: Tensor | None = None
    owned = False
    for link in entry.stored:
        value, owned = _apply_link(store, entry, link, value, in_place and owned, reads)
    assert value is not None  # metadata.parse guarantees at least one link
    return value


def _apply_link(
    store: ObjectStore,
    entry: ParamEntry,
    link: StoredLink,
    value: Tensor | None,
    in_place: bool,
    reads: packs.MemberReads | None = None,
) -> tuple[Tensor, bool]:
    """The value after one more link, and whether the next may overwrite it; `in_place`: this one may."""
    update = plugins.update(link.update)()
    data = packs.link_bytes(store, link) if reads is None else reads.link_bytes(link)
    bundle = objects.decode(data, objects.link_limit(math.prod(entry.shape)))
    if update.needs_base and value is None:
        raise StoreError(f"{link.update} update has no base to apply to")
    if in_place and update.needs_base and value is not None:
        value = update.apply_in_place(bundle, value)
    else:
        value = update.apply(bundle, value)
    # A read-only buffer (an object mapped from the store) is never written, whatever the update type says.
    return value, update.fresh_result and not memoryview(value.data).readonly


def corrupt_object(store: ObjectStore, oid: str) -> str:
    """What to say about an object whose bytes do not hash to its name, and how to get a good copy."""
    return (
        f"object {oid} is corrupt ({store.path(oid)}); run `git theta fetch --repair` to download a good copy, "
        "or `git theta fsck` to list all"
    )


def _damage(store: ObjectStore, where: str, oids: Sequence[str], error: ThetaError) -> StoreError:
    """The error for a value that could not be rebuilt: a corrupt object (re-hashed only now, on failure, so a
    good checkout hashes nothing twice) when one is, else the objects are whole and the metadata is at fault."""
    for oid in dict.fromkeys(oids):
        try:
            store.get(oid, verify=True)
        except StoreError:
            return StoreError(f"{where}: {corrupt_object(store, oid)}")
    named = ", ".join(dict.fromkeys(oids))
    return StoreError(
        f"{where}: object(s) {named}: {error} (their bytes match their sha256: what was committed is wrong)"
    )


class StoreSource:
    """Tensors and blobs for a format's `write`, rebuilt from the store."""

    def __init__(self, store: ObjectStore, params: Mapping[str, ParamEntry], source: str) -> None:
        self.store = store
        self.params = params
        self.source = source

    def tensors(self, names: Sequence[str]) -> Iterator[Tensor]:
        """The tensors in order, rebuilt ahead on the tensor pool: a big one per job, small ones a batch per job
        (one hand-off per batch, not per tensor), at most PREFETCH_BYTES ahead of the writer."""
        for tensors in self._ahead(names, self._rebuild_all):
            yield from tensors

    def tensor_data(self, names: Sequence[str]) -> Iterator[Buffer]:
        """The tensors' bytes in order, as `tensors` rebuilds them, each batch of small ones joined (on the pool)
        into one buffer: a format that writes tensors back to back (safetensors) then writes once per batch, and
        the writer's ~3 us per tensor of Python (a generator step, progress, a write call) is paid once per batch."""
        for pieces in self._ahead(names, self._joined):
            yield from pieces

    def _ahead(self, names: Sequence[str], job: Callable[[list[tuple[str, ParamEntry]]], _Result]) -> Iterator[_Result]:
        """job(batch) of each batch in order, computed on the tensor pool at most PREFETCH_BYTES (or
        MAX_QUEUED_BATCHES) ahead of the consumer."""
        queue: deque[tuple[int, parallel.Job[_Result]]] = deque()
        ahead = 0
        try:
            for batch, size in self._batches(names):
                while queue and (ahead + size > PREFETCH_BYTES or len(queue) >= MAX_QUEUED_BATCHES):
                    done, future = queue.popleft()
                    ahead -= done
                    yield future.result()
                queue.append((size, parallel.submit_tensor_job(partial(job, batch))))
                ahead += size
            while queue:
                yield queue.popleft()[1].result()
        finally:
            for _, future in queue:
                future.cancel()
            buffer_pool.clear()  # reused within a file; not kept idle for the process's next request

    def _joined(self, batch: list[tuple[str, ParamEntry]]) -> list[Buffer]:
        """The batch's tensors' bytes for the writer: joined into one buffer when they are small (JOIN_MEAN_BYTES)."""
        tensors = self._rebuild_all(batch)
        if len(tensors) == 1 or sum(tensor.nbytes for tensor in tensors) >= JOIN_MEAN_BYTES * len(tensors):
            return [tensor.data for tensor in tensors]
        return [b"".join(tensor.data for tensor in tensors)]

    def _batches(self, names: Sequence[str]) -> Iterator[tuple[list[tuple[str, ParamEntry]], int]]:
        batch: list[tuple[str, ParamEntry]] = []
        size = 0
        for name in names:
            entry = self._entry(name)
            nbytes = _nbytes(entry)
            if batch and (nbytes > packs.MEMBER_MAX_BYTES or size + nbytes > BATCH_BYTES or len(batch) >= BATCH_COUNT):
                yield batch, size
                batch, size = [], 0
            batch.append((name, entry))
            size += nbytes
        if batch:
            yield batch, size

    def _rebuild_all(self, batch: list[tuple[str, ParamEntry]]) -> list[Tensor]:
        reads = packs.MemberReads(self.store, (link for _, entry in batch for link in entry.stored))
        return rebuild_batch(self.store, batch, self.source, reads)

    def _entry(self, name: str) -> ParamEntry:
        try:
            return self.params[name]
        except KeyError:
            raise StoreError(f"{self.source}: the file needs parameter {name!r}, which the metadata lacks") from None

    def get_blob(self, ref: Mapping[str, Any]) -> bytes:
        return read_blob(self.store, ref["object"], self.source)


def rebuild_batch(
    store: ObjectStore, batch: list[tuple[str, ParamEntry]], source: str, reads: packs.MemberReads
) -> list[Tensor]:
    """`rebuild` of each (name, entry), all held at once (the caller bounds their bytes): small dense ones through
    the compiled decoder when it was built, the rest (and any it does not accept) one by one."""
    fast = _decode_dense_members(store, batch, reads) if densecodec.IMPLEMENTATION == "c" else [None] * len(batch)
    return [
        rebuild(store, name, entry, source, reads=reads) if value is None else value
        for value, (name, entry) in zip(fast, batch)
    ]


def _decode_dense_members(
    store: ObjectStore, batch: list[tuple[str, ParamEntry]], reads: packs.MemberReads
) -> list[Tensor | None]:
    """Per entry of the batch, its tensor decoded by the compiled decoder (git_theta/densecodec), or None: for an
    entry whose first link is dense in a pack member (or a whole object of at most MAX_WHOLE bytes: one member)
    whose member it accepts, and whose result hashes to the entry's hash. A chain's later links (a small tensor's
    xor, most often) apply in place to the decoded base, as `rebuild` applies them. The rest (chains on other bases,
    large objects, members it refuses or that do not match, links that cannot be read or applied) are left to
    `rebuild`, which gives today's result and today's errors.
    """
    indices: list[int] = []
    members: list[bytes | bytearray | memoryview] = []
    for index, (_, entry) in enumerate(batch):
        link = entry.stored[0]
        if link.update == "dense" and (link.length is not None or link.size <= MAX_WHOLE):
            data = reads.span_bytes(link)
            if data is None:  # not read ahead with others of its pack: read alone, as rebuild would
                try:
                    data = reads.link_bytes(link)
                except StoreError:
                    continue  # rebuild reads it again and names the parameter and the object
            indices.append(index)
            members.append(data)
    fast: list[Tensor | None] = [None] * len(batch)
    # per dtype and shape: what the hash starts with, and the size (each made once per batch, not per tensor)
    layouts: dict[tuple[str, tuple[int, ...]], tuple[bytes, int]] = {}
    for start in range(0, len(indices), FAST_GROUP):
        group = indices[start : start + FAST_GROUP]
        entries = [batch[index][1] for index in group]
        decoded = densecodec.decode_dense(
            members[start : start + FAST_GROUP], [e.dtype for e in entries], [e.shape for e in entries]
        )
        for index, entry, value in zip(group, entries, decoded):
            if value is None:
                continue
            key = (entry.dtype, entry.shape)
            layout = layouts.get(key)
            if layout is None:
                layout = layouts[key] = (hash_prefix(entry.dtype, entry.shape), _nbytes(entry))
            if len(entry.stored) > 1:
                fast[index] = _apply_later_links(
                    store, entry, Tensor.of_size(entry.dtype, entry.shape, value, layout[1]), reads
                )
            # dtype and shape are the entry's by construction (the header was compared with them): the hash is left
            elif hash_with_prefix(layout[0], value) == entry.hash:
                fast[index] = Tensor.of_size(entry.dtype, entry.shape, value, layout[1])
    return fast


def _apply_later_links(store: ObjectStore, entry: ParamEntry, base: Tensor, reads: packs.MemberReads) -> Tensor | None:
    """The chain's result from its decoded first link (a buffer of its own, so the next link may write into it), or
    None when a link fails or the result does not match the entry's hash."""
    value, owned = base, True
    try:
        for link in entry.stored[1:]:
            value, owned = _apply_link(store, entry, link, value, owned, reads)
    except ThetaError:
        return None
    return value if _matches(value, entry) else None


def read_blob(store: ObjectStore, oid: str, source: str) -> bytes:
    """A file-level blob (header, skeleton, structure), verified: nothing else checks these bytes.

    A tensor is checked by its hash after rebuilding; a blob only by its sha256, so a different valid blob under
    the same name would otherwise become a silently different file.
    """
    try:
        bundle = objects.decode(store.get(oid, verify=True), objects.MAX_BLOB_BYTES)
        if bundle.kind != "blob" or set(bundle.buffers) != {"bytes"}:
            raise StoreError(f"a {bundle.kind!r} object with buffers {sorted(bundle.buffers)}, not a file data blob")
    except ThetaError as error:
        raise StoreError(
            f"{source}: file data object {oid}: {error}; "
            f"get a good copy with `git theta fetch --repair`, then check out again"
        ) from None
    return bytes(bundle.buffers["bytes"].data)


def _nbytes(entry: ParamEntry) -> int:
    try:
        return _layout_bytes(entry.dtype, entry.shape)
    except TypeError:  # a shape that is no tuple (an entry a plugin built): not cached
        return dtypes.nbytes(entry.dtype, entry.shape)


# Cached: asked twice per tensor (progress total, batching), ~1 us each, and a model has few distinct layouts.
_layout_bytes = functools.lru_cache(maxsize=4096)(dtypes.nbytes)


def missing_objects(store: ObjectStore, meta: metadata.Metadata) -> list[str]:
    return sorted(oid for oid in meta.objects() if not store.has(oid))


def write_lfs_object(
    store: ObjectStore, path: str, pointer: lfs_pointer.Pointer, out: BinaryIO, fetch_missing: Fetch | None
) -> None:
    """The file a git-lfs pointer names (a revision from before the path switched to git-theta), sha256-verified."""
    with open_lfs_object(store, path, pointer, fetch_missing) as file:
        while chunk := file.read(COPY_CHUNK):
            out.write(chunk)


def open_lfs_object(
    store: ObjectStore, path: str, pointer: lfs_pointer.Pointer, fetch_missing: Fetch | None
) -> BinaryIO:
    """The object a git-lfs pointer names, fetched when missing, checked against the pointer and rewound.

    Read twice, to hash and then by the caller, so a corrupt object is refused before anyone gets a byte of it, in
    bounded memory whatever its size.
    """
    if not store.has(pointer.oid) and fetch_missing is not None:
        try:
            fetch_missing({pointer.oid: pointer.size})
        except ThetaError as error:
            first = str(error).splitlines()[0]  # one line: the download error lists every object on its own line
            raise StoreError(f"{path}: git-lfs object {pointer.oid} is not in the local store; {first}") from None
    if not store.has(pointer.oid):
        raise StoreError(
            f"{path}: git-lfs object {pointer.oid} is not in the local store; fetch it with `git lfs fetch` or `git "
            "theta fetch`"
        )
    file = store.path(pointer.oid).open("rb")
    digest = hashlib.sha256()
    while chunk := file.read(COPY_CHUNK):
        digest.update(chunk)
    if digest.hexdigest() != pointer.oid or file.tell() != pointer.size:
        file.close()
        raise StoreError(f"{path}: git-lfs object {pointer.oid}: {corrupt_object(store, pointer.oid)}")
    file.seek(0)
    return file


def smudge(store: ObjectStore, path: str, data: bytes, out: BinaryIO, fetch_missing: Fetch | None = None) -> None:
    """Write the checkpoint described by metadata `data` to `out`; other content passes through.

    `fetch_missing(meta)` (git_theta.transfer.on_demand) downloads objects the store lacks before writing. A
    git-lfs pointer (a revision from before the path switched to git-theta) gives the file it names.
    """
    if not metadata.looks_like_metadata(data):
        from git_theta import lfs_pointer

        pointer = lfs_pointer.parse(data)
        if pointer is None:
            out.write(data)
        else:
            write_lfs_object(store, path, pointer, out, fetch_missing)
        return
    write_checkpoint(store, path, metadata.parse(data, path), out, fetch_missing)


def smudge_stream(
    store: ObjectStore, path: str, content: IO[bytes], out: BinaryIO, fetch_missing: Fetch | None = None
) -> None:
    """`smudge` of the bytes read from `content`, whose metadata text is dropped once parsed: the caller of
    `smudge` holds its `data` until the file is written (27 MB at 100,000 tensors, a sixth of the filter's peak)."""
    data = content.read()
    if not metadata.looks_like_metadata(data):
        smudge(store, path, data, out, fetch_missing)
        return
    meta = metadata.parse(data, path)
    del data
    write_checkpoint(store, path, meta, out, fetch_missing)


def write_checkpoint(
    store: ObjectStore, path: str, meta: metadata.Metadata, out: BinaryIO, fetch_missing: Fetch | None = None
) -> None:
    """Write the checkpoint `meta` describes (the file at `path`) to `out`; see `smudge`."""
    missing = missing_objects(store, meta)
    why = ""
    if missing and fetch_missing is not None:
        try:
            fetch_missing(meta)
        except ThetaError as error:
            why = f" (downloading them failed: {error})"  # still say which file and objects
        missing = missing_objects(store, meta)
    if missing:
        # One set, built once: a set of every missing id per parameter made this quadratic (hours at 1M entries).
        absent = set(missing)
        name = next((name for name, entry in meta.params.items() if not absent.isdisjoint(entry.objects())), None)
        raise StoreError(
            f"{path}: {len(missing)} object(s) missing from the store, e.g. {missing[0]}"
            + (f" (parameter {name!r})" if name is not None else "")
            + why
            + "; fetch them from a remote or run `git theta fsck`"
        )
    try:
        checkpoint = plugins.checkpoint(meta.format)()
    except ThetaError as error:
        raise StoreError(f"{path}: {error}") from None
    with progress.Progress(f"git-theta: writing {path}", sum(_nbytes(e) for e in meta.params.values())) as bar:
        try:
            checkpoint.write(
                meta.file, meta.params, progress.counting_source(StoreSource(store, meta.params, path), bar), out
            )
        except ThetaError as error:
            if str(error).startswith(f"{path}: "):
                raise  # the tensor source already named the file
            raise type(error)(f"{path}: {error}") from None  # a format's own complaint about the committed file section
