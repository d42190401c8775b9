"""Tracked checkpoints that went into git raw, and how to fix them.

`git add` of a tracked path with no filter.theta.* configured (e.g. `git theta track` before `git theta
install`, or git-theta in another environment) stores the whole checkpoint in git's object database. Nothing
fails, and once the filter is set up `git status` is clean, so `git theta install` and `git theta fsck` look
for it: a tracked path whose staged or HEAD blob is not git-theta metadata (which always starts with
`{"version":"git-theta/`). Cheap on purpose: modes, ids and sizes come from `git ls-files -s`, `git ls-tree`
and `git cat-file --batch-check`; of each blob only the first bytes are read, and none of one larger than
metadata can be.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from git_theta import git, metadata

# Only regular files hold checkpoints (symlinks are blobs too, and submodules are commits).
FILE_MODES = (b"100644", b"100755")
STAGED = "staged"
COMMITTED = "committed (HEAD)"


def problems(toplevel: Path) -> list[str]:
    """One message per raw version found, with the exact commands that fix it."""
    return [
        f"{path}: the {' and '.join(where)} version is the raw checkpoint ({size} bytes stored whole in git), not "
        f"git-theta metadata (it was added before git-theta's filter was set up); fix: `git add --renormalize {path}`, "
        f"then `git commit`"
        for path, where, size in raw_versions(toplevel)
    ]


def raw_versions(toplevel: Path) -> list[tuple[str, list[str], int]]:
    """(path, which versions, blob size) of every tracked path whose staged or HEAD blob is not metadata."""
    versions: dict[tuple[str, str], list[str]] = {}  # (path, blob id) -> where it is
    for where, blobs in ((COMMITTED, _head_blobs(toplevel)), (STAGED, _index_blobs(toplevel))):
        for oid, path in blobs:
            versions.setdefault((path, oid), []).append(where)
    if not versions:
        return []
    attrs = git.attr_for_paths("filter", sorted({path for path, _ in versions}), cwd=toplevel)
    tracked = {key: places for key, places in versions.items() if attrs.get(key[0]) == "theta"}
    sizes = _sizes(sorted({oid for _, oid in tracked}), toplevel)
    found = []
    for (path, oid), places in sorted(tracked.items()):
        size = sizes.get(oid, 0)
        if size and not _is_metadata(oid, size, toplevel):  # an empty file holds nothing to lose
            found.append((path, places, size))
    return found


def _index_blobs(toplevel: Path) -> list[tuple[str, str]]:
    """(blob id, path) of every stage-0 regular file in the index (`<mode> <id> <stage>\\t<path>`)."""
    found = []
    for record in git.run("ls-files", "-s", "-z", cwd=toplevel).stdout.split(b"\0"):
        if record:
            info, path = record.split(b"\t", 1)
            mode, oid, stage = info.split()
            if mode in FILE_MODES and stage == b"0":
                found.append((oid.decode(), path.decode("utf-8", errors="surrogateescape")))
    return found


def _head_blobs(toplevel: Path) -> list[tuple[str, str]]:
    """(blob id, path) of every regular file at HEAD (`<mode> <type> <id>\\t<path>`); none before the first commit."""
    if git.run("rev-parse", "-q", "--verify", "HEAD^{commit}", cwd=toplevel, check=False).returncode != 0:
        return []
    found = []
    for record in git.run("ls-tree", "-r", "-z", "--full-tree", "HEAD", cwd=toplevel).stdout.split(b"\0"):
        if record:
            info, path = record.split(b"\t", 1)
            mode, kind, oid = info.split()
            if mode in FILE_MODES and kind == b"blob":
                found.append((oid.decode(), path.decode("utf-8", errors="surrogateescape")))
    return found


def _sizes(object_ids: list[str], toplevel: Path) -> dict[str, int]:
    if not object_ids:
        return {}
    out = git.run(
        "cat-file", "--batch-check", cwd=toplevel, input="".join(f"{oid}\n" for oid in object_ids).encode()
    ).stdout
    sizes = {}
    for line in out.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "blob":
            sizes[parts[0]] = int(parts[2])
    return sizes


def _is_metadata(oid: str, size: int, toplevel: Path) -> bool:
    if size > metadata.MAX_BYTES:
        return False
    head = b""
    with contextlib.closing(
        git.stream("cat-file", "blob", oid, cwd=toplevel, chunk_bytes=len(metadata.PREFIX))
    ) as chunks:
        for chunk in chunks:
            head += chunk
            if len(head) >= len(metadata.PREFIX):
                break  # the rest of the blob is never read: closing the stream ends git
    return metadata.looks_like_metadata(head)
