"""The metadata of tracked checkpoints at a revision, in the index, or in the working tree.

A side is named by a string: a revision ("HEAD~1", a branch, a commit id),
INDEX (":") or WORKTREE ("."). Paths are relative to the repository's top
level. Reading a revision or the index reads metadata blobs only; the working
tree side cleans files that changed since they were staged (the same work
`git diff` makes the clean filter do), without touching the index.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from git_theta import files, git, lfs_pointer, metadata
from git_theta.errors import ThetaError
from git_theta.metadata import Metadata
from git_theta.repo import Repo

INDEX = ":"
WORKTREE = "."
FILTER_ATTRIBUTE = "filter"
FILTER_NAME = "theta"


def label(side: str) -> str:
    return {INDEX: "index", WORKTREE: "working tree"}.get(side, side)


def repo_paths(root: Path, paths: Iterable[str], cwd: Path | None = None) -> list[str]:
    """User paths (relative to `cwd`) as paths from the top level, '/'-separated."""
    here = (cwd or Path.cwd()).resolve()
    found = []
    for path in paths:
        relative = os.path.relpath((here / path).resolve(), root.resolve())
        if relative.startswith(".."):
            raise ThetaError(f"{path}: outside the repository {root}")
        found.append("" if relative == "." else relative.replace(os.sep, "/"))
    return found


def selected(path: str, wanted: list[str] | None) -> bool:
    """True when `path` is one of `wanted` or lies under one of them (no filter: everything)."""
    if not wanted:
        return True
    return any(w == "" or path == w or path.startswith(w.rstrip("/") + "/") for w in wanted)


def _tracked(repo: Repo, blobs: list[tuple[str, str]], wanted: list[str] | None) -> dict[str, str]:
    """path -> blob id for the blobs whose path has filter=theta."""
    candidates = [(oid, path) for oid, path in blobs if selected(path, wanted)]
    attrs = git.attr_for_paths(FILTER_ATTRIBUTE, sorted({path for _, path in candidates}), cwd=repo.worktree)
    return {path: oid for oid, path in candidates if attrs.get(path) == FILTER_NAME}


def index_blobs(repo: Repo) -> list[tuple[str, str]]:
    found = []
    for record in git.run("ls-files", "-s", "-z", cwd=repo.worktree).stdout.split(b"\0"):
        if record:
            info, path = record.split(b"\t", 1)
            stage = info.split()[2]
            if stage == b"0":  # unmerged entries have no single version to show
                found.append((info.split()[1].decode(), path.decode("utf-8", errors="surrogateescape")))
    return found


def _metadata_blobs(repo: Repo, by_path: dict[str, str], side: str) -> dict[str, bytes]:
    """path -> metadata text of each blob; a git-lfs pointer (an LFS-era revision of a switched path) is read
    through its object, so it compares like any git-theta version."""
    contents = git.cat_file_batch(sorted(set(by_path.values())), cwd=repo.worktree)
    found = {}
    for path, oid in sorted(by_path.items()):
        data = contents.get(oid)
        if data is None:
            continue
        if metadata.looks_like_metadata(data):
            found[path] = data
            continue
        pointer = lfs_pointer.parse(data)
        if pointer is not None:
            found[path] = lfs_metadata(repo, path, pointer, source(side, path)).serialize()
    return found


def at(repo: Repo, side: str, wanted: list[str] | None = None) -> dict[str, Metadata]:
    """path -> metadata of every tracked checkpoint on `side` (filtered by `wanted` paths)."""
    return {path: metadata.parse(data, source(side, path)) for path, data in blobs_at(repo, side, wanted).items()}


def source(side: str, path: str) -> str:
    """How errors name a path's metadata on a side."""
    return f"{label(side)}:{path}"


def blobs_at(repo: Repo, side: str, wanted: list[str] | None = None) -> dict[str, bytes]:
    """path -> metadata text, unparsed, of every tracked checkpoint on `side` (for views that compare lines)."""
    if side == WORKTREE:
        return _worktree(repo, wanted)
    if side == INDEX:
        blobs = index_blobs(repo)
    else:
        commit = git.commit_id(side, repo.worktree)
        if commit is None:
            raise ThetaError(f"{side}: not a revision in this repository")
        blobs = git.ls_tree_blobs(commit, cwd=repo.worktree)
    return _metadata_blobs(repo, _tracked(repo, blobs, wanted), side)


def _worktree(repo: Repo, wanted: list[str] | None) -> dict[str, bytes]:
    """The index's metadata, with files that changed since staging cleaned afresh."""
    found = blobs_at(repo, INDEX, wanted)
    listing = git.run("diff-files", "--name-only", "-z", cwd=repo.worktree).stdout.split(b"\0")
    stale = {p.decode("utf-8", errors="surrogateescape") for p in listing if p}
    for path in sorted(stale & found.keys()):
        file = repo.worktree / path
        if not file.is_file():
            del found[path]  # deleted in the working tree
            continue
        found[path] = clean_file(repo, path).serialize()
    return found


def clean_file(repo: Repo, path: str) -> Metadata:
    """Metadata of the working tree file at `path` (stores new objects, leaves the index alone)."""
    from git_theta import clean  # the clean path imports the format plugins; only load it when needed

    with files.open_regular(repo.worktree / path) as stream:
        return metadata.parse(clean.clean(repo, path, stream), f"{label(WORKTREE)}:{path}")


def blob_metadata(repo: Repo, side: str, path: str) -> Metadata | None:
    """Metadata of one path on one side, None when the path is absent or not metadata there."""
    if side == WORKTREE:
        return at(repo, WORKTREE, [path]).get(path)
    spec = f":{path}" if side == INDEX else f"{side}:{path}"
    data = git.blob(spec, cwd=repo.worktree)
    if data is None:
        return None
    if not metadata.looks_like_metadata(data):
        pointer = lfs_pointer.parse(data)
        return None if pointer is None else lfs_metadata(repo, path, pointer, spec)
    return metadata.parse(data, spec)


def lfs_metadata(
    repo: Repo, path: str, pointer: lfs_pointer.Pointer, spec: str, *, into: Repo | None = None
) -> Metadata:
    """Metadata of a revision committed through git-lfs (before the path switched to git-theta), from its object.

    The object (fetched from `repo`'s remote when missing; `spec` names the revision and path in errors) is
    cleaned like a working tree file: its groups are stored in the shared store, as `git diff` stores a changed
    file's, so that show, load and diff read it like any other version. `into` (a repository over a store that
    writes nothing, display/view.py) computes the metadata without storing.
    """
    from git_theta import clean, smudge
    from git_theta.transfer import on_demand

    with smudge.open_lfs_object(repo.store, spec, pointer, on_demand.fetcher(repo)) as file:
        return metadata.parse(clean.clean(into or repo, path, file), spec)


def index_checkpoints(*, root: Path) -> Iterator[tuple[str, Metadata | None]]:
    """Each path tracked with filter=theta, with its staged metadata (None when not stored by git-theta)."""
    for path in git.ls_files_with_attr("filter", "theta", cwd=root):
        data = git.blob(f":{path}", cwd=root) or b""
        yield path, metadata.parse(data, f":{path}") if metadata.looks_like_metadata(data) else None
