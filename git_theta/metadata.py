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
import sys
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from git_theta import dtypes, metaparse
from git_theta.errors import MetadataError
from git_theta.store import OID_PATTERN, check_oid

VERSION = "git-theta/1"
# Written when a link names a member of a pack object (an `offset` and a `length`): a git-theta that reads only
# version 1 would take the whole pack for the member, so it must refuse the file instead (docs/formats.md, 2.4).
PACKED_VERSION = "git-theta/2"
VERSIONS = (VERSION, PACKED_VERSION)
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
# \A and \Z, not ^ and $: `$` also matches before a final newline, so "<64 hex>\n" would pass.
HASH_PATTERN = re.compile(r"\A[0-9a-f]{64}\Z")


@dataclass(frozen=True, slots=True)
class StoredLink:
    """One stored step: an update of `update` type held in object `object` (of `size` bytes).

    In a pack object (git_theta/packs.py) the link's bytes are the member at `offset`, `length` bytes long; an
    unpacked link's bytes are the whole object. `object` and `size` always name the Git LFS object, which is what
    moves between stores.
    """

    update: str
    object: str
    size: int
    offset: int | None = None
    length: int | None = None

    def to_json(self) -> dict[str, Any]:
        if self.offset is None:
            return {"object": self.object, "size": self.size, "update": self.update}
        return {
            "length": self.length,
            "object": self.object,
            "offset": self.offset,
            "size": self.size,
            "update": self.update,
        }

    @property
    def packed(self) -> bool:
        return self.offset is not None

    @property
    def stored_bytes(self) -> int:
        """What this link itself takes in the store: its member's length in a pack, else its object's size."""
        return self.size if self.length is None else self.length

    @property
    def key(self) -> tuple[str, int]:
        """Identifies the link's bytes: two links with one key hold the same member."""
        return self.object, self.offset or 0


@dataclass(frozen=True, slots=True)
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
        return sum(link.stored_bytes for link in self.stored)

    def objects(self) -> list[str]:
        return [link.object for link in self.stored]


@dataclass
class Metadata:
    format: str
    file: dict[str, Any] = field(default_factory=dict)
    params: dict[str, ParamEntry] = field(default_factory=dict)

    def serialize(self) -> bytes:
        version = PACKED_VERSION if any(link.packed for e in self.params.values() for link in e.stored) else VERSION
        lines = [
            '{"version":' + _dump(version) + ",",
            '"format":' + _dump(self.format) + ",",
            '"file":' + _dump(self.file) + ",",
            '"params":{',
        ]
        head = ("\n".join(lines) + "\n").encode("utf-8")
        # Written by hand, not by json.dumps per entry (~4x slower, and a model may have 10^5 entries); the text
        # is what _dump would give, locked by tests/metadata_test.py. Encoded a slice at a time: one string of
        # all lines would be a third copy of the text in memory.
        names = sorted(self.params)
        text = None if _compiled_serialize is None else _compiled_serialize(head, names, self.params)
        if text is not None:
            return text  # the same bytes, written in C (None: an entry it does not write as below, e.g. a list shape)
        parts = [head]
        for start in range(0, len(names), SERIALIZE_SLICE):
            part = ",\n".join(
                _quote(name) + ":" + _entry_json(self.params[name]) for name in names[start : start + SERIALIZE_SLICE]
            )
            parts.append(part.encode("ascii") + (b",\n" if start + SERIALIZE_SLICE < len(names) else b"\n"))
        parts.append(b"}}\n")
        return b"".join(parts)

    def objects(self) -> set[str]:
        """Every object id this metadata needs (params and file-level blobs)."""
        # Not entry.objects(): a list per entry costs ~1 us, 10^5 times at each checkout's check for missing objects.
        oids = {link.object for entry in self.params.values() for link in entry.stored}
        oids.update(file_objects(self.file))
        return oids


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


SERIALIZE_SLICE = 4096
# json's own string encoder (its C version): the same escapes as _dump.
_quote: Any = json.encoder.encode_basestring_ascii


def _link_json(link: StoredLink) -> str:
    update = _quote(link.update)
    if link.offset is None:
        return f'{{"object":"{link.object}","size":{link.size},"update":{update}}}'
    return (
        f'{{"length":{link.length},"object":"{link.object}","offset":{link.offset},"size":{link.size},'
        f'"update":{update}}}'
    )


def _entry_json(entry: ParamEntry) -> str:
    """_dump(entry.to_json()): object ids and hashes are hex, shapes plain ints, so only names need escaping."""
    if not set(map(type, entry.shape)) <= _INT:
        return _dump(
            entry.to_json()
        )  # a plugin's slip (a bool or float dimension): written as json would, refused by parse
    shape = ",".join(map(str, entry.shape))
    links = ",".join(map(_link_json, entry.stored))
    return f'{{"dtype":{_quote(entry.dtype)},"hash":"{entry.hash}","shape":[{shape}],"stored":[{links}]}}'


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


def parse(data: bytes, source: str = "metadata", keep: bool = True) -> Metadata:
    """Parse and validate metadata; `source` names the file in errors. With `keep` False the parameters are
    validated and dropped (the result has none): a check that costs one slice's memory, not the entries'."""
    if len(data) > MAX_BYTES:
        raise MetadataError(f"{source}: metadata of {len(data)} bytes exceeds the {MAX_BYTES} byte limit")
    if not looks_like_metadata(data):
        raise MetadataError(f"{source}: not git-theta metadata")
    parsed = _parse_compiled(data, source, keep)
    if parsed is None:
        if json_depth(data, MAX_DEPTH) > MAX_DEPTH:
            raise MetadataError(f"{source}: metadata is nested more than {MAX_DEPTH} levels deep (the limit)")
        _check_link_count(data, source)
        parsed = _parse_canonical(data, source, keep)
    if parsed is None:
        parsed = _parse_any_layout(data, source)
    doc, params = parsed
    for oid in file_objects(doc["file"]):
        _checked(check_oid, oid, source, "file section")
    return Metadata(doc["format"], doc["file"], params)


def _check_head(doc: Any, source: str) -> None:
    """The members before params: a known version, a format name and a file section."""
    if doc.get("version") not in VERSIONS:
        raise MetadataError(
            f"{source}: unsupported metadata version {_short(doc.get('version'))}; this git-theta reads "
            f"{' and '.join(VERSIONS)} (a newer version needs a newer git-theta)"
        )
    if not isinstance(doc.get("format"), str) or not doc["format"] or not isinstance(doc.get("file"), dict):
        raise MetadataError(f"{source}: metadata lacks a format or file section")


def _parse_any_layout(data: bytes, source: str) -> tuple[dict[str, Any], dict[str, ParamEntry]]:
    """Any JSON text with the members of section 2.2 (hand-written, re-indented): decoded whole."""
    try:
        doc = json.loads(data, object_pairs_hook=unique_keys)
    except ValueError as error:
        raise MetadataError(f"{source}: metadata is not valid JSON: {error}") from None
    if not isinstance(doc, dict):
        raise MetadataError(f"{source}: metadata is not a JSON object")
    _check_head(doc, source)
    if not isinstance(doc.get("params"), dict):
        raise MetadataError(f"{source}: metadata lacks a params section")
    packed_ok = doc["version"] == PACKED_VERSION
    return doc, {name: _parse_entry(name, value, source, packed_ok) for name, value in doc["params"].items()}


# The compiled parser and writer of parameter lines (git_theta/metaparse.py), or None: then the Python code does
# all the work.
# It reads hashes and object ids as 64 lowercase hex digits, so it is off if either pattern says otherwise.
_compiled = (
    metaparse.bind(ParamEntry, StoredLink, dtypes.ITEMSIZE, _quote, (MAX_LINKS, MAX_NDIM, MAX_ELEMENTS))
    if HASH_PATTERN.pattern == OID_PATTERN.pattern == r"\A[0-9a-f]{64}\Z"
    else None
)
_compiled_params = None if _compiled is None else _compiled.parse
_compiled_serialize = None if _compiled is None else _compiled.serialize
_PARAMS_LINE = b'"params":{\n'
_END = b"\n}}\n"
# Parameter lines are decoded this many bytes at a time: the decoded JSON of a whole 10^5-entry file would hold
# ~1 KB of Python objects per entry at once; a slice's objects are dropped once its entries are built.
SLICE_BYTES = 1 << 20


def _key_tokens(text: bytes) -> int:
    """How many object keys JSON text holds, counted from its bytes; -1 when the count could be wrong.

    Every key ends in `":`; inside a string those bytes need an escaped quote, `\\":`, so the difference counts
    the keys. A string ending in an escaped backslash would also end in `\\":`: with no `\\\\` in the text there
    is none, and with no whitespace after a quote every key is written `"key":` (else -1). Checked against the
    keys json.loads kept (_key_count), this catches a repeated key at a fraction of the cost of an
    object_pairs_hook (json.loads keeps only the last of two equal keys).
    """
    if b"\\\\" in text or b'" ' in text or b'"\t' in text or b'"\r' in text:
        return -1
    return text.count(b'":') - text.count(b'\\":')


def _key_count(entries: dict[str, Any]) -> int:
    """The keys of decoded parameter entries, down to their links (-1 for anything else: the slow path decides)."""
    count = len(entries)
    for entry in entries.values():
        if type(entry) is not dict:
            return -1
        count += len(entry)
        for value in entry.values():
            if type(value) is dict:
                return -1
            if type(value) is list:
                for item in value:
                    if type(item) is dict:
                        count += len(item)
                        if any(type(v) in (dict, list) for v in item.values()):
                            return -1
                    elif type(item) is list:
                        return -1
    return count


def _parse_canonical(
    data: bytes, source: str, keep: bool = True
) -> tuple[dict[str, Any], dict[str, ParamEntry]] | None:
    """Metadata in the layout `serialize` writes (one parameter per line), decoded a slice of lines at a time.

    None when the text is laid out otherwise or is not valid JSON: the whole-text decoder then gives the error.
    A JSON string holds no raw newline, so every newline ends a line, and a parameter line is a JSON object's
    members once its trailing comma is cut: each slice of lines decodes, as `{slice}`, to the same members the
    whole text holds.
    """
    cut = 0
    for _ in range(4):
        cut = data.find(b"\n", cut) + 1
        if cut == 0:
            return None
    head = data[:cut]
    if not head.endswith(b"\n" + _PARAMS_LINE) or not data.endswith(_END[1:]):
        return None
    try:
        doc = json.loads(head[: -len(_PARAMS_LINE)].rstrip(b",\n") + b"}", object_pairs_hook=unique_keys)
    except ValueError:
        return None
    if not isinstance(doc, dict) or "params" in doc:
        return None
    _check_head(doc, source)
    packed_ok = doc["version"] == PACKED_VERSION
    params: dict[str, ParamEntry] = {}
    names: set[str] = set()
    shapes: dict[tuple[int, ...], tuple[int, ...]] = {}
    if len(data) == cut + len(_END) - 1:
        return doc, params  # `"params":{` then `}}`: no parameters
    if not data.endswith(_END):
        return None
    body_end = len(data) - len(_END)
    start = cut
    while start < body_end:
        stop = data.find(b"\n", min(start + SLICE_BYTES, body_end))
        stop = body_end if stop < 0 or stop > body_end else stop
        piece = data[start:stop]
        if stop < body_end:
            if not piece.endswith(b","):
                return None
            piece = piece[:-1]
        try:
            entries = json.loads(b"{" + piece + b"}")
            if _key_tokens(piece) != _key_count(entries):
                entries = json.loads(b"{" + piece + b"}", object_pairs_hook=unique_keys)  # names a repeated key
        except ValueError:
            return None
        for name, value in entries.items():
            if name in names:
                return None  # a name on two slices: the whole-text decoder names it
            names.add(name)
            entry = _parse_usual_entry(name, value, source, packed_ok, shapes)
            if keep:
                params[name] = entry
        start = stop + 1
    return doc, params


def _parse_compiled(data: bytes, source: str, keep: bool) -> tuple[dict[str, Any], dict[str, ParamEntry]] | None:
    """_parse_canonical by the compiled parser, or None when it is off or the text is not exactly what serialize
    writes: then the Python path parses the text and names any error, the reference this gives the same results as.

    The parameter lines it accepts nest 5 levels deep and hold no bracket in a string, so the members before them
    decide json_depth: only their few bytes are scanned. The checks run in parse's order, raising what it would.
    """
    if _compiled_params is None:
        return None
    cut = 0
    for _ in range(4):
        cut = data.find(b"\n", cut) + 1
        if cut == 0:
            return None
    members_end = cut - len(_PARAMS_LINE) - 2
    if members_end < 0 or not data.startswith(b",\n" + _PARAMS_LINE, members_end) or not data.endswith(_END):
        return None
    head = data[:members_end] + b"}"
    if json_depth(head, MAX_DEPTH) > MAX_DEPTH:
        return None
    try:
        doc = json.loads(head, object_pairs_hook=unique_keys)
    except ValueError:
        return None
    if not isinstance(doc, dict) or "params" in doc:
        return None
    body = memoryview(data)[cut : len(data) - len(_END)]
    params = _compiled_params(body, doc.get("version") == PACKED_VERSION, {}, keep)
    if params is None:
        return None
    _check_link_count(data, source)
    _check_head(doc, source)
    return doc, params


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


def _parse_usual_entry(
    name: str, value: Any, source: str, packed_ok: bool, shapes: dict[tuple[int, ...], tuple[int, ...]]
) -> ParamEntry:
    """_parse_entry of an entry shaped as git-theta writes it, with a shape seen before: the same checks, inline
    (~40% faster, and a 10^5-entry file spends most of its parse here). Anything else goes to _parse_entry."""
    try:
        dtype, shape, digest, links = value["dtype"], value["shape"], value["hash"], value["stored"]
        known = shapes.get(tuple(shape)) if type(shape) is list and set(map(type, shape)) <= _INT else None
    except (KeyError, TypeError):
        return _parse_entry(name, value, source, packed_ok, shapes)
    if (
        known is None
        or type(dtype) is not str
        or dtype not in dtypes.ITEMSIZE
        or type(digest) is not str
        or HASH_PATTERN.match(digest) is None
        or type(links) is not list
        or not 0 < len(links) <= MAX_LINKS
    ):
        return _parse_entry(name, value, source, packed_ok, shapes)
    parsed = []
    for link in links:
        if type(link) is not dict:
            return _parse_entry(name, value, source, packed_ok, shapes)
        update, oid, size = link.get("update"), link.get("object"), link.get("size")
        offset, length = link.get("offset"), link.get("length")
        if (
            type(update) is not str
            or type(oid) is not str
            or OID_PATTERN.match(oid) is None
            or type(size) is not int
            or size < 0
        ):
            return _parse_entry(name, value, source, packed_ok, shapes)
        if "offset" not in link and "length" not in link:
            parsed.append(StoredLink(sys.intern(update), sys.intern(oid), size))
        elif packed_ok and type(offset) is int and type(length) is int and 0 <= offset and 0 < length <= size - offset:
            parsed.append(StoredLink(sys.intern(update), sys.intern(oid), size, offset, length))
        else:
            return _parse_entry(name, value, source, packed_ok, shapes)
    return ParamEntry(sys.intern(dtype), known, digest, tuple(parsed))


_INT = {int}


def _parse_entry(
    name: str,
    value: Any,
    source: str,
    packed_ok: bool = False,
    shapes: dict[tuple[int, ...], tuple[int, ...]] | None = None,
) -> ParamEntry:
    if not isinstance(value, dict):
        raise MetadataError(f"{source}: parameter {name!r} is not an object")
    dtype = value.get("dtype")
    if not isinstance(dtype, str) or dtype not in dtypes.ITEMSIZE:
        _checked(dtypes.itemsize, dtype, source, f"parameter {name!r}")  # raises, naming the dtype
    shape = value.get("shape")
    if type(shape) is not list or len(shape) > MAX_NDIM or not all(type(n) is int and n >= 0 for n in shape):
        raise MetadataError(
            f"{source}: parameter {name!r} has an invalid shape {_short(shape)} (at most {MAX_NDIM} non-negative "
            "integers)"
        )
    if math.prod(shape) > MAX_ELEMENTS:
        raise MetadataError(f"{source}: parameter {name!r} has a shape of more than {MAX_ELEMENTS} elements")
    digest = value.get("hash")
    if not isinstance(digest, str) or not HASH_PATTERN.match(digest):
        raise MetadataError(f"{source}: parameter {name!r} has an invalid hash {_short(digest)}")
    links = value.get("stored")
    if not isinstance(links, list) or not links:
        raise MetadataError(f"{source}: parameter {name!r} has no stored objects")
    if len(links) > MAX_LINKS:
        raise MetadataError(
            f"{source}: parameter {name!r} has a chain of {len(links)} stored links, more than the limit of {MAX_LINKS}"
        )
    # Shapes and dtype names repeat across a model's entries: one shared object each (a 10^5-entry file otherwise
    # holds 10^5 copies of a few).
    return ParamEntry(
        sys.intern(str(dtype)),
        tuple(shape) if shapes is None else shapes.setdefault(tuple(shape), tuple(shape)),
        digest,
        tuple(_parse_link(link, source, name, packed_ok) for link in links),
    )


def _parse_link(link: Any, source: str, name: str, packed_ok: bool) -> StoredLink:
    where = f"parameter {name!r}"
    if not isinstance(link, dict) or not isinstance(link.get("update"), str):
        raise MetadataError(f"{source}: {where} has a malformed stored entry {_short(link)}")
    # Interned: the members of one pack share its id, and a 10^5-entry file would hold 10^5 copies of a few.
    oid = sys.intern(_checked(check_oid, link.get("object"), source, where))
    size = link.get("size")
    if not is_count(size):
        raise MetadataError(f"{source}: {where} has an invalid object size {_short(size)}")
    update = sys.intern(str(link["update"]))
    if "offset" not in link and "length" not in link:
        return StoredLink(update, oid, size)
    if not packed_ok:
        raise MetadataError(
            f"{source}: {where} names a pack member (offset, length), which version {VERSION} metadata cannot hold"
        )
    offset, length = link.get("offset"), link.get("length")
    if not is_count(offset) or not is_count(length) or length == 0 or offset + length > size:
        raise MetadataError(
            f"{source}: {where} has a pack member outside its object: offset {_short(offset)}, length "
            f"{_short(length)}, object size {size}"
        )
    return StoredLink(update, oid, size, offset, length)
