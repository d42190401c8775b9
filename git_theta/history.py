"""The history of tracked checkpoints: the commits that changed them (or one parameter group), from metadata alone.

Read from one `git log --raw -z` as git writes it, page by page; each page costs one `git check-attr` for paths
not seen yet and one `git cat-file --batch` for its metadata blobs. Merge commits are compared with their first
parent. No tensor is loaded. `git theta log` prints what this returns (display/log_view.py).
"""

from __future__ import annotations

import itertools
import posixpath
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field

from git_theta import git, metadata, sharded, snapshots
from git_theta.display import changes
from git_theta.display.changes import GroupChange
from git_theta.metadata import Metadata
from git_theta.repo import Repo

NULL_OID = "0" * 40
FORMAT = "%x01%H%x00%ad%x00%an%x00%s"
SHORT = 10  # --raw needs --no-abbrev, which makes %h full length


@dataclass
class FileChange:
    path: str
    changes: list[GroupChange]
    moves: list[sharded.Move] = field(default_factory=list)  # a sharded model (path is its index)
    # Only the file's own data changed (a safetensors header's __metadata__), no parameter group
    file_changed: bool = False


@dataclass
class Commit:
    id: str
    short: str
    date: str
    author: str
    subject: str
    files: list[FileChange]


RawCommit = tuple[list[str], list[tuple[str, str, str]]]
FIRST_PAGE = 16  # commits read before the first lookups; pages double up to LAST_PAGE
LAST_PAGE = 1024


def _raw_log(repo: Repo, rev: str, paths: list[str]) -> Generator[RawCommit, None, None]:
    """(header fields, [(old blob, new blob, path)]) per commit, newest first, read from one
    `git log --raw -z` as git writes it (so `-n 5` on a long history stops early)."""
    chunks = git.stream(
        "log",
        f"--format={FORMAT}",
        "--date=short",
        "--raw",
        "-z",
        "--no-abbrev",
        "--no-renames",
        "--diff-merges=first-parent",
        rev,
        "--",
        *(paths or ["."]),
        cwd=repo.worktree,
    )
    pending: list[bytes] = []  # pieces of the record not yet ended: one commit can span many chunks
    try:
        for chunk in chunks:
            *ends, rest = chunk.split(b"\x01")
            for end in ends:
                record = b"".join([*pending, end])
                pending = []
                if record:
                    yield _parse_record(record)
            pending.append(rest)
    finally:
        chunks.close()  # ends `git log` when the caller stopped early
    if record := b"".join(pending):
        yield _parse_record(record)


def _parse_record(record: bytes) -> RawCommit:
    fields = record.decode("utf-8", errors="surrogateescape").split("\x00")
    header, rest = fields[:4], [f.strip("\n") for f in fields[4:]]
    entries = []
    for index, item in enumerate(rest[:-1]):
        if item.startswith(":"):  # ":oldmode newmode oldblob newblob status", then the path
            _, _, old, new, _ = item[1:].split(" ")
            entries.append((old, new, rest[index + 1]))
    return header, entries


def _pages(raw: Iterator[RawCommit]) -> Iterator[list[RawCommit]]:
    size = FIRST_PAGE
    while page := list(itertools.islice(raw, size)):
        yield page
        size = min(size * 2, LAST_PAGE)


def history(
    *, repo: Repo, rev: str, paths: list[str], param: str | None = None, limit: int | None = None
) -> list[Commit]:
    """The commits that changed tracked checkpoints under `paths` (or group `param`), newest first, at most `limit`.

    Read page by page: each page costs one `git check-attr` for paths not seen
    yet and one `git cat-file --batch` for its metadata blobs.
    """
    commits: list[Commit] = []
    if limit == 0:
        return commits
    tracked: dict[str, bool] = {}
    raw = _raw_log(repo, rev, paths)
    try:
        for page in _pages(raw):
            new_paths = sorted({path for _, entries in page for _, _, path in entries} - tracked.keys())
            attrs = git.attr_for_paths(snapshots.FILTER_ATTRIBUTE, new_paths, cwd=repo.worktree)
            tracked.update((path, attrs.get(path) == snapshots.FILTER_NAME) for path in new_paths)
            blob_ids = {
                oid
                for _, entries in page
                for old, new, path in entries
                for oid in (old, new)
                if tracked[path] and oid != NULL_OID
            }
            blobs = git.cat_file_batch(sorted(blob_ids), cwd=repo.worktree)
            for header, entries in page:
                files = []
                for old, new, path in entries:
                    if not tracked[path]:
                        continue
                    before, after = _parse(blobs, old, path), _parse(blobs, new, path)
                    found = changes.compare(before, after)
                    if param is not None:
                        found = [c for c in found if c.name == param]
                    # Without --param, a commit that changed only file-level data (a safetensors __metadata__) is listed
                    # too; when groups changed, the file data (headers, offsets) changes with them, so it is not noted.
                    file_changed = (
                        not found
                        and param is None
                        and before is not None
                        and after is not None
                        and before.file != after.file
                    )
                    if found or file_changed:
                        files.append(FileChange(path, found, file_changed=file_changed))
                if files:
                    commits.append(Commit(header[0], header[0][:SHORT], header[1], header[2], header[3], files))
                    if len(commits) == limit:
                        return commits
    finally:
        raw.close()  # ends `git log` (see _raw_log) when the limit stopped us early
    return commits


def model_history(
    *, repo: Repo, rev: str, index: str, param: str | None = None, limit: int | None = None
) -> list[Commit]:
    """The commits that changed the sharded model of `index` (or its group `param`), newest first.

    A commit counts when the model it holds differs from its first parent's: groups changed, or tensors moved
    between shards. Candidates are the commits that touched the index or a .safetensors file beside it.
    """
    commits: list[Commit] = []
    folder = posixpath.dirname(index)
    raw = _raw_log(repo, rev, [index, posixpath.join(folder, "*.safetensors")])
    try:
        for header, _ in raw:
            if limit is not None and len(commits) >= limit:
                break
            parent = git.commit_id(f"{header[0]}^1", repo.worktree)
            before = sharded.model_at(repo, parent, index) if parent else None
            found, moves = changes.compare_models(before, sharded.model_at(repo, header[0], index))
            if param is not None:
                found, moves = [c for c in found if c.name == param], [m for m in moves if m.name == param]
            if found or moves:
                files = [FileChange(index, found, moves)]
                commits.append(Commit(header[0], header[0][:SHORT], header[1], header[2], header[3], files))
    finally:
        raw.close()
    return commits


def _parse(blobs: dict[str, bytes], oid: str, path: str) -> Metadata | None:
    data = blobs.get(oid)
    if data is None or not metadata.looks_like_metadata(data):
        return None
    return metadata.parse(data, f"{path} (blob {oid[:12]})")
