"""Property-based fuzzing of the TensorFlow bundle index reader (git_theta/checkpoints/tensor_bundle.py), which
`git add` runs on every tracked `.index` and on the index beside every data shard; budget in fuzz_support."""

from __future__ import annotations

import sys
from pathlib import Path

from fuzz_support import FUZZ, bounded_parse, mutated
from hypothesis import given
from hypothesis import strategies as st

from git_theta.checkpoints.tensor_bundle import Bundle, parse_index

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "checkpoints"))
from tensor_bundle_test import build_index, entry_proto, header_proto, sample


def _check(data: bytes) -> None:
    outcome = bounded_parse(lambda: parse_index(data), len(data))
    if isinstance(outcome, Bundle):
        assert len(outcome.entries) <= len(data)  # every entry costs at least a byte of the file


@FUZZ
@given(st.binary(max_size=512))
def test_any_bytes(data: bytes) -> None:
    _check(data)


@FUZZ
@given(st.data())
def test_mutated_tables(data: st.DataObject) -> None:
    _check(data.draw(mutated(sample())))


@FUZZ
@given(st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=40)), max_size=8), st.booleans())
def test_tables_with_valid_checksums_and_arbitrary_values(items: list[tuple[bytes, bytes]], header: bool) -> None:
    """Blocks and CRCs are right, so the protobuf walker sees arbitrary entry bytes (and keys in any order)."""
    values = [(b"", header_proto())] if header else []
    values += [
        (key, value if len(value) % 3 else entry_proto(1, [len(value)], 0, 4 * len(value), 0)) for key, value in items
    ]
    _check(build_index(values))
