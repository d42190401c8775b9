"""Property-based fuzzing of git_theta/objects.py decode (store objects come from servers and collaborators);
budget in fuzz_support."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

from fuzz_support import FUZZ, FUZZ_EXAMPLES, bounded_parse, mutated
from hypothesis import given, settings
from hypothesis import strategies as st

from git_theta import dtypes, objects
from git_theta.errors import StoreError, ThetaError
from git_theta.objects import MAGIC, Bundle
from git_theta.tensor import Tensor

json_scalars = st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@st.composite
def tensors(draw: st.DrawFn) -> Tensor:
    dtype = draw(st.sampled_from(sorted(dtypes.ITEMSIZE)))
    shape = tuple(draw(st.lists(st.integers(0, 6), max_size=3)))
    if math.prod(shape) * dtypes.BITS[dtype] % 8:
        shape += (8,)  # a packed type (F4, F6): whole bytes only, as safetensors requires
    # zeros compress to almost nothing, random bytes not at all: both ends of a frame's size
    fill = draw(st.sampled_from(["zeros", "random"]))
    nbytes = dtypes.nbytes(dtype, shape)
    data = b"\0" * nbytes if fill == "zeros" else draw(st.binary(min_size=nbytes, max_size=nbytes))
    return Tensor(dtype, shape, data)


bundles = st.builds(
    Bundle,
    kind=st.text(min_size=1, max_size=12),
    buffers=st.dictionaries(st.text(max_size=10), tensors(), max_size=3),
    fields=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)


def _decode(data: bytes) -> Bundle | ThetaError:
    outcome = bounded_parse(lambda: objects.decode(data), len(data))
    if isinstance(outcome, ThetaError):
        assert isinstance(outcome, StoreError), f"{type(outcome).__name__} for an object: {outcome}"
    return outcome


def _with_header(header: dict[str, Any], frames: bytes) -> bytes:
    encoded = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<I", len(encoded)) + encoded + frames


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    header, offset = objects.read_header(data)
    return header, data[offset:]


@FUZZ
@given(bundles)
def test_valid_objects_round_trip(bundle: Bundle) -> None:
    decoded = _decode(b"".join(objects.encode(bundle)))
    assert isinstance(decoded, Bundle), decoded
    assert (decoded.kind, decoded.fields) == (bundle.kind, bundle.fields)
    assert sorted(decoded.buffers) == sorted(bundle.buffers)
    for name, tensor in bundle.buffers.items():
        got = decoded.buffers[name]
        assert (got.dtype, got.shape, bytes(got.data)) == (tensor.dtype, tensor.shape, bytes(tensor.data))


@FUZZ
@given(st.binary(max_size=2000))
def test_any_bytes_decode_or_store_error(data: bytes) -> None:
    _decode(data)


@FUZZ
@given(st.binary(max_size=2000))
def test_any_bytes_after_the_magic_decode_or_store_error(rest: bytes) -> None:
    _decode(MAGIC + rest)


@FUZZ
@given(st.data())
def test_mutated_objects_decode_or_store_error(data: st.DataObject) -> None:
    _decode(data.draw(mutated(b"".join(objects.encode(data.draw(bundles))))))


@FUZZ
@given(bundles, st.integers(0, 2**32 - 1) | st.sampled_from([0, 1, 2**24, 2**32 - 1]))
def test_any_header_length_field_decodes_or_store_error(bundle: Bundle, length: int) -> None:
    data = b"".join(objects.encode(bundle))
    _decode(data[: len(MAGIC)] + struct.pack("<I", length) + data[len(MAGIC) + 4 :])


@FUZZ
@given(st.data())
def test_any_json_in_any_header_field_decodes_or_store_error(data: st.DataObject) -> None:
    """Structured: one field of a valid header (top level or a buffer's) replaced by any JSON value."""
    bundle = data.draw(bundles.filter(lambda b: bool(b.buffers)))
    header, frames = _split(b"".join(objects.encode(bundle)))
    target = data.draw(st.sampled_from([header, header["buffers"][0]]))
    key = data.draw(st.sampled_from(sorted(target)))
    target[key] = data.draw(json_values | st.lists(st.integers(-(2**40), 2**40), max_size=6))
    _decode(_with_header(header, frames))


@FUZZ
@given(st.data())
def test_a_duplicated_buffer_is_refused(data: st.DataObject) -> None:
    bundle = data.draw(bundles.filter(lambda b: bool(b.buffers)))
    header, frames = _split(b"".join(objects.encode(bundle)))
    header["buffers"].append(dict(header["buffers"][0]))
    assert isinstance(_decode(_with_header(header, frames)), StoreError)


@settings(FUZZ, max_examples=min(FUZZ_EXAMPLES, 25))  # each failing example commits chunks x 4 MiB
@given(st.sampled_from(sorted(dtypes.ITEMSIZE)), st.integers(2, 8), st.integers(1, 3))
def test_a_large_declared_buffer_behind_tiny_frames_is_refused_before_allocating(
    dtype: str, chunks: int, frame_bytes: int
) -> None:
    """A header consistent in itself (shape, full-size chunks, one small frame per chunk, sizes that add up) that
    declares chunks x 4 MiB behind a few bytes of frames: refused without reserving the declared memory."""
    itemsize = dtypes.itemsize(dtype)
    step = objects.chunk_step(itemsize)
    header = {
        "buffers": [
            {
                "chunk_bytes": [step] * chunks,
                "codec": objects.CODEC,
                "dtype": dtype,
                "frame_bytes": [frame_bytes] * chunks,
                "name": "w",
                "shape": [step * chunks // itemsize],
            }
        ],
        "fields": {},
        "kind": "dense",
    }
    outcome = _decode(_with_header(header, b"\x28" * (frame_bytes * chunks)))
    assert isinstance(outcome, StoreError)


@FUZZ
@given(bundles.filter(lambda b: any(t.nbytes for t in b.buffers.values())), st.data())
def test_frames_swapped_or_replaced_decode_or_store_error(bundle: Bundle, data: st.DataObject) -> None:
    """Valid zstd frames that declare another size than their chunk: checked before decompressing."""
    header, frames = _split(b"".join(objects.encode(bundle)))
    other = b"".join(objects.encode(data.draw(bundles)))
    _, other_frames = _split(other)
    _decode(
        _with_header(header, other_frames + frames[len(other_frames) :])
        if other_frames
        else _with_header(header, frames)
    )
