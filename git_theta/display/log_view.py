"""`git theta log` as text and as JSON: one line per commit, one per changed checkpoint, optionally per group."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
            if param is not None:
                lines += tables.table([_group_row(c) for c in file.changes], right=(5,), indent=f"    {file.path}  ")
                continue
            stored = ", ".join(f"{update} {changes.human_size(size)}" for update, size in by_update(file.changes).items())
            lines.append(f"    {file.path}: {changes.groups_text(len(file.changes))} changed ({changes.summary_counts(file.changes)}); stored {stored or 'nothing'}")
            if verbose:
                lines += tables.table([_group_row(c) for c in file.changes], right=(5,), indent="      ")
    return "\n".join(lines) + ("\n" if lines else "")


def _group_row(change: GroupChange) -> list[str]:
    entry = change.new if change.new is not None else change.old
    assert entry is not None
    layout = f" ({change.layout_change})" if change.layout_change else ""
    stored = changes.human_size(change.stored_size) if change.new is not None else ""
    return [change.status + layout, change.name, entry.dtype, changes.shape_text(entry.shape), change.update, stored]


def to_json(commits: list[Commit]) -> list[dict[str, Any]]:
    return [
        {
            "commit": c.id, "date": c.date, "author": c.author, "subject": c.subject,
            "files": [
                {"path": f.path, "groups": [
                    {"name": g.name, "status": g.status, "layout_change": g.layout_change or None, "update": g.update or None,
                     "stored_bytes": g.stored_size, "old": changes.entry_json(g.old), "new": changes.entry_json(g.new)}
                    for g in f.changes
                ]}
                for f in c.files
            ],
        }
        for c in commits
    ]
