"""Property-based fuzzing of the safetensors reader (git_theta/checkpoints/safetensors.py: parse_header and the
stream reader that `git add` runs on every tracked file); budget in fuzz_support."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from fuzz_support import FUZZ, FUZZ_EXAMPLES, bounded_parse, mutated
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save

from git_theta.checkpoints.safetensors import MAX_HEADER_BYTES, SafetensorsFormat, parse_header
from git_theta.errors import CheckpointError, ThetaError
from git_theta.metadata import ParamEntry
from git_theta.tensor import Tensor

NUMPY_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


class MemorySink:
    """What `git add` would store, kept in memory: the tensors read and the blobs put."""

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.blobs: list[bytes] = []

    def add(self, name: str, tensor: Tensor) -> None:
        assert name not in self.tensors, f"tensor {name!r} read twice"
        self.tensors[name] = tensor

    def put_blob(self, data: bytes) -> dict[str, Any]:
        self.blobs.append(bytes(data))
        return {"object": len(self.blobs) - 1}


class MemorySource:
    def __init__(self, sink: MemorySink) -> None:
        self.sink = sink

    def tensors(self, names: Sequence[str]) -> Iterator[Tensor]:
        return (self.sink.tensors[name] for name in names)

    def get_blob(self, ref: Mapping[str, Any]) -> bytes:
        return self.sink.blobs[ref["object"]]


@st.composite
def checkpoints(draw: st.DrawFn) -> bytes:
    """A real safetensors file (written by the safetensors library) of a few small tensors."""
    names = draw(
        st.lists(st.text(min_size=1, max_size=12).filter(lambda n: n != "__metadata__"), max_size=4, unique=True)
    )
    arrays = {}
    for name in names:
        dtype = NUMPY_DTYPES[draw(st.sampled_from(sorted(NUMPY_DTYPES)))]
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
        raw = draw(
            st.binary(
                min_size=int(np.prod(shape)) * np.dtype(dtype).itemsize,
                max_size=int(np.prod(shape)) * np.dtype(dtype).itemsize,
            )
        )
        array = (
            np.frombuffer(raw, dtype=dtype).reshape(shape)
            if dtype != "?"
            else (np.frombuffer(raw, dtype="u1") % 2 == 1).reshape(shape)
        )
        arrays[name] = array
    # an empty metadata dict makes safetensors (0.4) write invalid JSON for a file without tensors: not ours to test
    extra = draw(st.none() | st.dictionaries(st.text(max_size=8), st.text(max_size=8), min_size=1, max_size=2))
    return bytes(save(arrays, metadata=extra))


def _read(data: bytes) -> tuple[MemorySink, dict[str, Any]] | ThetaError:
    def run() -> tuple[MemorySink, dict[str, Any]]:
        sink = MemorySink()
        return sink, SafetensorsFormat().read(io.BytesIO(data), "model.safetensors", sink)

    outcome = bounded_parse(run, len(data))
    if isinstance(outcome, ThetaError):
        assert isinstance(outcome, CheckpointError), f"{type(outcome).__name__} for a checkpoint: {outcome}"
        assert "\n" not in str(outcome), f"the error is not one line: {outcome!r}"
    return outcome


def _parse_header(header: bytes) -> list[Any] | ThetaError:
    outcome = bounded_parse(lambda: parse_header(header), len(header))
    if isinstance(outcome, ThetaError):
        assert isinstance(outcome, CheckpointError), f"{type(outcome).__name__} for a header: {outcome}"
    return outcome


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    (size,) = struct.unpack_from("<Q", data)
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def _join(header: dict[str, Any], body: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + body


@FUZZ
@given(checkpoints())
def test_valid_checkpoints_round_trip(data: bytes) -> None:
    outcome = _read(data)
    assert not isinstance(outcome, ThetaError), outcome
    sink, file = outcome
    params = {name: ParamEntry(t.dtype, t.shape, "0" * 64, ()) for name, t in sink.tensors.items()}
    out = io.BytesIO()
    SafetensorsFormat().write(file, params, MemorySource(sink), out)
    assert out.getvalue() == data


@FUZZ
@given(st.binary(max_size=2000))
def test_any_header_bytes_parse_or_checkpoint_error(header: bytes) -> None:
    _parse_header(header)


@FUZZ
@given(st.binary(max_size=2000))
def test_any_file_reads_or_checkpoint_error(data: bytes) -> None:
    _read(data)


@FUZZ
@given(st.data())
def test_mutated_checkpoints_read_or_checkpoint_error(data: st.DataObject) -> None:
    _read(data.draw(mutated(data.draw(checkpoints()))))


@FUZZ
@given(
    checkpoints(),
    st.integers(0, 2**64 - 1) | st.sampled_from([0, 1, 2, MAX_HEADER_BYTES, MAX_HEADER_BYTES + 1, 2**63, 2**64 - 1]),
)
def test_any_header_length_field_reads_or_checkpoint_error(data: bytes, length: int) -> None:
    _read(struct.pack("<Q", length) + data[8:])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(checkpoints().filter(lambda d: len(_split(d)[0]) > 1), st.data())
def test_any_json_in_any_tensor_field_reads_or_checkpoint_error(data: bytes, draw: st.DataObject) -> None:
    """Structured: a tensor's dtype, shape or data_offsets (or the whole entry) replaced by any JSON value."""
    header, body = _split(data)
    name = draw.draw(st.sampled_from(sorted(n for n in header if n != "__metadata__")))
    key = draw.draw(st.sampled_from(["dtype", "shape", "data_offsets", None]))
    value = draw.draw(json_values | st.lists(st.integers(-(2**66), 2**66), max_size=4))
    if key is None:
        header[name] = value
    else:
        header[name][key] = value
    _read(_join(header, body))


@settings(FUZZ, max_examples=min(FUZZ_EXAMPLES, 20))  # each failing example may commit up to the address-space margin
@given(
    st.sampled_from(["F32", "F64", "U8", "BOOL"]),
    st.sampled_from([2**24, 2**28, 2**31, 2**36, 2**62 - 1]),
    st.binary(max_size=64),
)
def test_a_large_declared_tensor_in_a_small_file_is_refused_before_allocating(
    dtype: str, elements: int, body: bytes
) -> None:
    """A header that is consistent in itself (offsets fit the shape) but declares far more tensor bytes than the
    file holds: refused without committing the declared memory (the file is a few hundred bytes)."""
    itemsize = {"F32": 4, "F64": 8, "U8": 1, "BOOL": 1}[dtype]
    header = {"w": {"dtype": dtype, "shape": [elements], "data_offsets": [0, elements * itemsize]}}
    data = _join(header, body)
    outcome = _read(data)
    assert isinstance(outcome, CheckpointError), outcome


@FUZZ
@given(st.integers(2, 6), st.sampled_from([100, 1_000, 100_000]))
def test_deeply_nested_metadata_section_reads_or_checkpoint_error(width: int, depth: int) -> None:
    """`__metadata__` (kept byte for byte) nested deep: refused or kept, never a RecursionError."""
    nested = "[" * depth + "]" * depth
    encoded = (
        f'{{"__metadata__":{nested},"w":{{"dtype":"U8","shape":[{width}],"data_offsets":[0,{width}]}}}}'
    ).encode()
    _read(struct.pack("<Q", len(encoded)) + encoded + b"\1" * width)
