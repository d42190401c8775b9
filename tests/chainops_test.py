"""chainops: the C extension and its numpy fallback set the same bytes and refuse the same bad indices."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta import chainops


@pytest.fixture(params=["c", "numpy"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "numpy":
        monkeypatch.setattr(chainops, "_xor_into", None)
        monkeypatch.setattr(chainops, "_scatter_into", None)
    elif chainops.IMPLEMENTATION != "c":
        pytest.skip("git_theta._chainops was not built")
    return str(request.param)


@pytest.mark.parametrize("length", [0, 1, 7, 8, 1001])
def test_xor_into(implementation: str, length: int) -> None:
    rng = np.random.default_rng(length)
    a, b = rng.integers(0, 256, length, dtype=np.uint8), rng.integers(0, 256, length, dtype=np.uint8)
    target = bytearray(a.tobytes())
    chainops.xor_into(target, b.tobytes())
    assert bytes(target) == (a ^ b).tobytes()
    with pytest.raises(ValueError):
        chainops.xor_into(bytearray(length + 1), b.tobytes())


@pytest.mark.parametrize("itemsize, gap_size", [(1, 4), (2, 4), (4, 4), (8, 8), (3, 8)])
def test_scatter_into(implementation: str, itemsize: int, gap_size: int) -> None:
    rng = np.random.default_rng(itemsize)
    count = 500
    base = rng.integers(0, 256, count * itemsize, dtype=np.uint8)
    indices = np.sort(rng.choice(count, 60, replace=False))
    values = rng.integers(0, 256, (60, itemsize), dtype=np.uint8)
    gaps = np.diff(indices, prepend=0).astype({4: "<u4", 8: "<u8"}[gap_size])
    target = bytearray(base.tobytes())
    chainops.scatter_into(target, gaps.tobytes(), gap_size, values.tobytes(), itemsize)
    expected = base.reshape(count, itemsize).copy()
    expected[indices] = values
    assert bytes(target) == expected.tobytes()


@pytest.mark.parametrize(
    "gaps",
    [[3, 0], [4], [2, 2], [1, 2**32 - 1], [0, 2**64 - 1]],
    ids=["repeat", "past the end", "last past the end", "far past", "wraps around"],
)
def test_scatter_into_refuses_bad_indices_and_writes_nothing(implementation: str, gaps: list[int]) -> None:
    target = bytearray(b"abcd")
    packed = np.array(gaps, dtype="<u8").tobytes()
    with pytest.raises(ValueError):
        chainops.scatter_into(target, packed, 8, b"z" * len(gaps), 1)
    assert target == bytearray(b"abcd")
