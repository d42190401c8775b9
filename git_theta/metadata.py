"""The metadata file git stores in place of a checkpoint.

Canonical JSON laid out one parameter per line, so `git diff` on it reads well:

    {"version":"git-theta/1",
    "format":"safetensors",
    "file":{...},
    "params":{
    "a.weight":{"dtype":"F32","hash":"...","shape":[2,3],"stored":[{"object":"...","size":99,"update":"dense"}]},
    ...
    }}

Specified in docs/formats.md, locked by tests/metadata_test.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, TypeGuard, cast

from git_theta import dtypes
from git_theta.errors import MetadataError
from git_theta.store import check_oid

VERSION = "git-theta/1"
PREFIX = b'{"version":"git-theta/'
MAX_BYTES = 256 << 20
HASH_PATTERN = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class StoredLink:
    """One stored step: an update of `update` type held in object `object`."""

    update: str
    object: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"object": self.object, "size": self.size, "update": self.update}


@dataclass(frozen=True)
class ParamEntry:
    """A parameter group: rebuilt by applying `stored` links in order."""

    dtype: str
    shape: tuple[int, ...]
    hash: str
    stored: tuple[StoredLink, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "dtype": self.dtype,
            "hash": self.hash,
            "shape": list(self.shape),
            "stored": [link.to_json() for link in self.stored],
        }

    @property
    def stored_size(self) -> int:
        return sum(link.size for link in self.stored)

    def objects(self) -> list[str]:
        return [link.object for link in self.stored]


@dataclass
class Metadata:
    format: str
    file: dict[str, Any] = field(default_factory=dict)
    params: dict[str, ParamEntry] = field(default_factory=dict)

    def serialize(self) -> bytes:
        lines = [
            '{"version":' + _dump(VERSION) + ",",
            '"format":' + _dump(self.format) + ",",
            '"file":' + _dump(self.file) + ",",
            '"params":{',
        ]
        names = sorted(self.params)
        for index, name in enumerate(names):
            comma = "," if index < len(names) - 1 else ""
            lines.append(_dump(name) + ":" + _dump(self.params[name].to_json()) + comma)
        lines.append("}}")
        return ("\n".join(lines) + "\n").encode("utf-8")

    def objects(self) -> set[str]:
        """Every object id this metadata needs (params and file-level blobs)."""
        oids = {oid for entry in self.params.values() for oid in entry.objects()}
        oids.update(file_objects(self.file))
        return oids


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def file_objects(value: Any) -> list[str]:
    """Object ids referenced from the format's "file" section: {"object": oid, ...} dicts."""
    found: list[str] = []
    if isinstance(value, dict):
        if isinstance(value.get("object"), str):
            found.append(value["object"])
        for item in value.values():
            found.extend(file_objects(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(file_objects(item))
    return found


def looks_like_metadata(head: bytes) -> bool:
    return head.startswith(PREFIX)


def parse(data: bytes, source: str = "metadata") -> Metadata:
    """Parse and validate metadata; `source` names the file in errors."""
    if len(data) > MAX_BYTES:
        raise MetadataError(f"{source}: metadata of {len(data)} bytes exceeds the {MAX_BYTES} byte limit")
    if not looks_like_metadata(data):
        raise MetadataError(f"{source}: not git-theta metadata")
    try:
        doc = json.loads(data, object_pairs_hook=_unique_keys)
    except ValueError as error:
        raise MetadataError(f"{source}: metadata is not valid JSON: {error}") from None
    if doc.get("version") != VERSION:
        raise MetadataError(
            f"{source}: unsupported metadata version {doc.get('version')!r}; this git-theta reads {VERSION} "
            "(a newer version needs a newer git-theta)"
        )
    if not isinstance(doc.get("format"), str) or not doc["format"] or not isinstance(doc.get("file"), dict):
        raise MetadataError(f"{source}: metadata lacks a format or file section")
    if not isinstance(doc.get("params"), dict):
        raise MetadataError(f"{source}: metadata lacks a params section")
    params = {name: _parse_entry(name, value, source) for name, value in doc["params"].items()}
    for oid in file_objects(doc["file"]):
        _checked(check_oid, oid, source, "file section")
    return Metadata(doc["format"], doc["file"], params)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a repeated key (two entries for one parameter) is an error, not last-wins."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"key {key!r} appears twice")
        found[key] = value
    return found


def is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _checked(check: Any, value: Any, source: str, where: str) -> Any:
    try:
        return check(value)
    except Exception as error:
        raise MetadataError(f"{source}: {where}: {error}") from None


def _parse_entry(name: str, value: Any, source: str) -> ParamEntry:
    where = f"parameter {name!r}"
    if not isinstance(value, dict):
        raise MetadataError(f"{source}: {where} is not an object")
    dtype = value.get("dtype")
    _checked(dtypes.itemsize, dtype, source, where)
    shape = value.get("shape")
    if not isinstance(shape, list) or not all(is_count(n) for n in shape):
        raise MetadataError(f"{source}: {where} has an invalid shape {shape!r}")
    digest = value.get("hash")
    if not isinstance(digest, str) or not HASH_PATTERN.match(digest):
        raise MetadataError(f"{source}: {where} has an invalid hash {digest!r}")
    links = value.get("stored")
    if not isinstance(links, list) or not links:
        raise MetadataError(f"{source}: {where} has no stored objects")
    parsed = []
    for link in links:
        if not isinstance(link, dict) or not isinstance(link.get("update"), str):
            raise MetadataError(f"{source}: {where} has a malformed stored entry {link!r}")
        oid = _checked(check_oid, link.get("object"), source, where)
        size = link.get("size")
        if not is_count(size):
            raise MetadataError(f"{source}: {where} has an invalid object size {size!r}")
        parsed.append(StoredLink(link["update"], oid, size))
    return ParamEntry(cast(str, dtype), tuple(shape), digest, tuple(parsed))  # a known dtype name, checked above
