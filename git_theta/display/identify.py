"""Which committed metadata a checkpoint file was rebuilt from.

Git smudges every blob it hands to a textconv program (diff.c prepares the
temp file in working-tree form), so `git theta textconv` mostly receives a
rebuilt checkpoint, not the metadata it came from. Hashing the file's tensors
(BLAKE3, no compression) and finding the metadata of this path, in the index
or in history, whose hashes and file section match gives back the exact
metadata, with its stored sizes and update chains, for the cost of one read.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from git_theta import files, git, metadata, snapshots
from git_theta.errors import MetadataError
from git_theta.metadata import Metadata
from git_theta.repo import Repo
from git_theta.tensor import Tensor

NULL_OID = "0" * 40
BATCH = 32  # history blobs read per `git cat-file --batch`, newest first


class HashingSink:
    """A ParamSink that only hashes tensors; blobs get the ids the real clean would give them (nothing is written)."""

    def __init__(self, blobs: Any) -> None:
        self.blobs = blobs
        self.hashes: dict[str, str] = {}

    def add(self, name: str, tensor: Tensor) -> None:
        self.hashes[name] = tensor.hash()

    def put_blob(self, data: bytes) -> dict[str, Any]:
        return self.blobs.put_blob(data)  # type: ignore[no-any-return]


def fingerprint(repo: Repo, path: str, file: Path, dry_store: Any) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(format name, file section, name -> hash) of a checkpoint file, read once."""
    from git_theta import clean
    from git_theta.checkpoints.base import SNIFF_BYTES

    with files.open_regular(file) as stream:
        head = stream.read(SNIFF_BYTES)
        checkpoint = clean.choose_format(repo, path, head)
        stream.seek(0)
        sink = HashingSink(clean.StoringSink(dry_store, []))
        section = checkpoint.read(io.BufferedReader(stream, 1 << 20), path, sink)
    return checkpoint.name, section, sink.hashes


def find(repo: Repo, paths: list[str], format: str, section: dict[str, Any], hashes: dict[str, str]) -> Metadata | None:
    """The metadata, among the index and the history of `paths`, that describes exactly this file."""
    needles = [digest.encode() for digest in hashes.values()]
    for data in _candidates(repo, paths):
        if not metadata.looks_like_metadata(data) or not all(n in data for n in needles):
            continue  # a cheap byte search rules out almost every other version
        try:
            meta = metadata.parse(data)
        except MetadataError:
            continue
        if meta.format == format and meta.file == section and {n: e.hash for n, e in meta.params.items()} == hashes:
            return meta
    return None


def _candidates(repo: Repo, paths: list[str]) -> Iterator[bytes]:
    """Metadata blobs of `paths`: staged first, then every version in history, newest first."""
    staged = [oid for oid, path in snapshots.index_blobs(repo) if path in paths]
    yield from _read(repo, staged)
    # check=False: a repository without commits has no history to search
    listing = git.run(
        "log",
        "--all",
        "--format=",
        "--raw",
        "--no-abbrev",
        "--no-renames",
        "--",
        *paths,
        cwd=repo.worktree,
        check=False,
    ).stdout.decode()
    seen = set(staged)
    batch: list[str] = []
    for line in listing.splitlines():
        fields = line.split()
        if not line.startswith(":") or len(fields) < 5:
            continue
        for oid in (fields[3], fields[2]):
            if oid != NULL_OID and oid not in seen:
                seen.add(oid)
                batch.append(oid)
        if len(batch) >= BATCH:
            yield from _read(repo, batch)
            batch = []
    yield from _read(repo, batch)


def _read(repo: Repo, oids: list[str]) -> Iterator[bytes]:
    contents = git.cat_file_batch(oids, cwd=repo.worktree)
    for oid in oids:
        if oid in contents:
            yield contents[oid]


def tracked_paths_named(repo: Repo, basename: str) -> list[str]:
    """Tracked checkpoint paths (index or history) whose file name is `basename`."""
    pattern = f":(glob)**/{_glob_escape(basename)}"
    # -z: without it git quotes names with non-ASCII bytes or quotes ("m\303\266del.pt")
    listing = git.run(
        "log", "--all", "--format=", "--name-only", "-z", "--no-renames", "--", pattern, cwd=repo.worktree, check=False
    ).stdout
    names = {name.strip(b"\n").decode("utf-8", errors="surrogateescape") for name in listing.split(b"\0")} - {""}
    names.update(path for _, path in snapshots.index_blobs(repo) if path.rsplit("/", 1)[-1] == basename)
    attrs = git.attr_for_paths(snapshots.FILTER_ATTRIBUTE, sorted(names), cwd=repo.worktree)
    return sorted(path for path in names if attrs.get(path) == snapshots.FILTER_NAME)


def _glob_escape(name: str) -> str:
    """`name` as a literal in a git glob pathspec."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in name)
