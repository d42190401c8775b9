"""Metadata read line by line: only the lines one version lacks are parsed, and the views come out the same."""

from __future__ import annotations

import pytest

from git_theta import metadata
from git_theta.display import changes, lines
from git_theta.errors import MetadataError
from git_theta.metadata import Metadata, ParamEntry, StoredLink

DENSE = StoredLink("dense", "ab" * 32, 100)


def version(**hashes: str) -> Metadata:
    params = {name: ParamEntry("F32", (4,), digit * 64, (DENSE,)) for name, digit in hashes.items()}
    return Metadata("safetensors", {"header": {"object": "cd" * 32, "size": 10}}, params)


def test_split_cuts_head_and_one_line_per_parameter() -> None:
    meta = version(a="1", b="2")
    layout = lines.split(meta.serialize())
    assert layout is not None and len(layout.params) == 2
    assert layout.document(layout.params) == meta.serialize()
    assert lines.parse_lines(layout, layout.params[1:], "m").params.keys() == {"b"}
    assert lines.split(version().serialize()) == lines.Layout(lines.split(meta.serialize()).head, [])  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "data",
    [b'{"version":"git-theta/1","format":"x","file":{},"params":{}}', b"not metadata", b""],
)
def test_split_of_other_layouts_is_none(data: bytes) -> None:
    assert lines.split(data) is None


def test_changed_lines_parse_only_what_differs() -> None:
    old, new = version(a="1", b="2", c="3", d="4"), version(a="1", b="9", c="3", e="5")
    found = lines.changed_lines(old.serialize(), new.serialize(), "old", "new")
    assert found is not None and found.old is not None and found.new is not None
    assert set(found.old.params) == {"b", "d"} and set(found.new.params) == {"b", "e"}
    assert (found.before, found.after, found.names) == (4, 4, {"a", "b", "c", "d", "e"})
    assert found.known == {link.key for entry in old.params.values() for link in entry.stored} | {
        (oid, 0) for oid in metadata.file_objects(old.file)
    }
    full = changes.compare(old, new)
    assert changes.compare(found.old, found.new, known=found.known) == full
    assert [c.status for c in full] == [changes.MODIFIED, changes.REMOVED, changes.ADDED]


def test_changed_lines_of_an_added_file() -> None:
    found = lines.changed_lines(None, version(a="1").serialize(), "old", "new")
    assert found is not None and found.old is None and found.known == set()
    assert [c.status for c in changes.compare(None, found.new)] == [changes.ADDED]


def test_a_bad_changed_line_names_its_side() -> None:
    bad = (
        version(a="1", b="2")
        .serialize()
        .replace(b'"dtype":"F32","hash":"' + b"2" * 64, b'"dtype":"F99","hash":"' + b"2" * 64)
    )
    with pytest.raises(MetadataError, match="^new: parameter 'b'"):
        lines.changed_lines(version(a="1", b="3").serialize(), bad, "old", "new")


def test_a_name_twice_is_refused() -> None:
    data = version(a="1", b="2").serialize()
    split = data.split(b"\n")
    twice = b"\n".join([*split[:4], split[4], split[4], *split[5:]])
    with pytest.raises(MetadataError, match="appears twice"):
        lines.changed_lines(data, twice, "old", "new")


def test_names_decode_escapes() -> None:
    meta = Metadata(
        "x", {}, {'q"\\': ParamEntry("F32", (1,), "1" * 64, (DENSE,)), "ü": ParamEntry("F32", (1,), "2" * 64, (DENSE,))}
    )
    layout = lines.split(meta.serialize())
    assert layout is not None and lines.names(layout.params) == sorted(metadata.parse(meta.serialize()).params)


def test_link_keys_name_pack_members_by_offset() -> None:
    links = (StoredLink("dense", "a" * 64, 500, 0, 100), StoredLink("xor", "a" * 64, 500, 100, 50))
    meta = Metadata(
        "safetensors", {"header": {"object": "b" * 64, "size": 9}}, {"w": ParamEntry("F32", (2,), "1" * 64, links)}
    )
    assert lines.link_keys(meta.serialize()) == {("a" * 64, 0), ("a" * 64, 100), ("b" * 64, 0)}
