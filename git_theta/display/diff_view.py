"""`git theta diff`: the changed parameter groups of checkpoints between two sides, with numbers, as a table or JSON.

Groups are compared by hash first (changes.py): only modified groups of unchanged layout are loaded, one pair
at a time, for the numbers (tensor_diff.py); without numbers nothing is loaded and no object is needed. A sharded
Hugging Face checkpoint's index (model.safetensors.index.json) compares the whole model across its shards; groups
whose bytes are not values (GGUF quantized blocks, packed F4, GPTQ qweight) are shown without numbers.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from git_theta import metadata, sharded, snapshots
from git_theta.display import changes, lines, tables
from git_theta.display.changes import GroupChange
from git_theta.errors import StoreError, ThetaError
from git_theta.packed import Packed, packed
from git_theta.repo import Repo
from git_theta.tensor_diff import ChangeStats

if TYPE_CHECKING:
    from git_theta.metadata import ParamEntry

SORT_KEYS = ("name", "norm", "relative", "changed", "max", "cosine", "size", "stored")


@dataclass
class FileDiff:
    path: str
    groups_before: int
    groups_after: int
    groups_total: int
    changes: list[GroupChange]
    stats: dict[str, ChangeStats]
    # group -> why its values are not compared (packed or integer-quantized: git_theta/quantized.py)
    opaque: dict[str, str] = field(default_factory=dict)
    # a sharded model (path is its index): tensors that changed shard, and the shard counts before and after
    moves: list[sharded.Move] = field(default_factory=list)
    shards: tuple[int, int] | None = None
    # Groups stored as opaque packed bytes (GGUF quantized): shown by their type and logical shape, no numbers.
    packed: dict[str, Packed] = field(default_factory=dict)


def wanted(change: GroupChange, patterns: list[str]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(change.name, p) for p in patterns)


def compute(
    *, repo: Repo, old: str, new: str, paths: list[str], patterns: list[str], with_stats: bool
) -> list[FileDiff]:
    indexes = [path for path in paths if sharded.is_index(path)]
    paths = [path for path in paths if not sharded.is_index(path)]
    found = [] if indexes and not paths else _files(repo, old, new, paths, patterns, with_stats)
    for index in indexes:
        model = _model(repo, old, new, index, patterns, with_stats)
        if model is not None:
            found.append(model)
    return found


def _model(repo: Repo, old: str, new: str, index: str, patterns: list[str], with_stats: bool) -> FileDiff | None:
    """The diff of a sharded model as one checkpoint, or None when nothing in it changed."""
    a, b = sharded.model_at(repo, old, index), sharded.model_at(repo, new, index)
    if a is None and b is None:
        raise ThetaError(f"{index}: no such index file at {snapshots.label(old)} or {snapshots.label(new)}")
    group_changes, moves = changes.compare_models(a, b)
    group_changes = [c for c in group_changes if wanted(c, patterns)]
    moves = [m for m in moves if not patterns or any(fnmatch.fnmatchcase(m.name, p) for p in patterns)]
    if not group_changes and not moves:
        return None
    names = set(a.params if a else ()) | set(b.params if b else ())
    opaque = _opaque(group_changes, names)
    stats = _stats(repo, index, [c for c in group_changes if c.name not in opaque]) if with_stats else {}
    total = len(names)
    shards = (len(a.shards) if a else 0, len(b.shards) if b else 0)
    before, after = len(a.params) if a else 0, len(b.params) if b else 0
    return FileDiff(index, before, after, total, group_changes, stats, opaque if with_stats else {}, moves, shards)


def _files(repo: Repo, old: str, new: str, paths: list[str], patterns: list[str], with_stats: bool) -> list[FileDiff]:
    before = snapshots.blobs_at(repo, old, paths)
    after = snapshots.blobs_at(repo, new, paths)
    found = []
    for path in sorted(before.keys() | after.keys()):
        versions = _versions(
            before.get(path), after.get(path), snapshots.source(old, path), snapshots.source(new, path)
        )
        a, b = versions.old, versions.new
        group_changes = [c for c in changes.compare(a, b, known=versions.known) if wanted(c, patterns)]
        if not group_changes:
            continue
        quantized = {**packed(a.file if a else None), **packed(b.file if b else None)}
        opaque = _opaque(group_changes, versions.names)
        numeric = [c for c in group_changes if c.name not in opaque and c.name not in quantized]
        stats = _stats(repo, path, numeric) if with_stats else {}
        counts = (versions.before, versions.after, len(versions.names))
        found.append(FileDiff(path, *counts, group_changes, stats, opaque if with_stats else {}, packed=quantized))
    return found


def _versions(old: bytes | None, new: bytes | None, old_source: str, new_source: str) -> lines.Changed:
    """Two versions with the lines they share left unparsed: identical lines are unchanged groups."""
    found = lines.changed_lines(old, new, old_source, new_source)
    if found is not None:
        return found
    a = metadata.parse(old, old_source) if old is not None else None  # not laid out canonically: parse it all
    b = metadata.parse(new, new_source) if new is not None else None
    names = set(a.params if a else ()) | set(b.params if b else ())
    known = {link.key for entry in a.params.values() for link in entry.stored} if a is not None else set()
    return lines.Changed(a, b, len(a.params) if a else 0, len(b.params) if b else 0, names, known)


def _opaque(group_changes: list[GroupChange], names: set[str]) -> dict[str, str]:
    """Modified groups whose bytes are not values (packed F4, GPTQ qweight, ...): shown by hash and size only."""
    from git_theta.quantized import opaque_reason

    found = {}
    for change in group_changes:
        entry = change.new or change.old
        if entry is None or change.status != changes.MODIFIED:
            continue
        reason = opaque_reason(change.name, entry.dtype, names)
        if reason is not None:
            found[change.name] = reason
    return found


# Modified groups whose pack members are read together (one pread per pack and batch, packs.MemberReads): a
# 10^5-group version with 10^4 small changes otherwise reads 2 * 10^4 members one at a time.
STATS_BATCH = 256
# Rebuilt tensors held for one compare_many call: a large pair is compared alone, as soon as it is rebuilt.
PAIRS_BYTES = 16 << 20


def _stats(repo: Repo, path: str, group_changes: list[GroupChange]) -> dict[str, ChangeStats]:
    """Numbers for modified groups of unchanged layout, holding PAIRS_BYTES of tensors (or one pair) at a time."""
    from git_theta import packs, smudge, tensor_diff  # numpy and the update plugins: only when numbers are asked

    compared = [
        (change.name, change.old, change.new)
        for change in group_changes
        if change.status == changes.MODIFIED and not change.layout_change and change.old and change.new
    ]
    found: dict[str, ChangeStats] = {}
    for start in range(0, len(compared), STATS_BATCH):
        batch = compared[start : start + STATS_BATCH]
        try:
            reads = packs.MemberReads(repo.store, (link for _, a, b in batch for link in (*a.stored, *b.stored)))
            # Pairs are rebuilt together (smudge.rebuild_batch: small dense ones compiled) and compared together
            # (tensor_diff.compare_many), PAIRS_BYTES of them at a time; a pair bigger than that on its own.
            group: list[tuple[str, ParamEntry, ParamEntry]] = []
            held = 0
            for index, (name, old_entry, new_entry) in enumerate(batch):
                group.append((name, old_entry, new_entry))
                held += changes.nbytes(old_entry) + changes.nbytes(new_entry)
                if held >= PAIRS_BYTES or index == len(batch) - 1:
                    olds = smudge.rebuild_batch(repo.store, [(n, a) for n, a, _ in group], path, reads)
                    news = smudge.rebuild_batch(repo.store, [(n, b) for n, _, b in group], path, reads)
                    found.update(zip([n for n, _, _ in group], tensor_diff.compare_many(list(zip(olds, news)))))
                    group, held = [], 0
                    del olds, news
        except StoreError as error:
            raise StoreError(
                f"{error}\n(fetch the objects with `git theta fetch`, or pass --no-stats to compare metadata only)"
            ) from None
    return found


def sort_changes(diff: FileDiff, key: str) -> list[GroupChange]:
    by_name = sorted(diff.changes, key=lambda c: c.name)
    if key == "name":
        return by_name
    if key in ("size", "stored"):
        return sorted(by_name, key=lambda c: -(c.stored_size if key == "stored" else changes.nbytes(c.new or c.old)))  # type: ignore[arg-type]
    attribute = {"norm": "norm", "relative": "relative", "changed": "changed", "max": "max_abs", "cosine": "cosine"}[
        key
    ]
    sign = 1 if key == "cosine" else -1

    def order(change: GroupChange) -> tuple[int, float]:
        value = getattr(diff.stats[change.name], attribute) if change.name in diff.stats else None
        return (1, 0.0) if value is None or value != value else (0, sign * value)

    return sorted(by_name, key=order)


def to_json(*, old: str, new: str, diffs: list[FileDiff], key: str) -> dict[str, Any]:
    files = []
    for diff in diffs:
        groups = []
        for change in sort_changes(diff, key):
            stats = diff.stats.get(change.name)
            groups.append(
                {
                    "name": change.name,
                    "status": change.status,
                    "layout_change": change.layout_change or None,
                    "update": change.update or None,
                    "stored_bytes": change.stored_size,
                    "old": changes.entry_json(change.old),
                    "new": changes.entry_json(change.new),
                    "stats": stats.to_json() if stats else None,
                    "packed": _packed_json(diff.packed.get(change.name)),
                    "not_compared": diff.opaque.get(change.name),
                }
            )
        entry = {
            "path": diff.path, "groups_before": diff.groups_before, "groups_after": diff.groups_after,
            "groups": groups, "summary": _summary(diff.changes),
        }  # fmt: skip
        if diff.shards is not None:
            entry["shards_before"], entry["shards_after"] = diff.shards
            entry["moves"] = [{"name": m.name, "from": m.old_shard, "to": m.new_shard} for m in diff.moves]
        files.append(entry)
    every = [c for d in diffs for c in d.changes]
    return {"old": snapshots.label(old), "new": snapshots.label(new), "files": files, "summary": _summary(every)}


def _packed_json(opaque: Packed | None) -> dict[str, Any] | None:
    return {"type": opaque.type, "shape": list(opaque.shape)} if opaque is not None else None


def _summary(group_changes: list[GroupChange]) -> dict[str, int]:
    return {
        "groups_changed": len(group_changes),
        **changes.counts(group_changes),
        "bytes_changed": changes.changed_bytes(group_changes),
        "stored_bytes": sum(c.stored_size for c in group_changes),
    }


HEADER = ["status", "group", "dtype", "shape", "update", "stored", "norm", "relative", "changed", "max|d|", "cosine"]


def render(*, old: str, new: str, diffs: list[FileDiff], key: str, color: bool) -> str:
    lines: list[str] = []
    for diff in diffs:
        model = f"; a model of {_shards_text(diff.shards)}" if diff.shards is not None else ""
        title = f"{diff.path} ({snapshots.label(old)} -> {snapshots.label(new)}{model})"
        lines.append(tables.paint(title, "bold", color))
        ordered = sort_changes(diff, key)
        header = (
            HEADER if diff.stats else HEADER[:6]
        )  # no numbers (--no-stats, or nothing comparable): no empty columns
        moved = {m.name: m for m in diff.moves}
        rows = [header]
        for change in ordered:
            rows.append(
                _row(
                    change,
                    diff.stats.get(change.name),
                    diff.opaque.get(change.name),
                    moved.get(change.name),
                    diff.packed.get(change.name),
                    len(header),
                )
            )
        changed = {c.name for c in ordered}
        only_moved = [m for m in diff.moves if m.name not in changed]
        rows += [_moved_row(m) for m in only_moved]
        colors = [None] + [c.status for c in ordered] + [None] * len(only_moved)
        lines += tables.table(rows, right=(5, 6, 7, 8, 9, 10), indent="  ", colors=colors, color=color)
        moves = f"; {sharded.moves_text(diff.moves)}" if diff.moves else ""
        lines.append(f"  {_summary_text(diff.changes, diff.groups_total)}{moves}")
    if len(diffs) > 1:
        every = [c for d in diffs for c in d.changes]
        lines.append(f"total: {len(diffs)} checkpoints, {_summary_text(every, None)}")
    return "\n".join(lines) + ("\n" if lines else "")


def _shards_text(shards: tuple[int, int]) -> str:
    before, after = shards
    return f"{after} shard{'s' * (after != 1)}" if before == after else f"{before} -> {after} shards"


def _moved_row(move: sharded.Move) -> list[str]:
    """A tensor whose bytes did not change but whose shard did: nothing was stored for it."""
    return [move.text(), move.name, move.entry.dtype, changes.shape_text(move.entry.shape), "", ""]


def _row(
    change: GroupChange,
    stats: ChangeStats | None,
    opaque: str | None = None,
    move: sharded.Move | None = None,
    quantized: Packed | None = None,
    columns: int = 0,
) -> list[str]:
    old, new = change.old, change.new
    if quantized is not None:
        stored = changes.human_size(change.stored_size) if new is not None else ""
        cells = [change.status, change.name, quantized.type, changes.shape_text(quantized.shape), change.update, stored]
        return cells + [""] * (columns - len(cells)) + ["(quantized: shown by hash only)"]
    if old is not None and new is not None and change.layout_change:
        dtype = old.dtype if old.dtype == new.dtype else f"{old.dtype}->{new.dtype}"
        shape = (
            changes.shape_text(old.shape)
            if old.shape == new.shape
            else f"{changes.shape_text(old.shape)}->{changes.shape_text(new.shape)}"
        )
    else:
        entry = new if new is not None else old
        assert entry is not None
        dtype, shape = entry.dtype, changes.shape_text(entry.shape)
    stored = changes.human_size(change.stored_size) if new is not None else ""
    status = change.status + (f" ({change.layout_change})" if change.layout_change else "")
    if opaque is not None:
        status += f" ({opaque}: values not compared)"
    if move is not None:
        status += f", {move.text()}"
    row = [status, change.name, dtype, shape, change.update, stored]
    if stats is None:
        return row
    return row + [
        tables.number(stats.norm),
        tables.number(stats.relative, 2),
        tables.share(stats.changed),
        tables.number(stats.max_abs, 2),
        tables.cosine(stats.cosine),
    ]


def _summary_text(group_changes: list[GroupChange], groups: int | None) -> str:
    summary = _summary(group_changes)
    count = summary["groups_changed"]
    changed = changes.groups_text(count) if groups is None else f"{count} of {changes.groups_text(groups)}"
    return (
        f"{changed} changed ({changes.summary_counts(group_changes)}); "
        f"{changes.human_size(summary['bytes_changed'])} of tensor data changed, "
        f"{changes.human_size(summary['stored_bytes'])} newly stored"
    )
