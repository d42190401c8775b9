"""Side-loaded updates waiting for the clean filter.

`git theta add PATH --update-type ...` computes the new tensors, rewrites PATH
with them and stores the update objects; then it leaves a record here for the
clean filter run by its own `git add`, and removes it afterwards. The record
maps each updated parameter to the hash of its new value and the chain that
rebuilds it (the base's links plus the update link). The clean filter uses an
entry only when the tensor it reads has exactly that hash and every object is
in the store, so a stale or foreign record can never change what is stored.

No environment variables: the record lives in the repository's git dir, at
<git-common-dir>/theta/pending/<sha256 of the path>.json, keyed by path.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from git_theta import files, metadata
from git_theta.errors import MetadataError
from git_theta.metadata import ParamEntry, StoredLink

MAX_RECORD_BYTES = 64 << 20


def record_path(common_dir: Path, path: str) -> Path:
    return (
        common_dir
        / "theta"
        / "pending"
        / (hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest() + ".json")
    )


def write(common_dir: Path, path: str, entries: Mapping[str, ParamEntry]) -> Path:
    """Leave the record for `path` (written to a temp file and renamed into place)."""
    target = record_path(common_dir, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    doc = {"path": path, "params": {name: entry.to_json() for name, entry in sorted(entries.items())}}
    with files.temp_file(target.parent, "pending-") as (out, temp):
        out.write(json.dumps(doc, sort_keys=True).encode())
        files.replace(out, temp, target, 0o644)
    return target


def load(common_dir: Path, path: str) -> dict[str, tuple[str, tuple[StoredLink, ...]]]:
    """name -> (hash of the new value, its stored chain) for `path`; empty when there is no valid record."""
    target = record_path(common_dir, path)
    try:
        if target.stat().st_size > MAX_RECORD_BYTES:
            return {}
        doc = json.loads(target.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("path") != path or not isinstance(doc.get("params"), dict):
        return {}
    found = {}
    for name, value in doc["params"].items():
        try:
            entry = metadata._parse_entry(name, value, str(target), packed_ok=True)  # links may name pack members
        except MetadataError:
            return {}  # a damaged record is ignored whole: automatic selection takes over
        found[name] = (entry.hash, entry.stored)
    return found


def referenced_objects(common_dir: Path) -> set[str]:
    """Every object any record names (`git theta gc` keeps them: the clean filter is about to use them)."""
    oids: set[str] = set()
    for target in sorted((common_dir / "theta" / "pending").glob("*.json")):
        try:
            doc = json.loads(target.read_bytes()) if target.stat().st_size <= MAX_RECORD_BYTES else None
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("path"), str):
            oids.update(link.object for _, chain in load(common_dir, doc["path"]).values() for link in chain)
    return oids


def remove(common_dir: Path, path: str) -> None:
    try:
        record_path(common_dir, path).unlink()
    except FileNotFoundError:
        pass
