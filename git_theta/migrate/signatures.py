"""Signed commits and tags across a rewrite: what a rewrite drops, and the originals an export can give back.

A signature covers the object's exact bytes without the signature (a commit's gpgsig header, a tag's trailing
signature block), so a rewritten object cannot keep it: migrate drops it and counts it. The original signed
objects stay in the repository under the backup refs (refs/theta-migrate/backup/<verb>/) of the rewrite that
dropped them. When a later rewrite rebuilds an object whose bytes are exactly such an original's without its
signature (export after import does, byte for byte), the original is used instead: its signature is valid
again, since it covers exactly those bytes, and the original id comes back. Nothing else is recorded: the
backups are the record, and without them (deleted) the history comes back unsigned.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from git_theta import git
from git_theta.migrate import BACKUP_PREFIX
from git_theta.migrate.plumbing import CatFile, headers_and_body

SIGNATURE_HEADERS = (b"gpgsig", b"gpgsig-sha256")
TAG_SIGNATURE = re.compile(rb"\n-----BEGIN (PGP|SSH) SIGNATURE-----\n.*\Z", re.DOTALL)


def is_signature(header: bytes) -> bool:
    """A commit header line that carries a signature (with its continuation lines)."""
    return header.split(b" ", 1)[0] in SIGNATURE_HEADERS


def unsigned_commit(raw: bytes) -> bytes | None:
    """A signed commit's bytes without its signature (what was signed); None when it is not signed."""
    headers, body = headers_and_body(raw)
    kept = [h for h in headers if not is_signature(h)]
    return None if len(kept) == len(headers) else b"\n".join(kept) + b"\n\n" + body


def unsigned_tag(raw: bytes) -> bytes | None:
    """A signed tag's bytes without its trailing signature block; None when it is not signed."""
    headers, body = headers_and_body(raw)
    if not TAG_SIGNATURE.search(body):
        return None
    return b"\n".join(headers) + b"\n\n" + TAG_SIGNATURE.sub(b"\n", body)


class ObjectIds:
    """Object ids as git computes them, without writing anything (the repository's hash: sha1 or sha256)."""

    def __init__(self, cwd: Path) -> None:
        found = git.run("rev-parse", "--show-object-format", cwd=cwd, check=False).stdout.decode().strip()
        self.algorithm = found if found in ("sha1", "sha256") else "sha1"

    def __call__(self, kind: str, data: bytes) -> str:
        return hashlib.new(self.algorithm, f"{kind} {len(data)}\0".encode() + data).hexdigest()


@dataclass
class Originals:
    """id of a signed original's unsigned bytes -> the signed original's id, from the backups of earlier rewrites."""

    by_unsigned: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_backups(cls, cwd: Path, cat: CatFile, ids: ObjectIds) -> Originals:
        tips = git.output("for-each-ref", "--format=%(objectname)", BACKUP_PREFIX, cwd=cwd).split()
        found = cls()
        if not tips:
            return found
        for oid in dict.fromkeys(tips):  # a backed-up annotated tag is the tag object itself
            kind, raw = cat.read(oid)
            unsigned = unsigned_tag(raw) if kind == "tag" else None
            if unsigned is not None:
                found.by_unsigned[ids("tag", unsigned)] = oid
        for oid in git.output("rev-list", *tips, cwd=cwd).split():
            unsigned = unsigned_commit(cat.read(oid)[1])
            if unsigned is not None:
                found.by_unsigned[ids("commit", unsigned)] = oid
        return found


@dataclass
class SignatureCounts:
    """Signed objects a rewrite dropped the signature of, and originals it gave back signed."""

    dropped_commits: set[str] = field(default_factory=set)
    dropped_tags: set[str] = field(default_factory=set)
    restored_commits: set[str] = field(default_factory=set)
    restored_tags: set[str] = field(default_factory=set)

    def summary(self, verb: str, *, dry_run: bool = False) -> str | None:
        """One line for the user, None when no signature was involved."""
        lines = []
        if self.dropped_commits or self.dropped_tags:
            lose = "would lose" if dry_run else "lost"
            lines.append(
                f"{len(self.dropped_commits)} signed commit(s) and {len(self.dropped_tags)} signed tag(s) {lose} "
                f"their signatures (a rewritten object no longer matches its signature; the signed originals "
                f"{'would stay' if dry_run else 'stay'} under {BACKUP_PREFIX}/{verb}/, and `git theta migrate "
                f"{'export' if verb == 'import' else 'import'}` restores them while they are there)"
            )
        if self.restored_commits or self.restored_tags:
            lines.append(
                f"{len(self.restored_commits)} signed commit(s) and {len(self.restored_tags)} signed tag(s) restored "
                f"with their original signatures (from the backups under {BACKUP_PREFIX}/)"
            )
        return "; ".join(lines) or None
