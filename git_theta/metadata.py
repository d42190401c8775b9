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
import math
import re
from dataclasses import dataclass, field
from typing import Any, TypeGuard, cast

from git_theta import dtypes
from git_theta.errors import MetadataError
from git_theta.store import check_oid

VERSION = "git-theta/1"
PREFIX = b'{"version":"git-theta/'
MAX_BYTES = 256 << 20
# Deepest nesting of JSON arrays/objects accepted; real metadata nests at most 6 levels. json.loads recurses once per
# level, so a committed blob nested 100,000 deep would raise RecursionError in every command that reads it.
MAX_DEPTH = 64
# Longest chain of stored links per parameter: writers stop at 8 (update_engine/auto.py MAX_CHAIN_DEPTH); a reader
# applies each link in turn, so an unbounded list would cost time and memory in proportion to what a blob
# declares.
MAX_LINKS = 256
# Most dimensions per shape, and most elements per parameter (2**62: numpy and byte offsets fit in 64-bit ints).
MAX_NDIM = 64
MAX_ELEMENTS = 1 << 62
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


# A JSON string (escapes included): brackets inside strings do not nest.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_QUOTES_AND_BRACKETS = bytes(range(256)).translate(None, b'"[]{}')
_AS_PARENS = bytes.maketrans(b"[{]}", b"(())")


def json_depth(data: bytes | memoryview, limit: int) -> int:
    """How deep the arrays and objects of JSON text nest, up to `limit` + 1 (meaning: deeper than `limit`).

    A scan of the bytes, without recursion or parsing: strings are dropped, brackets kept, and each pass removes
    every innermost pair, so the number of passes until nothing is left is the depth (a few C-speed passes over
    a short string). Exact for valid JSON up to the limit; unbalanced brackets left over count as depth.
    """
    data = bytes(data)
    if b'\\"' in data:
        brackets = _JSON_STRING.sub(b"", data).translate(None, _BRACKETS)
    else:
        # No escaped quote, so every quote delimits a string: keep only quotes and brackets, drop the (many)
        # bracket-free strings, then what lies between the remaining quote pairs. Two adjacent quotes are either
        # one empty-of-brackets string or a string's end and the next one's start with no bracket in between,
        # so dropping them never drops a bracket outside strings. C-speed, unlike the regex.
        kept = data.translate(None, _QUOTES_AND_BRACKETS).replace(b'""', b"")
        brackets = b"".join(kept.split(b'"')[0::2])
    brackets = brackets.translate(_AS_PARENS)
    depth = 0
    while brackets and depth <= limit:
        shorter = brackets.replace(b"()", b"")
        if len(shorter) == len(brackets):
            return min(depth + brackets.count(b"("), limit + 1)  # unbalanced (invalid JSON): its opens still nest
        brackets = shorter
        depth += 1
    return min(depth, limit + 1) if not brackets else limit + 1


def loads_bounded(data: bytes | memoryview, max_depth: int, **options: Any) -> Any:
    """json.loads, refusing text nested deeper than `max_depth` before decoding it (ValueError)."""
    if json_depth(data, max_depth) > max_depth:
        raise ValueError(f"nested more than {max_depth} levels deep (the limit)")
    return json.loads(bytes(data), **options)


def looks_like_metadata(head: bytes) -> bool:
    return head.startswith(PREFIX)


def parse(data: bytes, source: str = "metadata") -> Metadata:
    """Parse and validate metadata; `source` names the file in errors."""
    if len(data) > MAX_BYTES:
        raise MetadataError(f"{source}: metadata of {len(data)} bytes exceeds the {MAX_BYTES} byte limit")
    if not looks_like_metadata(data):
        raise MetadataError(f"{source}: not git-theta metadata")
    if json_depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise MetadataError(f"{source}: metadata is nested more than {MAX_DEPTH} levels deep (the limit)")
    _check_link_count(data, source)
    try:
        doc = json.loads(data, object_pairs_hook=unique_keys)
    except ValueError as error:
        raise MetadataError(f"{source}: metadata is not valid JSON: {error}") from None
    if doc.get("version") != VERSION:
        raise MetadataError(
            f"{source}: unsupported metadata version {_short(doc.get('version'))}; this git-theta reads {VERSION} "
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


def _check_link_count(data: bytes, source: str) -> None:
    """Refuse more links than MAX_LINKS per entry allows before decoding: a chain of a million links costs ~8x its
    bytes in Python objects before the per-entry check could see it. The bytes `"update"` and `"stored"` occur
    only as JSON tokens (inside a string a quote is escaped), so counting them bounds the links and entries."""
    links, entries = data.count(b'"update"'), data.count(b'"stored"')
    if links > MAX_LINKS * max(entries, 1):
        raise MetadataError(
            f"{source}: {links} stored links for {entries} parameter(s), more than the limit of {MAX_LINKS} a chain"
        )


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object (an `object_pairs_hook`); a repeated key (two entries for one parameter, two tensors of one
    name) is an error, not last-wins. The error is a ValueError, as json's own, for the caller to name the file."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"key {_short(key)} appears twice")
        found[key] = value
    return found


def is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _checked(check: Any, value: Any, source: str, where: str) -> Any:
    try:
        return check(value)
    except Exception as error:
        raise MetadataError(f"{source}: {where}: {_cut(str(error))}") from None


def _short(value: Any, limit: int = 80) -> str:
    """repr of a value for an error line, cut short: a hostile value may be megabytes long."""
    return _cut(repr(value), limit)


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_entry(name: str, value: Any, source: str) -> ParamEntry:
    where = f"parameter {name!r}"
    if not isinstance(value, dict):
        raise MetadataError(f"{source}: {where} is not an object")
    dtype = value.get("dtype")
    _checked(dtypes.itemsize, dtype, source, where)
    shape = value.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(is_count(n) for n in shape):
        raise MetadataError(
            f"{source}: {where} has an invalid shape {_short(shape)} (at most {MAX_NDIM} non-negative integers)"
        )
    if math.prod(shape) > MAX_ELEMENTS:
        raise MetadataError(f"{source}: {where} has a shape of more than {MAX_ELEMENTS} elements")
    digest = value.get("hash")
    if not isinstance(digest, str) or not HASH_PATTERN.match(digest):
        raise MetadataError(f"{source}: {where} has an invalid hash {_short(digest)}")
    links = value.get("stored")
    if not isinstance(links, list) or not links:
        raise MetadataError(f"{source}: {where} has no stored objects")
    if len(links) > MAX_LINKS:
        raise MetadataError(
            f"{source}: {where} has a chain of {len(links)} stored links, more than the limit of {MAX_LINKS}"
        )
    parsed = []
    for link in links:
        if not isinstance(link, dict) or not isinstance(link.get("update"), str):
            raise MetadataError(f"{source}: {where} has a malformed stored entry {_short(link)}")
        oid = _checked(check_oid, link.get("object"), source, where)
        size = link.get("size")
        if not is_count(size):
            raise MetadataError(f"{source}: {where} has an invalid object size {_short(size)}")
        parsed.append(StoredLink(link["update"], oid, size))
    return ParamEntry(cast(str, dtype), tuple(shape), digest, tuple(parsed))  # a known dtype name, checked above
