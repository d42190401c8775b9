"""`git theta show`: one checkpoint's parameter groups at one side (a revision or the index), as a table or JSON.

From metadata alone: no tensor is loaded, so it works before objects are fetched.
"""

from __future__ import annotations

from typing import Any

from git_theta import snapshots
from git_theta.display import changes, tables
from git_theta.metadata import Metadata

SORT_KEYS = ("name", "size", "stored")


def totals(meta: Metadata) -> dict[str, int]:
    entries = list(meta.params.values())
    return {
        "groups": len(entries),
        "parameters": sum(changes.elements(e) for e in entries),
        "bytes": sum(changes.nbytes(e) for e in entries),
        "stored_bytes": sum(e.stored_size for e in entries),
    }


def ordered(meta: Metadata, key: str) -> list[str]:
    names = sorted(meta.params)
    if key == "size":
        return sorted(names, key=lambda n: -changes.nbytes(meta.params[n]))
    if key == "stored":
        return sorted(names, key=lambda n: -meta.params[n].stored_size)
    return names


def to_json(*, side: str, path: str, meta: Metadata, key: str) -> dict[str, Any]:
    groups = [{"name": name, **(changes.entry_json(meta.params[name]) or {})} for name in ordered(meta, key)]
    return {"rev": snapshots.label(side), "path": path, "format": meta.format, "groups": groups, "totals": totals(meta)}


def render(*, side: str, path: str, meta: Metadata, key: str) -> str:
    rows = [["group", "dtype", "shape", "update", "stored"]]
    for name in ordered(meta, key):
        entry = meta.params[name]
        rows.append(
            [
                name,
                entry.dtype,
                changes.shape_text(entry.shape),
                changes.chain_text(entry),
                changes.human_size(entry.stored_size),
            ]
        )
    total = totals(meta)
    ratio = f" ({total['stored_bytes'] / total['bytes']:.1%} of the tensor data)" if total["bytes"] else ""
    lines = [f"{path} at {snapshots.label(side)} ({meta.format})"] + tables.table(rows, right=(4,))
    lines.append(
        f"{total['groups']} groups, {total['parameters']:,} parameters, {changes.human_size(total['bytes'])} of "
        f"tensor data, {changes.human_size(total['stored_bytes'])} stored{ratio}"
    )
    return "\n".join(lines) + "\n"
