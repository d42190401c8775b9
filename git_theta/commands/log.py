"""git theta log: the commits that changed a checkpoint, or one parameter group of it.

  git theta log [PATH...]               every commit that changed the checkpoint(s)
  git theta log PATH --param NAME       only commits that changed group NAME
  git theta log -v PATH                 also list each changed group
  git theta log model.safetensors.index.json
                                        a sharded model as one: commits that changed any of its
                                        shards, tensors that moved between shards counted apart

Each change shows its update type and the bytes it stored. Merge commits are
compared with their first parent. Read from metadata alone (no tensor loaded).
"""

from __future__ import annotations

import argparse
import itertools
import json
import posixpath
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from git_theta import git, metadata, sharded, snapshots
from git_theta.display import changes, tables
from git_theta.display.changes import GroupChange
from git_theta.errors import ThetaError
from git_theta.metadata import Metadata
from git_theta.repo import Repo

NULL_OID = "0" * 40
FORMAT = "%x01%H%x00%ad%x00%an%x00%s"
SHORT = 10  # --raw needs --no-abbrev, which makes %h full length


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("log", help="history of a checkpoint or a parameter group", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", metavar="PATH", help="checkpoints (default: every tracked checkpoint)")
    parser.add_argument("--param", metavar="NAME", help="only commits that changed this parameter group")
    parser.add_argument("-v", "--verbose", action="store_true", help="list each changed group under its commit")
    parser.add_argument("-n", "--max-count", type=int, metavar="N", help="at most N commits")
    parser.add_argument("--rev", default="HEAD", help="start from this revision (default HEAD)")
    parser.add_argument("--json", action="store_true", help="print one JSON document for scripts")
    parser.set_defaults(run=run)


@dataclass
class FileChange:
    path: str
    changes: list[GroupChange]
    moves: list[sharded.Move] = field(default_factory=list)  # a sharded model (path is its index)


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
        "log", f"--format={FORMAT}", "--date=short", "--raw", "-z", "--no-abbrev", "--no-renames",
        "--diff-merges=first-parent", rev, "--", *(paths or ["."]), cwd=repo.worktree,
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


def history(repo: Repo, rev: str, paths: list[str], param: str | None, limit: int | None = None) -> list[Commit]:
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
            blob_ids = {oid for _, entries in page for old, new, path in entries for oid in (old, new) if tracked[path] and oid != NULL_OID}
            blobs = git.cat_file_batch(sorted(blob_ids), cwd=repo.worktree)
            for header, entries in page:
                files = []
                for old, new, path in entries:
                    if not tracked[path]:
                        continue
                    found = changes.compare(_parse(blobs, old, path), _parse(blobs, new, path))
                    if param is not None:
                        found = [c for c in found if c.name == param]
                    if found:
                        files.append(FileChange(path, found))
                if files:
                    commits.append(Commit(header[0], header[0][:SHORT], header[1], header[2], header[3], files))
                    if len(commits) == limit:
                        return commits
    finally:
        raw.close()  # ends `git log` (see _raw_log) when the limit stopped us early
    return commits


def model_history(repo: Repo, rev: str, index: str, param: str | None, limit: int | None = None) -> list[Commit]:
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
            found, moves = sharded.compare(before, sharded.model_at(repo, header[0], index))
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


def by_update(group_changes: list[GroupChange]) -> dict[str, int]:
    """update type -> bytes stored by the changes of that type."""
    found: dict[str, int] = {}
    for change in group_changes:
        if change.new is not None:
            found[change.update] = found.get(change.update, 0) + change.stored_size
    return dict(sorted(found.items()))


def render(commits: list[Commit], param: str | None, verbose: bool) -> str:
    lines = []
    for commit in commits:
        lines.append(f"{commit.short}  {commit.date}  {commit.author}  {commit.subject}")
        for file in commit.files:
            rows = [_group_row(c) for c in file.changes] + [_moved_row(m) for m in file.moves]
            if param is not None:
                lines += tables.table(rows, right=(5,), indent=f"    {file.path}  ")
                continue
            stored = ", ".join(f"{update} {changes.human_size(size)}" for update, size in by_update(file.changes).items())
            moved = f"; {sharded.moves_text(file.moves)}" if file.moves else ""
            counts = changes.summary_counts(file.changes)
            counted = f"{changes.groups_text(len(file.changes))} changed ({counts}){moved}"
            lines.append(f"    {file.path}: {counted}; stored {stored or 'nothing'}")
            if verbose:
                lines += tables.table(rows, right=(5,), indent="      ")
    return "\n".join(lines) + ("\n" if lines else "")


def _moved_row(move: sharded.Move) -> list[str]:
    return [move.text(), move.name, move.entry.dtype, changes.shape_text(move.entry.shape), "", ""]


def _group_row(change: GroupChange) -> list[str]:
    entry = change.new if change.new is not None else change.old
    assert entry is not None
    layout = f" ({change.layout_change})" if change.layout_change else ""
    stored = changes.human_size(change.stored_size) if change.new is not None else ""
    return [change.status + layout, change.name, entry.dtype, changes.shape_text(entry.shape), change.update, stored]


def _move_json(move: sharded.Move) -> dict[str, str]:
    return {"name": move.name, "from": move.old_shard, "to": move.new_shard}


def to_json(commits: list[Commit]) -> list[dict[str, Any]]:
    return [
        {
            "commit": c.id, "date": c.date, "author": c.author, "subject": c.subject,
            "files": [
                {"path": f.path, "groups": [
                    {"name": g.name, "status": g.status, "layout_change": g.layout_change or None, "update": g.update or None,
                     "stored_bytes": g.stored_size, "old": changes.entry_json(g.old), "new": changes.entry_json(g.new)}
                    for g in f.changes
                ], **({"moves": [_move_json(m) for m in f.moves]} if f.moves else {})}
                for f in c.files
            ],
        }
        for c in commits
    ]


def run(args: argparse.Namespace) -> int:
    root = git.toplevel()
    repo = Repo.discover(root)
    if args.max_count is not None and args.max_count < 0:
        raise ThetaError(f"-n/--max-count must be 0 or more, not {args.max_count}")
    if git.commit_id(args.rev, root) is None:
        raise ThetaError(f"{args.rev}: not a revision in this repository (no commits yet?)")
    paths = snapshots.repo_paths(root, args.paths)
    indexes = [path for path in paths if sharded.is_index(path)]
    if indexes and len(paths) > 1:
        raise ThetaError("give a sharded model's index alone: git theta log PATH.index.json")
    if indexes:
        commits = model_history(repo, args.rev, indexes[0], args.param, args.max_count)
    else:
        commits = history(repo, args.rev, paths, args.param, args.max_count)
    if args.json:
        json.dump(to_json(commits), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(commits, args.param, args.verbose))
    return 0
