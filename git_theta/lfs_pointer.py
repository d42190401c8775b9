"""git-lfs pointer files: what a path committed through git-lfs holds in git (the Git LFS pointer spec, v1).

git-lfs and git-theta share `.git/lfs/objects`, where a git-lfs object is the file itself under its sha256. So a
revision committed before a path switched to git-theta checks out, shows, diffs and loads through its pointer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = b"version https://git-lfs.github.com/spec/v1\n"
# The spec caps a pointer at 1024 bytes: anything longer is content, not a pointer.
MAX_BYTES = 1024
_OID = re.compile(rb"^oid sha256:([0-9a-f]{64})$", re.MULTILINE)
_SIZE = re.compile(rb"^size (0|[1-9][0-9]{0,18})$", re.MULTILINE)


@dataclass(frozen=True)
class Pointer:
    oid: str
    size: int


def parse(data: bytes) -> Pointer | None:
    """The object a pointer names, or None when `data` is not a git-lfs pointer."""
    if len(data) > MAX_BYTES or not data.startswith(PREFIX) or not data.endswith(b"\n"):
        return None
    oid, size = _OID.search(data), _SIZE.search(data)
    if oid is None or size is None:
        return None
    return Pointer(oid.group(1).decode(), int(size.group(1)))
