"""`git theta diff`: the changed parameter groups of checkpoints between two sides, with numbers, as a table or JSON.

Groups are compared by hash first (changes.py): only modified groups of unchanged layout are loaded, one pair
at a time, for the numbers (tensor_diff.py); without numbers nothing is loaded and no object is needed.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from git_theta import snapshots
from git_theta.display import changes, tables
from git_theta.display.changes import GroupChange
from git_theta.errors import StoreError
from git_theta.repo import Repo
from git_theta.tensor_diff import ChangeStats

SORT_KEYS = ("name", "norm", "relative", "changed", "max", "cosine", "size", "stored")


@dataclass
class FileDiff:
    path: str
    groups_before: int
    groups_after: int
    groups_total: int
    changes: list[GroupChange]
    stats: dict[str, ChangeStats]


def wanted(change: GroupChange, patterns: list[str]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(change.name, p) for p in patterns)


def compute(*, repo: Repo, old: str, new: str, paths: list[str], patterns: list[str], with_stats: bool) -> list[FileDiff]:
    """The changed groups of each checkpoint under `paths` from side `old` to `new`, with numbers if `with_stats`."""
    before = snapshots.at(repo, old, paths)
    after = snapshots.at(repo, new, paths)
    found = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        group_changes = [c for c in changes.compare(a, b) if wanted(c, patterns)]
        if not group_changes:
            continue
        stats = _stats(repo, path, group_changes) if with_stats else {}
        found.append(FileDiff(path, len(a.params) if a else 0, len(b.params) if b else 0, changes.group_count(a, b), group_changes, stats))
    return found


def _stats(repo: Repo, path: str, group_changes: list[GroupChange]) -> dict[str, ChangeStats]:
    """Numbers for modified groups of unchanged layout, loading one pair of tensors at a time."""
    from git_theta import smudge, tensor_diff  # numpy and the update plugins: only when numbers are asked for

    found = {}
    for change in group_changes:
        if change.status != changes.MODIFIED or change.layout_change or change.old is None or change.new is None:
            continue
        try:
            old = smudge.rebuild(repo.store, change.name, change.old, path)
            new = smudge.rebuild(repo.store, change.name, change.new, path)
        except StoreError as error:
            raise StoreError(f"{error}\n(fetch the objects with `git theta fetch`, or pass --no-stats to compare metadata only)") from None
        found[change.name] = tensor_diff.compare(old, new)
        del old, new
    return found


def sort_changes(diff: FileDiff, key: str) -> list[GroupChange]:
    by_name = sorted(diff.changes, key=lambda c: c.name)
    if key == "name":
        return by_name
    if key in ("size", "stored"):
        return sorted(by_name, key=lambda c: -(c.stored_size if key == "stored" else changes.nbytes(c.new or c.old)))  # type: ignore[arg-type]
    attribute = {"norm": "norm", "relative": "relative", "changed": "changed", "max": "max_abs", "cosine": "cosine"}[key]
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
            groups.append({
                "name": change.name,
                "status": change.status,
                "layout_change": change.layout_change or None,
                "update": change.update or None,
                "stored_bytes": change.stored_size,
                "old": changes.entry_json(change.old),
                "new": changes.entry_json(change.new),
                "stats": stats.to_json() if stats else None,
            })
        files.append({"path": diff.path, "groups_before": diff.groups_before, "groups_after": diff.groups_after, "groups": groups, "summary": _summary(diff.changes)})
    every = [c for d in diffs for c in d.changes]
    return {"old": snapshots.label(old), "new": snapshots.label(new), "files": files, "summary": _summary(every)}


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
        lines.append(tables.paint(f"{diff.path} ({snapshots.label(old)} -> {snapshots.label(new)})", "bold", color))
        ordered = sort_changes(diff, key)
        header = HEADER if diff.stats else HEADER[:6]  # no numbers (--no-stats, or nothing comparable): no empty columns
        rows = [header] + [_row(change, diff.stats.get(change.name)) for change in ordered]
        lines += tables.table(rows, right=(5, 6, 7, 8, 9, 10), indent="  ", colors=[None] + [c.status for c in ordered], color=color)
        lines.append(f"  {_summary_text(diff.changes, diff.groups_total)}")
    if len(diffs) > 1:
        every = [c for d in diffs for c in d.changes]
        lines.append(f"total: {len(diffs)} checkpoints, {_summary_text(every, None)}")
    return "\n".join(lines) + ("\n" if lines else "")


def _row(change: GroupChange, stats: ChangeStats | None) -> list[str]:
    old, new = change.old, change.new
    if old is not None and new is not None and change.layout_change:
        dtype = old.dtype if old.dtype == new.dtype else f"{old.dtype}->{new.dtype}"
        shape = changes.shape_text(old.shape) if old.shape == new.shape else f"{changes.shape_text(old.shape)}->{changes.shape_text(new.shape)}"
    else:
        entry = new if new is not None else old
        assert entry is not None
        dtype, shape = entry.dtype, changes.shape_text(entry.shape)
    stored = changes.human_size(change.stored_size) if new is not None else ""
    row = [change.status + (f" ({change.layout_change})" if change.layout_change else ""), change.name, dtype, shape, change.update, stored]
    if stats is None:
        return row
    return row + [tables.number(stats.norm), tables.number(stats.relative, 2), tables.share(stats.changed), tables.number(stats.max_abs, 2), tables.cosine(stats.cosine)]


def _summary_text(group_changes: list[GroupChange], groups: int | None) -> str:
    summary = _summary(group_changes)
    count = summary["groups_changed"]
    changed = changes.groups_text(count) if groups is None else f"{count} of {changes.groups_text(groups)}"
    return (
        f"{changed} changed ({changes.summary_counts(group_changes)}); "
        f"{changes.human_size(summary['bytes_changed'])} of tensor data changed, {changes.human_size(summary['stored_bytes'])} newly stored"
    )
