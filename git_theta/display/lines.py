"""Metadata read line by line, so that showing history costs what changed, not what the model holds.

Metadata is laid out one parameter per line, sorted by name (metadata.py), and two versions of a model share
most of their lines: an identical line is an identical parameter entry. So a view parses only the lines one
side has and the other lacks (changed_lines), and the filter process, which renders every version `git log -p`
or `git diff A B` shows, renders a line it has seen in an earlier version from memory (view.py).

A line is otherwise opaque here: every line that is parsed goes through metadata.parse (validated, as any
metadata), inside a document made of the blob's own head lines. A blob not laid out canonically gets None from
split(), and its caller parses it whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from git_theta import metadata
from git_theta.metadata import Metadata

PARAMS_OPEN = b'"params":{'
CLOSE = b"}}"
HEAD_LINES = 8  # version, format, file and any top-level key a later format version adds before the params
# A parameter line's name, the JSON string before its entry (escapes included; decoded by metadata.parse).
_NAME = re.compile(rb'"((?:[^"\\\n]|\\.)*)":\{')


@dataclass(frozen=True)
class Layout:
    """A canonical blob cut into its head (through the params line) and one line per parameter, commas cut off."""

    head: bytes
    params: list[bytes]

    def document(self, params: list[bytes]) -> bytes:
        """Metadata with this head and these parameter lines: what metadata.parse validates."""
        body = b",\n".join(params)
        return self.head + b"\n" + body + (b"\n" if params else b"") + CLOSE + b"\n"


def bounds(data: bytes) -> tuple[bytes, int, int] | None:
    """The head of a canonical metadata blob (through the params line) and where its parameter lines are,
    data[start:stop]; None when it is laid out any other way.

    Canonical JSON holds no raw newline, so the params line and the closing line are found by byte search.
    """
    if not metadata.looks_like_metadata(data[: len(metadata.PREFIX)]):
        return None
    opening = b"\n" + PARAMS_OPEN + b"\n"
    at = data.find(opening)
    if at < 0 or data.count(b"\n", 0, at) >= HEAD_LINES:
        return None
    head, start = data[: at + len(opening) - 1], at + len(opening)
    if data[start:] == CLOSE + b"\n":
        return head, start, start
    if len(data) - start <= len(CLOSE) + 2 or not data.endswith(b"\n" + CLOSE + b"\n"):
        return None  # (an empty line before the close is not canonical either: metadata.parse decides)
    return head, start, len(data) - len(CLOSE) - 2


def split(data: bytes) -> Layout | None:
    """The canonical layout of a metadata blob, or None when it is laid out any other way: `bounds`, and the
    ",\\n" between parameters found by byte search (no copy of each line)."""
    found = bounds(data)
    if found is None:
        return None
    head, start, stop = found
    if start == stop:
        return Layout(head, [])
    block = data[start:stop]
    params = block.split(b",\n")
    if block.count(b"\n") != len(params) - 1 or params[-1].endswith(b","):
        return None
    return Layout(head, params)


def parse_lines(layout: Layout, params: list[bytes], source: str) -> Metadata:
    """The blob's head with only these parameter lines, parsed and validated (MetadataError names `source`)."""
    return metadata.parse(layout.document(params), source)


def names(params: list[bytes]) -> list[str]:
    """The names of these parameter lines, in order."""
    found = []
    for line in params:
        raw = line[1 : line.find(b'":{')]
        if b"\\" in raw:  # canonical JSON escapes only quotes, backslashes and control characters: rare
            match = _NAME.match(line)
            found.append(json.loads(b'"' + match.group(1) + b'"') if match else line.decode(errors="replace"))
        else:
            found.append(raw.decode("utf-8", errors="replace"))
    return found


_OFFSET = b'","offset":'


def link_keys(data: bytes) -> set[tuple[str, int]]:
    """(object id, offset) of every link a metadata blob holds, as StoredLink.key gives them (offset 0 when
    unpacked); file-section objects come along as (id, 0). A split is 10x faster than a regex over 25 MB; in a
    pack link the offset follows the object id (members are written in sorted order)."""
    keys = set()
    for piece in data.split(b'"object":"')[1:]:
        offset = 0
        if piece.startswith(_OFFSET, 64):
            end = piece.find(b",", 64 + len(_OFFSET))
            digits = piece[64 + len(_OFFSET) : end]
            offset = int(digits) if digits.isdigit() else -1  # not a link git-theta wrote: matches nothing
        keys.add((piece[:64].decode("ascii", errors="replace"), offset))
    return keys


@dataclass(frozen=True)
class Changed:
    """Two versions reduced to the parameters that differ, and what the views count of the rest.

    Lines both versions hold are never parsed: they are the same entry on both sides, so only their names are
    read (for the group counts and for opaque_reason, which looks at sibling names).
    """

    old: Metadata | None  # the lines only the old side holds, parsed (None: no such version)
    new: Metadata | None  # the lines only the new side holds, parsed
    before: int  # parameters of each side
    after: int
    names: set[str]  # every name on either side
    known: set[tuple[str, int]]  # every link the old version holds, by key (what the new one did not store again)


def changed_lines(old: bytes | None, new: bytes | None, old_source: str, new_source: str) -> Changed | None:
    """Both versions with their common lines left out, unparsed; None when either is not laid out canonically."""
    a = split(old) if old is not None else None
    b = split(new) if new is not None else None
    if (old is not None and a is None) or (new is not None and b is None):
        return None
    old_lines, new_lines = a.params if a else [], b.params if b else []
    common = set(old_lines) & set(new_lines)
    old_meta = parse_lines(a, [x for x in old_lines if x not in common], old_source) if a else None
    new_meta = parse_lines(b, [x for x in new_lines if x not in common], new_source) if b else None
    every: set[str] = set()
    # A line both sides hold has one name: read once, from the old side (~2 us a line, 10^5 lines a side).
    old_names = names(old_lines)
    name_of = dict(zip(old_lines, old_names))
    new_only = [line for line in new_lines if line not in common]
    new_names = iter(names(new_only))
    side_names = (old_names, [name_of[line] if line in common else next(new_names) for line in new_lines])
    for data, params, source, found_names in zip(
        (old, new), (old_lines, new_lines), (old_source, new_source), side_names
    ):
        found = set(found_names)
        if len(found) != len(params) and data is not None:
            metadata.parse(data, source)  # a name twice: the whole parse says which, naming the file
        every |= found
    known = link_keys(old) if old is not None else set()
    return Changed(old_meta, new_meta, len(old_lines), len(new_lines), every, known)
