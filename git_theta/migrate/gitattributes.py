"""The root .gitattributes of a migrated commit: git-lfs lines switched to git-theta's and back."""

from __future__ import annotations

from git_theta import attributes, git
from git_theta.migrate import MigrateError
from git_theta.repo import Repo

LFS_ATTRIBUTES = "filter=lfs diff=lfs merge=lfs -text"


# git itself ignores attribute files larger than this (ATTR_MAX_FILE_SIZE); a larger one is refused, not read.
MAX_ATTRIBUTES_BYTES = 100 << 20


def _attribute_lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _routes(line: bytes, kind: str) -> bool:
    """The line routes its pattern to filter=`kind` (a comment never does, though the clone hint names filter=theta)."""
    parts = line.split()
    return len(parts) >= 2 and not parts[0].startswith(b"#") and f"filter={kind}".encode() in parts[1:]


def _switch_lines(data: bytes, patterns: set[str], source: str, target: str) -> tuple[list[bytes], bool]:
    """The lines, those routing one of `patterns` to filter=`source` replaced by `pattern target-attributes`."""
    lines, changed = _attribute_lines(data), False
    for index, line in enumerate(lines):
        parts = line.split()
        if _routes(line, source) and parts[0].decode("utf-8", "surrogateescape") in patterns:
            lines[index] = parts[0] + b" " + target.encode() + (b"\r" if line.endswith(b"\r") else b"")
            changed = True
    return lines, changed


def import_attributes(data: bytes | None, include: list[str], converted: set[str], kept_lfs: set[str]) -> bytes | None:
    """The root .gitattributes after import: git-lfs lines of the included patterns become git-theta's (other lines
    kept, the clone hint on top); a pattern that converted files but had no line gets one; None: no file needed."""
    if data is None and not converted:
        return None
    lines, _ = _switch_lines(data or b"", set(include), "lfs", attributes.ATTRIBUTES)
    if data is None:
        lines = []
    present = {line.split()[0].decode("utf-8", "surrogateescape") for line in lines if _routes(line, "theta")}
    added = [f"{p} {attributes.ATTRIBUTES}".encode() for p in include if p in converted and p not in present]
    added += [f"{p} {LFS_ATTRIBUTES}".encode() for p in sorted(kept_lfs)]  # excluded paths an include matches
    if added:
        if lines and lines[-1] == b"":
            lines = lines[:-1] + added + [b""]
        else:
            lines = lines + added + ([b""] if data is None else [])
    if any(_routes(line, "theta") for line in lines) and attributes.CLONE_HINT.encode() not in lines:
        lines.insert(0, attributes.CLONE_HINT.encode())
    return b"\n".join(lines)


def export_attributes(data: bytes, include: list[str]) -> bytes:
    """The .gitattributes after export: git-theta lines of the included patterns back to git-lfs's; the clone hint
    goes once no git-theta line is left."""
    lines, _ = _switch_lines(data, set(include), "theta", LFS_ATTRIBUTES)
    if not any(_routes(line, "theta") for line in lines):
        lines = [line for line in lines if line != attributes.CLONE_HINT.encode()]
    return b"\n".join(lines)


def default_include(repo: Repo, refs: dict[str, str], kind: str) -> list[str]:
    """The patterns the tips' root .gitattributes route to filter=`kind`."""
    found: list[str] = []
    for oid in dict.fromkeys(refs.values()):
        data = git.blob(f"{oid}:.gitattributes", cwd=repo.worktree) or b""
        for line in data.decode("utf-8", "surrogateescape").splitlines():
            parts = line.split()
            if len(parts) >= 2 and not line.lstrip().startswith("#") and f"filter={kind}" in parts[1:]:
                found.append(parts[0])
    if not found:
        raise MigrateError(
            f"no .gitattributes line routes files to filter={kind} at the rewritten refs: name the files with --include"
        )
    return list(dict.fromkeys(found))
