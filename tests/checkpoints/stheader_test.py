"""The compiled safetensors entry matcher (git_theta/_stheader.c) against the Python one it replaces
(safetensors._matched_entries): the same result, None included, on headers the real library writes and on
mutations of them; and whatever either accepts is what the JSON path gives."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from git_theta import dtypes
from git_theta.checkpoints import safetensors
from git_theta.errors import CheckpointError

compiled = pytest.mark.skipif(safetensors.IMPLEMENTATION != "c", reason="git_theta._stheader was not built")

Result = list[tuple[str, str, tuple[int, ...], int, int]] | None


@contextmanager
def _python_matcher() -> Iterator[None]:
    compiled = safetensors._match_entries
    safetensors._match_entries = None
    try:
        yield
    finally:
        safetensors._match_entries = compiled


def _both(header: bytes) -> tuple[Result, Result]:
    stored = len(header).to_bytes(8, "little") + header  # as a checkout reads it: matched from byte 8, not copied
    with _python_matcher():
        python = safetensors._matched_header(header)
        assert safetensors._matched_header(stored, 8) == python
    compiled = safetensors._matched_header(header)
    assert safetensors._matched_header(stored, 8) == compiled
    return compiled, python


def _json(header: bytes, adding: bool) -> object:
    try:
        return safetensors._parse_json_header(header, adding)
    except CheckpointError as error:
        return str(error)


def _check_same(header: bytes) -> Result:
    compiled, python = _both(header)
    assert compiled == python
    if compiled is not None:
        assert compiled == _json(header, True) == _json(header, False)
        # dtype names are dtypes.ITEMSIZE's key objects, equal shapes one tuple, as in the Python matcher
        keys = {name: name for name in dtypes.ITEMSIZE}
        shapes: dict[tuple[int, ...], tuple[int, ...]] = {}
        for _, dtype, shape, _, _ in compiled:
            assert dtype is keys[dtype]
            assert shapes.setdefault(shape, shape) is shape
    return compiled


def test_the_extension_is_built_here() -> None:
    # CI installs with a compiler; without the extension a 10^6-tensor header costs ~5 s more at add and checkout.
    assert safetensors.IMPLEMENTATION == "c"


def _header_of(path: Path) -> bytes:
    data = path.read_bytes()
    return data[8 : 8 + struct.unpack("<Q", data[:8])[0]]


def _library_headers(folder: Path) -> list[bytes]:
    from safetensors.numpy import save_file as save_numpy
    from safetensors.torch import save_file as save_torch

    torch_tensors = {
        "model.layers.0.weight": torch.ones(3, 4, dtype=torch.bfloat16),
        "model.layers.0.bias": torch.zeros(4, dtype=torch.float32),
        "scale": torch.tensor(2.5, dtype=torch.float64),  # 0-d
        "empty": torch.zeros(0, 5, dtype=torch.float16),  # 0 bytes
        "empty2": torch.zeros(0, dtype=torch.int8),
        "fp8.e4m3": torch.zeros(7, dtype=torch.float8_e4m3fn),
        "fp8.e5m2": torch.zeros(2, 2, dtype=torch.float8_e5m2),
        "ünïcode.名前.🙂": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "mask": torch.ones(5, dtype=torch.bool),
    }
    numpy_tensors: dict[str, np.ndarray[Any, Any]] = {
        "a": np.ones((2, 3), np.float32),
        "b.é": np.zeros(4, np.int8),
        "zero_d": np.array(7, np.uint16),
        "nothing": np.zeros((3, 0), np.float64),
        "c": np.zeros(1, np.complex64),
    }
    headers = []
    for number, metadata in enumerate([None, {"format": "pt"}, {"format": "np", "note": 'a "quoted" \\ é'}]):
        torch_path, numpy_path = folder / f"t{number}.safetensors", folder / f"n{number}.safetensors"
        save_torch(torch_tensors, str(torch_path), metadata=metadata)
        save_numpy(numpy_tensors, str(numpy_path), metadata=metadata)
        headers += [_header_of(torch_path), _header_of(numpy_path)]
    return headers


@compiled
def test_headers_the_library_writes_are_matched_as_the_json_path_reads_them(tmp_path: Path) -> None:
    for header in _library_headers(tmp_path):
        assert _check_same(header) is not None, header[:200]


# Headers in the library's spelling, built here so that hypothesis can vary every part, then mutated.
_NAME = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
_DTYPE = st.sampled_from(sorted(dtypes.ITEMSIZE))
_SHAPE = st.lists(st.integers(0, 5), max_size=3)


@st.composite
def _spelled_header(draw: st.DrawFn) -> bytes:
    names = draw(st.lists(_NAME, max_size=6, unique=True))
    infos = {name: (draw(_DTYPE), draw(_SHAPE)) for name in names}
    order = draw(st.permutations(names))  # file order: not the header's
    header: dict[str, Any] = {}
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(_NAME, _NAME, max_size=2))
    position, offsets = 0, {}
    for name in order:
        dtype, shape = infos[name]
        size = int(np.prod(shape, dtype=np.int64)) * dtypes.BITS[dtype] // 8  # packed: may not fill whole bytes
        offsets[name] = [position, position + size]
        position += size
    for name in names:
        header[name] = {"dtype": infos[name][0], "shape": infos[name][1], "data_offsets": offsets[name]}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=draw(st.booleans())).encode()
    return text + b" " * draw(st.sampled_from([0, -len(text) % 8, 3]))


# Pieces a mutation puts in: what the grammar and the checks must refuse, or must not mistake for something else.
_PIECES = [
    b",",
    b",}",
    b"}",
    b"]",
    b"[",
    b'"',
    b"\\",
    b"\\n",
    b"\x00",
    b"\x1f",
    b"\x7f",
    b" ",
    b"0",
    b"00",
    b"01",
    b"-1",
    b"1.0",
    b"1e3",
    b"9999999999999999999",  # 19 digits: the most the matcher takes
    b"10000000000000000000",  # 20
    b"9223372036854775807",  # MAX_TENSOR_BYTES
    b"9223372036854775808",
    b"4611686018427387904,2",  # 2^62 * 2: the product overflows MAX_TENSOR_BYTES
    b"4294967296,4294967296",  # 2^64
    b",".join([b"1"] * 64),
    b",".join([b"1"] * 65),
    b"\xff",
    b"\xc3",  # a truncated 2-byte sequence
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xc0\xaf",  # overlong
    b"__metadata__",
    b'"F32"',
    b"F33",
    b"F8_E4M3FNUZ_LONGER",
    b"f32",
    b"BF16",
    b"F4",
    b"true",
    b"null",
]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    header = bytearray(draw(_spelled_header()))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "delete", "insert", "replace", "duplicate", "number", "end"]))
        at = draw(st.integers(0, len(header)))
        if kind == "end":  # just before the closing brace, where trailing commas and padding are
            kind, at = "insert", len(header.rstrip(b" ")) - 1
        if kind == "flip" and at < len(header):
            header[at] = draw(st.integers(0, 255))
        elif kind == "delete":
            del header[at : at + draw(st.integers(1, 4))]
        elif kind == "insert":
            header[at:at] = draw(st.sampled_from(_PIECES))
        elif kind == "replace":
            header[at : at + draw(st.integers(1, 6))] = draw(st.sampled_from(_PIECES))
        elif kind == "duplicate":  # an entry (or any span ending in "}") again after a comma
            start = header.find(b',"', at)
            stop = header.find(b"]}", start + 1)
            if start >= 0 and stop >= 0:
                header[stop + 2 : stop + 2] = header[start : stop + 2]
        else:  # a number one more or less, as a gapped or overlapping offset or a wrong size gives
            digits = [i for i in range(len(header)) if 0x30 <= header[i] <= 0x39]
            if digits:
                i = digits[at % len(digits)]
                header[i] = 0x30 + (header[i] - 0x30 + draw(st.sampled_from([1, 9]))) % 10
    return bytes(header)


@compiled
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_spelled_header())
def test_a_header_in_the_library_spelling_matches_in_c_as_in_python(header: bytes) -> None:
    _check_same(header)


@compiled
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_a_mutated_header_gives_what_the_python_matcher_gives(header: bytes) -> None:
    _check_same(header)


def _entry(name: str, dtype: str, shape: str, begin: int, end: int) -> str:
    return f'"{name}":{{"dtype":"{dtype}","shape":[{shape}],"data_offsets":[{begin},{end}]}}'


@compiled
@pytest.mark.parametrize(
    "entries, matched",
    [
        ([_entry("a", "U8", "1", 0, 1), _entry("b", "U8", "1", 0, 1)], False),  # overlapping
        ([_entry("a", "U8", "1", 0, 1), _entry("b", "U8", "1", 2, 3)], False),  # a gap
        ([_entry("a", "U8", "1", 1, 2), _entry("b", "U8", "1", 0, 1)], True),  # file order is not header order
        ([_entry("a", "F32", "0", 0, 0), _entry("b", "F32", "0", 0, 0), _entry("c", "U8", "", 0, 1)], True),
        ([_entry("a", "U8", ",".join(["1"] * 64), 0, 1)], True),  # 64 dimensions
        ([_entry("a", "U8", ",".join(["1"] * 65), 0, 1)], False),  # 65
        ([_entry("a", "U8", "01", 0, 1)], False),  # a leading zero
        ([_entry("a", "U8", "1", 0, 1), _entry("a", "U8", "0", 1, 1)], False),  # a repeated name
        ([_entry("__metadata__", "U8", "1", 0, 1)], False),
        ([_entry("", "U8", "1", 0, 1)], True),  # an empty name is a name
        ([_entry("a", "F4", "3", 0, 2)], False),  # 3 packed values do not fill whole bytes
        ([_entry("a", "F6_E2M3", "4", 0, 3)], True),
        ([_entry("a", "U8", "9223372036854775807", 0, 9223372036854775807)], True),  # MAX_TENSOR_BYTES
        ([_entry("a", "U16", "4611686018427387904", 0, 9223372036854775808)], False),
        ([_entry("a", "U8", "9223372036854775808", 0, 9223372036854775808)], False),
        ([_entry("a", "U8", "9223372036854775808,0", 0, 0)], False),  # empty, but a dim above MAX_TENSOR_BYTES
        ([_entry("a", "U8", "4294967296,4294967296,0", 0, 0)], True),  # huge dims, but a 0 makes it empty
        ([_entry("a", "U8", "4294967296,4294967296,4294967296,0", 0, 0)], True),  # overflowing, then 0
        ([_entry("a", "U8", "0", 9999999999999999999, 9999999999999999999)], False),  # 19 digits, a gap
        # the second ends at 18446744073709551614: 20 digits, more than the matcher takes (the JSON path reads it)
        (
            [
                _entry(n, "U8", "9223372036854775807", b, b + 9223372036854775807)
                for n, b in [("a", 0), ("b", 9223372036854775807)]
            ],
            False,
        ),
        ([_entry("a", "U8", "1", 0, 1) + ","], False),  # a trailing comma
        ([_entry("a", "U8", "1", 0, 1) + ",   "], False),
        ([_entry("a", "U8", "1", 0, 1), "", _entry("b", "U8", "1", 1, 2)], False),  # two commas
        ([_entry("a", "U8", "1", 0, 1) + " "], False),  # a space inside the braces
        (["", _entry("a", "U8", "1", 0, 1)], False),  # a leading comma
    ],
)
def test_edge_cases_give_the_same_result(entries: list[str], matched: bool) -> None:
    for prefix in ["", '"__metadata__":{"format":"pt"},']:
        for padding in ["", "   "]:
            header = ("{" + prefix + ",".join(entries) + "}" + padding).encode()
            assert (_check_same(header) is not None) is matched


@compiled
def test_the_tensor_limit_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safetensors, "MAX_TENSORS", 3)
    header = "{" + ",".join(_entry(f"t{i}", "U8", "1", i, i + 1) for i in range(3)) + "}"
    assert _check_same(header.encode()) is not None
    header = "{" + ",".join(_entry(f"t{i}", "U8", "1", i, i + 1) for i in range(4)) + "}"
    assert _both(header.encode()) == (None, None)


@compiled
def test_arguments_that_are_not_a_header_region_are_refused() -> None:
    assert safetensors._match_entries is not None
    with pytest.raises(ValueError):
        safetensors._match_entries(b"{}", 1, 5, safetensors._DTYPE_SIZES, 10, 10)
    with pytest.raises(TypeError):
        safetensors._match_entries(b"{}", 1, 1, {"F32": 4}, 10, 10)  # type: ignore[dict-item]


def test_without_the_extension_the_python_matcher_does_the_work(tmp_path: Path) -> None:
    headers = _library_headers(tmp_path)
    expected = [safetensors.parse_header(header) for header in headers]
    code = (
        "import json, sys\n"
        "sys.modules['git_theta._stheader'] = None  # as if it was never built\n"
        "from git_theta.checkpoints import safetensors\n"
        "headers = [bytes.fromhex(h) for h in json.loads(sys.stdin.read())]\n"
        "print(safetensors.IMPLEMENTATION)\n"
        "print(json.dumps([safetensors._matched_header(h) for h in headers]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps([h.hex() for h in headers]), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    implementation, matched = result.stdout.splitlines()
    assert implementation == "python"
    assert json.loads(matched) == json.loads(json.dumps(expected))


@pytest.mark.parametrize("data", [b"", b" ", b"}", b"{} ", b"{}" + b" " * 64, b"{}" + b" " * 65, b"x" * 70 + b" " * 3])
def test_the_closing_brace_is_found_as_rstrip_finds_it(data: bytes) -> None:
    assert safetensors._last_non_space(data) == len(data.rstrip(b" ")) - 1
