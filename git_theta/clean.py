"""Clean: a checkpoint file in, metadata out; new tensors go to the object store."""

from __future__ import annotations

import io
import shlex
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import IO, Any, BinaryIO

from git_theta import git, metadata, objects, parallel, plugins, progress
from git_theta.checkpoints.base import SNIFF_BYTES, CheckpointFormat
from git_theta.errors import OUT_OF_MEMORY, CheckpointError, MetadataError, ThetaError
from git_theta.metadata import Metadata, ParamEntry, StoredLink
from git_theta.repo import Repo
from git_theta.store import ObjectStore
from git_theta.tensor import Tensor
from git_theta.update_engine import auto, pending

# Tensors read but not yet stored; bounds memory while hashing/compressing
# runs in the background of reading.
IN_FLIGHT_BYTES = 128 << 20
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
    """Hashes each tensor, reuses what an earlier version already stored, stores the rest."""

    def __init__(
        self,
        store: ObjectStore,
        prior: list[Metadata],
        side_loaded: dict[str, tuple[str, tuple[StoredLink, ...]]] | None = None,
    ) -> None:
        self.store = store
        self.prior = prior
        # name -> (hash, chain) left by `git theta add --update-type` (see git_theta.update_engine.pending)
        self.side_loaded = side_loaded or {}
        self.by_hash: dict[str, ParamEntry] = {}
        for meta in prior:
            for entry in meta.params.values():
                self.by_hash.setdefault(entry.hash, entry)
        self.pending: deque[tuple[str, int, Future[ParamEntry]]] = deque()
        self.pending_names: set[str] = set()
        self.done: dict[str, ParamEntry] = {}
        self.in_flight = 0

    def add(self, name: str, tensor: Tensor) -> None:
        if name in self.done or name in self.pending_names:
            raise CheckpointError(f"parameter {name!r} appears twice")
        while self.pending and self.in_flight + tensor.nbytes > IN_FLIGHT_BYTES:
            self._collect_oldest()
        self.pending.append((name, tensor.nbytes, parallel.submit_tensor_job(lambda: self._store(name, tensor))))
        self.pending_names.add(name)
        self.in_flight += tensor.nbytes

    def _collect_oldest(self) -> None:
        name, size, future = self.pending.popleft()
        self.pending_names.discard(name)
        self.done[name] = future.result()
        self.in_flight -= size

    def _store(self, name: str, tensor: Tensor) -> ParamEntry:
        """Reuse a known entry, else take a side-loaded chain, else the smallest of dense/sparse/xor."""
        digest = tensor.hash()
        known = self.by_hash.get(digest)
        if known is not None and all(self.store.has(oid) for oid in known.objects()):
            return known
        side_hash, side_chain = self.side_loaded.get(name, ("", ()))
        if side_hash == digest and all(self.store.has(link.object) for link in side_chain):
            return ParamEntry(tensor.dtype, tensor.shape, digest, side_chain)
        prior = auto.prior_entry(self.prior, name, tensor, self.store)
        entry = auto.store_changed(self.store, name, tensor, digest, prior)
        # A later group with the same bytes (tied weights, zero biases) reuses this entry.
        self.by_hash.setdefault(digest, entry)
        return entry

    def put_blob(self, data: bytes) -> dict[str, Any]:
        oid, size = self.store.put(objects.encode_blob(data))
        return {"object": oid, "size": size}

    def finish(self) -> dict[str, ParamEntry]:
        while self.pending:
            self._collect_oldest()
        return self.done

    def abandon(self) -> None:
        for _, _, future in self.pending:
            future.cancel()
        for _, _, future in self.pending:
            if not future.cancelled():
                future.exception()


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
    if prior is None:
        sink = StoringSink(target, repo.prior_metadata(path), pending.load(repo.common_dir, path))
    else:
        sink = StoringSink(target, prior)
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
    return _checked_metadata(Metadata(checkpoint.name, file_section, params), path)


def _checked_metadata(meta: Metadata, path: str) -> bytes:
    """The serialized metadata, once the parser checkout uses accepts it: clean must never commit
    metadata that smudge would refuse (a reader's slip, or a plugin's, is caught here, at `git add`)."""
    data = meta.serialize()
    try:
        metadata.parse(data, "its metadata")
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
