"""`git theta log` as text and as JSON: one line per commit, one per changed checkpoint, optionally per group."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from git_theta import sharded
from git_theta.display import changes, tables
from git_theta.display.changes import GroupChange

if TYPE_CHECKING:  # annotations only: history imports display (changes), not the other way round
    from git_theta.history import Commit


def by_update(group_changes: list[GroupChange]) -> dict[str, int]:
    """update type -> bytes stored by the changes of that type."""
    found: dict[str, int] = {}
    for change in group_changes:
        if change.new is not None:
            found[change.update] = found.get(change.update, 0) + change.stored_size
    return dict(sorted(found.items()))


def render(*, commits: list[Commit], param: str | None, verbose: bool) -> str:
    lines = []
    for commit in commits:
        lines.append(f"{commit.short}  {commit.date}  {commit.author}  {commit.subject}")
        for file in commit.files:
            rows = [_group_row(c) for c in file.changes] + [_moved_row(m) for m in file.moves]
            if param is not None:
                lines += tables.table(rows, right=(5,), indent=f"    {file.path}  ")
                continue
            stored = ", ".join(
                f"{update} {changes.human_size(size)}" for update, size in by_update(file.changes).items()
            )
            moved = f"; {sharded.moves_text(file.moves)}" if file.moves else ""
            counts = changes.summary_counts(file.changes)
            counted = f"{changes.groups_text(len(file.changes))} changed ({counts}){moved}"
            data = "; file data changed" if file.file_changed else ""
            lines.append(f"    {file.path}: {counted}{data}; stored {stored or 'nothing'}")
            if verbose:
                lines += tables.table(rows, right=(5,), indent="      ")
    return "\n".join(lines) + ("\n" if lines else "")


def _moved_row(move: sharded.Move) -> list[str]:
    return [move.text(), move.name, move.entry.dtype, changes.shape_text(move.entry.shape), "", ""]


def _move_json(move: sharded.Move) -> dict[str, str]:
    return {"name": move.name, "from": move.old_shard, "to": move.new_shard}


def _group_row(change: GroupChange) -> list[str]:
    entry = change.new if change.new is not None else change.old
    assert entry is not None
    layout = f" ({change.layout_change})" if change.layout_change else ""
    stored = changes.human_size(change.stored_size) if change.new is not None else ""
    return [change.status + layout, change.name, entry.dtype, changes.shape_text(entry.shape), change.update, stored]


def to_json(commits: list[Commit]) -> list[dict[str, Any]]:
    return [
        {
            "commit": c.id,
            "date": c.date,
            "author": c.author,
            "subject": c.subject,
            "files": [
                {
                    "path": f.path,
                    "groups": [
                        {
                            "name": g.name,
                            "status": g.status,
                            "layout_change": g.layout_change or None,
                            "update": g.update or None,
                            "stored_bytes": g.stored_size,
                            "old": changes.entry_json(g.old),
                            "new": changes.entry_json(g.new),
                        }
                        for g in f.changes
                    ],
                    **({"moves": [_move_json(m) for m in f.moves]} if f.moves else {}),
                    **({"file_changed": True} if f.file_changed else {}),
                }
                for f in c.files
            ],
        }
        for c in commits
    ]
