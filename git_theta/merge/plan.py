"""Decide on metadata alone what a merge takes, and which parameters need a strategy.

A parameter's value is identified by its hash. Versions that equal the merge
base did not change it; if the versions that did change it all agree, that
value is taken (this covers one-sided changes, identical changes, and
one-sided additions and deletions: "absent" is a value too). Only parameters
changed in different ways on two or more sides conflict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from git_theta.metadata import Metadata, ParamEntry


@dataclass(frozen=True)
class Conflict:
    """A parameter changed differently on several sides; `versions` follow the merge's order (ours first)."""

    name: str
    versions: tuple[ParamEntry | None, ...]
    base: ParamEntry | None

    def describe(self, labels: Sequence[str]) -> str:
        parts = []
        for label, entry in zip(labels, self.versions):
            parts.append(f"{label}: {'deleted' if entry is None else layout(entry)}")
        base = "absent" if self.base is None else layout(self.base)
        return f"{self.name}  ({', '.join(parts)}; base: {base})"


@dataclass
class Plan:
    taken: dict[str, ParamEntry]
    # Parameters the versions disagree on, settled because only one value differs from the base.
    one_sided: list[str]
    conflicts: list[Conflict]


def layout(entry: ParamEntry) -> str:
    return f"{entry.dtype}[{','.join(str(n) for n in entry.shape)}]"


def _key(entry: ParamEntry | None) -> str | None:
    # The hash covers dtype, shape and bytes: equal hashes are equal tensors.
    return None if entry is None else entry.hash


def plan(versions: Sequence[Metadata], base: Metadata | None, exhaustive: bool = False) -> Plan:
    """Split every parameter into taken-as-is and conflicting, without loading a tensor.

    `exhaustive` (a mergekit recipe): a parameter every side has conflicts as soon as any version differs
    from another or from the base, so the method computes it as mergekit would (TIES trims even a one-sided
    task vector); only parameters equal everywhere are taken as they are.
    """
    names = sorted(set().union(*(meta.params for meta in versions), base.params if base else ()))
    result = Plan({}, [], [])
    for name in names:
        base_entry = base.params.get(name) if base else None
        entries = tuple(meta.params.get(name) for meta in versions)
        changed = {_key(entry) for entry in entries} - {_key(base_entry)}
        present = all(entry is not None for entry in (*entries, *([base_entry] if base else [])))
        if len(changed) > 1 or (exhaustive and present and len({_key(e) for e in (*entries, base_entry)} - {None}) > 1):
            result.conflicts.append(Conflict(name, entries, base_entry))
            continue
        target = changed.pop() if changed else _key(base_entry)
        if len({_key(entry) for entry in entries}) > 1:
            result.one_sided.append(name)
        if target is not None:
            result.taken[name] = next((e for e in entries if _key(e) == target), base_entry)  # type: ignore[assignment]
    return result
