"""The safetensors reader through real `git add`: a header git-theta cannot check out is refused at add,
and nothing a header declares is allocated before the file has delivered it."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import git
from hostile_support import RepoState, assert_refused, run_bounded


def safetensors_bytes(header: dict[str, Any], data: bytes = b"") -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def _refused_add(repo: Path, content: bytes, *, max_rss_mb: float = 300, max_seconds: float = 30) -> str:
    (repo / "model.safetensors").write_bytes(content)
    state = RepoState.capture(repo)
    result = run_bounded(["git", "add", "model.safetensors"], cwd=repo, max_rss_mb=max_rss_mb, max_seconds=max_seconds)
    line = assert_refused(result, "model.safetensors")
    state.assert_unchanged(repo)
    return line


def test_a_bool_dimension_is_refused_at_add_not_at_checkout(repo: Path) -> None:
    # `true` is an int to Python: the reader took [true, 4] as [1, 4] and committed metadata no checkout can read.
    content = safetensors_bytes({"w": {"dtype": "F32", "shape": [True, 4], "data_offsets": [0, 16]}}, bytes(16))
    line = _refused_add(repo, content)
    assert "invalid shape [True, 4]" in line


def test_float_and_negative_dimensions_and_too_many_dimensions_are_refused(repo: Path) -> None:
    for shape, nbytes in (([2.0, 2], 16), ([-1, -4], 16), ([1] * 65, 4)):
        content = safetensors_bytes({"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, nbytes]}}, bytes(nbytes))
        assert "invalid shape" in _refused_add(repo, content)


def test_a_declared_2_gib_tensor_in_a_few_kb_file_is_refused_without_allocating_it(repo: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [1 << 29], "data_offsets": [0, 1 << 31]}}
    line = _refused_add(repo, safetensors_bytes(header, bytes(4000)), max_rss_mb=300, max_seconds=20)
    assert "file ends early" in line and "'w'" in line


def test_a_shape_whose_size_overflows_64_bits_is_refused(repo: Path) -> None:
    big = (1 << 62) + 1
    header = {"w": {"dtype": "F32", "shape": [big, 8], "data_offsets": [0, big * 32]}}
    assert "exceeds" in _refused_add(repo, safetensors_bytes(header, bytes(64)))


def test_a_valid_file_still_round_trips(repo: Path) -> None:
    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    header = {"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]}}
    content = safetensors_bytes(header, weight.tobytes())
    (repo / "model.safetensors").write_bytes(content)
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "model")
    (repo / "model.safetensors").unlink()
    git(repo, "checkout", "--", "model.safetensors")
    assert (repo / "model.safetensors").read_bytes() == content


def test_a_header_an_older_git_theta_committed_still_checks_out() -> None:
    # `git add` now refuses repeated keys, NaN and non-string __metadata__ values; headers already committed
    # with them must still be read at checkout (the memory and offset checks stay).
    from git_theta.checkpoints.safetensors import parse_header
    from git_theta.errors import CheckpointError

    entry = b'{"dtype":"F32","shape":[4],"data_offsets":[0,16]}'
    old = b'{"__metadata__":{"step":1,"lr":NaN},"w":' + entry + b',"w":' + entry + b"}"
    assert parse_header(old, adding=False) == [("w", "F32", (4,), 0, 16)]
    with pytest.raises(CheckpointError):
        parse_header(old)
    with pytest.raises(CheckpointError, match="invalid shape"):
        parse_header(b'{"w":{"dtype":"F32","shape":[true,4],"data_offsets":[0,16]}}', adding=False)


def _reference_order(header: bytes, params: dict[str, Any]) -> list[str] | str:
    """What checkout checked before checkout_order: the full header parse, then each entry against the metadata."""
    from git_theta.checkpoints.safetensors import _parse_json_header
    from git_theta.errors import CheckpointError

    try:
        entries = _parse_json_header(header, adding=False)
    except CheckpointError as error:
        return str(error)
    for name, dtype, shape, _, _ in entries:
        entry = params.get(name)
        if entry is None or entry.dtype != dtype or entry.shape != shape:
            return f"metadata does not match the stored safetensors header for tensor {name!r}"
    return [e[0] for e in entries]


@pytest.mark.parametrize(
    "change",
    [
        {},  # the usual header
        {
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "a": {"dtype": "F16", "shape": [3], "data_offsets": [8, 14]},
        },
        {"a": {"dtype": "F16", "shape": [True, 3], "data_offsets": [0, 6]}},  # JSON true is not 1
        {"a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 7]}},  # size does not fit the shape
        {"a": {"dtype": "F16", "shape": [3], "data_offsets": [1, 7]}},  # a gap before the first tensor
        {"a": {"dtype": "F16", "shape": [3], "data_offsets": [0.0, 6]}},
        {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}},  # dtype other than the metadata's
        {"a": {"dtype": "F16", "shape": [1, 3], "data_offsets": [0, 6]}},  # shape other than the metadata's
        {"c": {"dtype": "F16", "shape": [3], "data_offsets": [14, 20]}},  # a tensor the metadata lacks
        {"a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 6], "extra": 1}},  # extra keys are tolerated
        {"a": 7},  # an entry that is not an object
        {"__metadata__": {"k": "v"}},
        {"__metadata__": {"k": 1}},  # tolerated at checkout: an older git-theta committed such headers
        {"__metadata__": {}},
        {"__metadata__": {"k\\": 'v"\n'}},
        {"__metadata__": {"format": "pt"}, "a": None, "é": {"dtype": "F16", "shape": [3], "data_offsets": [0, 6]}},
        {"a": None, "a\tb": {"dtype": "F16", "shape": [3], "data_offsets": [0, 6]}},  # escaped in JSON
        {"a": None, "__metadata__": {"dtype": "F16", "shape": [3], "data_offsets": [0, 6]}},
    ],
)
@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")])  # the library's spelling, and another
def test_checkout_order_checks_what_the_full_parse_checks(change: dict[str, Any], separators: tuple[str, str]) -> None:
    from git_theta.checkpoints.safetensors import checkout_order
    from git_theta.errors import CheckpointError
    from git_theta.metadata import ParamEntry

    header = {
        "a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 6]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [6, 14]},
    }
    header.update(change)
    if "__metadata__" in change:  # first, as the library writes it
        header = {"__metadata__": header.pop("__metadata__"), **header}
    if header.get("a", 0) is None:
        del header["a"]
    text = json.dumps(header, separators=separators, ensure_ascii=False).encode() + b"   "
    params = {name: ParamEntry("F16", (3,), "1" * 64, ()) for name in ("a", "é", "a\tb") if name in header}
    params["b"] = ParamEntry("F32", (2,), "2" * 64, ())
    expected = _reference_order(text, params)
    try:
        got: list[str] | str = checkout_order(struct.pack("<Q", len(text)) + text, params)  # as stored
    except CheckpointError as error:
        got = str(error)
    assert got == expected


def test_a_header_in_the_library_spelling_is_matched_without_decoding_it(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from git_theta.checkpoints.safetensors import _matched_header, _parse_json_header, checkout_order
    from git_theta.metadata import ParamEntry

    tensors = {"b.é": np.zeros((2, 3), np.float32), "a": np.ones(4, np.int8)}
    save_file(tensors, tmp_path / "m.safetensors", metadata={"format": "pt"})
    data = (tmp_path / "m.safetensors").read_bytes()
    header = data[8 : 8 + struct.unpack("<Q", data[:8])[0]]
    params = {"b.é": ParamEntry("F32", (2, 3), "1" * 64, ()), "a": ParamEntry("I8", (4,), "2" * 64, ())}
    matched = _matched_header(header)
    assert matched is not None
    assert matched == _parse_json_header(header, adding=True) == _parse_json_header(header, adding=False)
    assert checkout_order(data[: 8 + len(header)], params) == _reference_order(header, params)


@pytest.mark.parametrize(
    "header",
    [
        b'{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}',
        b'{"__metadata__":{"k":"1","k":"2"},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',  # repeated key
        b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
        b'{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}',  # packed: 3 values do not fill whole bytes
        b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',  # a gap
        b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},}',  # a trailing comma
        b'{"__metadata__":{},}',  # a trailing comma after __metadata__
        b'{"__metadata__":{}X"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',  # no comma after it
        b'{"a":{"dtype":"U9","shape":[1],"data_offsets":[0,1]}}',
        b'{"a":{"dtype":"U8","shape":[9999999999999999999],"data_offsets":[0,1]}}',
        b'{"\xed\xa0\x80":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',  # not UTF-8 (a surrogate)
        b"{}",
    ],
)
@pytest.mark.parametrize("adding", [True, False])
def test_a_matched_header_parses_as_the_json_path_parses_it(header: bytes, adding: bool) -> None:
    from git_theta.checkpoints.safetensors import _matched_header, _parse_json_header, parse_header
    from git_theta.errors import CheckpointError

    def outcome(parse: Any) -> object:
        try:
            return parse(header, adding=adding)
        except CheckpointError as error:
            return str(error)

    assert outcome(parse_header) == outcome(_parse_json_header)
    if _matched_header(header) is not None:
        assert _matched_header(header) == _parse_json_header(header, adding=adding)
