"""Property-based fuzzing of git_theta/metadata.py parse (committed metadata is untrusted); budget in fuzz_support."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from fuzz_support import FUZZ, bounded_parse, mutated
from hypothesis import given
from hypothesis import strategies as st

from git_theta import dtypes, metadata
from git_theta.errors import MetadataError, ThetaError
from git_theta.metadata import Metadata, ParamEntry, StoredLink

hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
names = st.text(min_size=1, max_size=20)
json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
links = st.builds(
    StoredLink, update=st.sampled_from(["dense", "sparse", "low-rank", "ia3"]), object=hex64, size=st.integers(0, 2**40)
)
entries = st.builds(
    ParamEntry,
    dtype=st.sampled_from(sorted(dtypes.ITEMSIZE)),
    shape=st.lists(st.integers(0, 2**20), max_size=4)
    .map(tuple)
    .filter(lambda s: math.prod(s) <= metadata.MAX_ELEMENTS),
    hash=hex64,
    stored=st.lists(links, min_size=1, max_size=3).map(tuple),
)
file_sections = st.dictionaries(
    st.text(max_size=10), json_values | st.builds(lambda oid: {"object": oid, "size": 1}, hex64), max_size=4
)
valid_metadata = st.builds(
    Metadata, format=names, file=file_sections, params=st.dictionaries(names, entries, max_size=5)
)


def _parse(data: bytes) -> Metadata | ThetaError:
    outcome = bounded_parse(lambda: metadata.parse(data, source="model.safetensors"), len(data))
    if isinstance(outcome, ThetaError):
        assert isinstance(outcome, MetadataError), f"{type(outcome).__name__} for metadata: {outcome}"
        assert "model.safetensors" in str(outcome), f"the error does not name the file: {outcome}"
        assert "\n" not in str(outcome), f"the error is not one line: {outcome!r}"
    return outcome


@FUZZ
@given(valid_metadata)
def test_valid_metadata_round_trips(meta: Metadata) -> None:
    data = meta.serialize()
    parsed = _parse(data)
    assert isinstance(parsed, Metadata), parsed
    assert parsed.serialize() == data


@FUZZ
@given(st.binary(max_size=2000))
def test_any_bytes_parse_or_metadata_error(data: bytes) -> None:
    _parse(data)


@FUZZ
@given(st.binary(max_size=2000))
def test_any_bytes_after_the_prefix_parse_or_metadata_error(rest: bytes) -> None:
    _parse(metadata.PREFIX + rest)


@FUZZ
@given(st.data())
def test_mutated_metadata_parses_or_metadata_error(data: st.DataObject) -> None:
    _parse(data.draw(mutated(data.draw(valid_metadata).serialize())))


@FUZZ
@given(st.data())
def test_any_json_in_any_field_parses_or_metadata_error(data: st.DataObject) -> None:
    """Structured: one field of a valid document (top level, an entry, a link) replaced by any JSON value."""
    meta = data.draw(valid_metadata.filter(lambda m: bool(m.params)))
    doc: dict[str, Any] = json.loads(meta.serialize())
    entry = doc["params"][sorted(doc["params"])[0]]
    target = data.draw(st.sampled_from([doc, entry, entry["stored"][0]]))
    target[data.draw(st.sampled_from(sorted(target)))] = data.draw(json_values)
    _parse(json.dumps(doc, separators=(",", ":")).encode())


@FUZZ
@given(valid_metadata.filter(lambda m: bool(m.params)), st.integers(0, 2))
def test_a_duplicated_key_is_refused(meta: Metadata, where: int) -> None:
    """Two entries for one parameter (or two params sections, two formats) are an error, not last-wins."""
    lines = meta.serialize().decode().split("\n")
    if where == 0:
        param = next(i for i, line in enumerate(lines) if line.startswith('"params":{')) + 1
        line = lines[param] if lines[param].endswith(",") else lines[param] + ","
        lines.insert(param, line)
    elif where == 1:
        lines.insert(1, lines[1])  # "format":... twice
    else:
        lines.insert(1, '"params":{},')
    assert isinstance(_parse("\n".join(lines).encode()), MetadataError)


@pytest.mark.parametrize("depth", [100, 1_000, 10_000, 100_000])
@pytest.mark.parametrize("bracket", ["[]", "{}"])
@pytest.mark.parametrize("where", ["file", "param", "link"])
def test_deep_nesting_is_metadata_error(depth: int, bracket: str, where: str) -> None:
    """Nesting a few hundred KB deep (a collaborator's commit) is refused with MetadataError: no RecursionError."""
    opening, closing = bracket[0], bracket[1]
    if opening == "{":
        opening = '{"a":'
    nested = opening * depth + "1" + closing * depth
    oid = "0" * 64
    entry = f'{{"dtype":"F32","hash":"{oid}","shape":[1],"stored":[{{"object":"{oid}","size":1,"update":"dense"}}]}}'
    if where == "file":
        doc = f'{{"version":"git-theta/1","format":"safetensors","file":{{"x":{nested}}},"params":{{}}}}'
    elif where == "param":
        doc = f'{{"version":"git-theta/1","format":"safetensors","file":{{}},"params":{{"w":{entry},"v":{nested}}}}}'
    else:
        doc = (
            '{"version":"git-theta/1","format":"safetensors","file":{},"params":{"w":'
            + entry.replace('"update":"dense"', f'"update":"dense","x":{nested}')
            + "}}"
        )
    _parse(doc.encode())


@FUZZ
@given(st.sampled_from(["shape", "size"]), st.integers(-(2**80), 2**80) | st.floats() | st.booleans())
def test_any_declared_number_parses_or_metadata_error(field: str, value: Any) -> None:
    """Sizes and dims of any magnitude, sign or type: a later reader must never meet one parse let through wrong."""
    oid = "0" * 64
    shape = [value] if field == "shape" else [1]
    size = value if field == "size" else 1
    entry = {"dtype": "F32", "hash": oid, "shape": shape, "stored": [{"object": oid, "size": size, "update": "dense"}]}
    doc = {"version": "git-theta/1", "format": "safetensors", "file": {}, "params": {"w": entry}}
    parsed = _parse(json.dumps(doc, separators=(",", ":")).encode())
    if isinstance(parsed, Metadata):
        assert metadata.is_count(value), f"{field}={value!r} was accepted"
