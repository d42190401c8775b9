"""What changed between two versions of a checkpoint, from metadata alone.

Two parameter groups are the same when their hashes are equal (an exact hash
of dtype, shape and bytes), so a comparison needs no tensor and no object:
it works in a fresh clone before any object is fetched. Shared by textconv,
`git theta diff`, `git theta log` and `git theta show`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from git_theta.metadata import Metadata, ParamEntry, StoredLink
from git_theta.sharded import Move, ShardedModel

ADDED = "added"
REMOVED = "removed"
MODIFIED = "modified"


@dataclass(frozen=True)
class GroupChange:
    """One parameter group that differs between `old` and `new` (None where absent)."""

    name: str
    status: str
    old: ParamEntry | None
    new: ParamEntry | None
    # Links of the new version whose objects the old checkpoint did not reference at all: what this change stored.
    new_links: tuple[StoredLink, ...] = ()

    @property
    def layout_change(self) -> str:
        """ "dtype", "shape", "dtype+shape" or "" for a modified group."""
        if self.old is None or self.new is None:
            return ""
        parts = [
            kind
            for kind, a, b in (("dtype", self.old.dtype, self.new.dtype), ("shape", self.old.shape, self.new.shape))
            if a != b
        ]
        return "+".join(parts)

    @property
    def update(self) -> str:
        """The update type that expresses this change ("" for a removal)."""
        links = self.new_links or (self.new.stored[-1:] if self.new is not None else ())
        return links[-1].update if links else ""

    @property
    def stored_size(self) -> int:
        return sum(link.stored_bytes for link in self.new_links)


def compare(old: Metadata | None, new: Metadata | None) -> list[GroupChange]:
    """Changed groups, sorted by name; equal hashes mean equal tensors."""
    before = old.params if old is not None else {}
    after = new.params if new is not None else {}
    # Links by what they hold (a pack member, or a whole object): a new member of a pack the old version also
    # uses is new bytes, a member the old version used is not.
    known = {link.key for entry in before.values() for link in entry.stored}
    changes = []
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        fresh = tuple(link for link in b.stored if link.key not in known) if b is not None else ()
        if a is None:
            changes.append(GroupChange(name, ADDED, None, b, fresh))
        elif b is None:
            changes.append(GroupChange(name, REMOVED, a, None))
        elif a.hash != b.hash:
            changes.append(GroupChange(name, MODIFIED, a, b, fresh))
    return changes


def group_count(old: Metadata | None, new: Metadata | None) -> int:
    """Distinct group names on either side."""
    return len(set(old.params if old else ()) | set(new.params if new else ()))


def counts(changes: list[GroupChange]) -> dict[str, int]:
    found = {MODIFIED: 0, ADDED: 0, REMOVED: 0}
    for change in changes:
        found[change.status] += 1
    return found


def summary_counts(changes: list[GroupChange]) -> str:
    """E.g. "2 modified, 1 added" (only the non-zero kinds)."""
    parts = [f"{n} {status}" for status, n in counts(changes).items() if n]
    return ", ".join(parts) or "no change"


def groups_text(count: int) -> str:
    return f"{count} group" if count == 1 else f"{count} groups"


def elements(entry: ParamEntry) -> int:
    return math.prod(entry.shape)


def nbytes(entry: ParamEntry) -> int:
    from git_theta.dtypes import nbytes as dtype_nbytes

    return dtype_nbytes(entry.dtype, entry.shape)


def changed_bytes(changes: list[GroupChange]) -> int:
    """Raw tensor bytes of the groups whose content differs (the new side, or the old one for removals)."""
    total = 0
    for change in changes:
        entry = change.new if change.new is not None else change.old
        if entry is not None:
            total += nbytes(entry)
    return total


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(n) for n in shape) + "]"


def chain_text(entry: ParamEntry) -> str:
    """The update types of a stored chain, e.g. "dense" or "dense+sparse"."""
    return "+".join(link.update for link in entry.stored)


def human_size(size: int) -> str:
    """Bytes in binary units with one decimal: 512 B, 1.5 KiB, 86.7 MiB."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def entry_json(entry: ParamEntry | None) -> dict[str, object] | None:
    if entry is None:
        return None
    return {
        "dtype": entry.dtype,
        "shape": list(entry.shape),
        "hash": entry.hash,
        "updates": [link.update for link in entry.stored],
        "stored_bytes": entry.stored_size,
        "bytes": nbytes(entry),
    }


def compare_models(old: ShardedModel | None, new: ShardedModel | None) -> tuple[list[GroupChange], list[Move]]:
    """Group changes of the whole model (by name across shards) and the tensors that changed shard."""
    found = compare(old.as_metadata() if old else None, new.as_metadata() if new else None)
    moves = []
    if old is not None and new is not None:
        for name in sorted(old.shard_of.keys() & new.shard_of.keys()):
            if old.shard_of[name] != new.shard_of[name]:
                moves.append(Move(name, old.shard_of[name], new.shard_of[name], new.params[name]))
    return found, moves
