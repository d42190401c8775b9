"""Byte grouping: the C extension and the numpy fallback are the same transform."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from git_theta import bytegroup


def test_the_extension_is_built_here() -> None:
    # CI installs with a compiler; without the extension every checkout pays the numpy import.
    assert bytegroup.IMPLEMENTATION == "c"


@pytest.mark.parametrize("itemsize", [1, 2, 3, 4, 8, 16])
@pytest.mark.parametrize("count", [0, 1, 7, 4099])
def test_group_matches_the_definition_and_the_fallback(itemsize: int, count: int) -> None:
    elements = os.urandom(itemsize * count)
    planes = bytegroup.group(elements, itemsize)
    # plane k holds byte k of every element
    expected = b"".join(elements[k::itemsize] for k in range(itemsize))
    assert planes == expected
    assert bytegroup.group_numpy(elements, itemsize) == expected


@pytest.mark.parametrize("itemsize", [1, 2, 3, 4, 8, 16])
@pytest.mark.parametrize("count", [0, 1, 7, 4099])
def test_ungroup_inverts_group_in_place(itemsize: int, count: int) -> None:
    elements = os.urandom(itemsize * count)
    planes = bytegroup.group(elements, itemsize)
    for ungroup in (bytegroup.ungroup_into, bytegroup.ungroup_into_numpy):
        # into a slice of a larger buffer, as objects.decode does per chunk
        whole = bytearray(b"\xee" * (len(elements) + 10))
        ungroup(planes, memoryview(whole)[5 : 5 + len(elements)], itemsize)
        assert whole == b"\xee" * 5 + elements + b"\xee" * 5


def test_accepts_the_buffers_callers_pass() -> None:
    values = np.arange(6, dtype=np.float32)
    raw = memoryview(values).cast("B")
    planes = bytegroup.group(raw, 4)
    out = np.zeros(6, dtype=np.float32)
    bytegroup.ungroup_into(bytearray(planes), memoryview(out).cast("B"), 4)
    assert np.array_equal(out, values)


@pytest.mark.parametrize("implementation", ["c", "numpy"])
def test_size_mistakes_are_errors_not_overruns(implementation: str) -> None:
    group = bytegroup.group if implementation == "c" else bytegroup.group_numpy
    ungroup = bytegroup.ungroup_into if implementation == "c" else bytegroup.ungroup_into_numpy
    with pytest.raises(ValueError, match="sizes do not match: 7 bytes in, 7 bytes out, itemsize 4"):
        group(b"x" * 7, 4)
    with pytest.raises(ValueError, match="sizes do not match: 8 bytes in, 12 bytes out, itemsize 4"):
        ungroup(b"x" * 8, bytearray(12), 4)
    with pytest.raises(ValueError, match="itemsize must be at least 1"):
        group(b"x" * 8, 0)


@pytest.mark.parametrize("sizes", [[], [(4, 0)], [(4, 3), (1, 5), (2, 4099), (8, 1), (16, 2)], [(4, 1024)] * 100])
def test_group_many_is_group_of_each_member_back_to_back(sizes: list[tuple[int, int]]) -> None:
    # (itemsize, count) per member: mixed dtypes in one pack; 100 x 4 KB passes the size that drops the GIL.
    members = [(os.urandom(itemsize * count), itemsize) for itemsize, count in sizes]
    expected = b"".join(bytegroup.group(elements, itemsize) for elements, itemsize in members)
    assert bytegroup.group_many(members) == expected
    assert bytegroup.group_many([(memoryview(bytearray(e)), i) for e, i in members]) == expected


def test_group_many_refuses_what_group_refuses() -> None:
    with pytest.raises(ValueError, match="sizes do not match: 7 bytes in, 7 bytes out, itemsize 4"):
        bytegroup.group_many([(b"x" * 8, 4), (b"x" * 7, 4)])
    with pytest.raises(ValueError, match="itemsize must be at least 1"):
        bytegroup.group_many([(b"x" * 8, 0)])
    for bad in ([b"x"], [(b"x", 1, 2)], [("text", 1)], 5):
        with pytest.raises(TypeError):
            bytegroup.group_many(bad)  # type: ignore[arg-type]


def test_ungroup_needs_a_writable_target() -> None:
    with pytest.raises(TypeError):
        bytegroup.ungroup_into(b"x" * 8, b"y" * 8, 4)


def test_without_the_extension_numpy_does_the_work() -> None:
    code = (
        "import sys\n"
        "sys.modules['git_theta._bytegroup'] = None  # as if it was never built\n"
        "from git_theta import bytegroup, objects\n"
        "from git_theta.tensor import Tensor\n"
        "data = bytes(range(256)) * 64\n"
        "bundle = objects.Bundle('dense', {'value': Tensor('F32', (4096,), data)})\n"
        "back = objects.decode(b''.join(objects.encode(bundle)))\n"
        "print(bytegroup.IMPLEMENTATION, bytes(back.buffers['value'].data) == data)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["numpy", "True"]


def test_empty_gives_a_bytearray_of_the_size_asked() -> None:
    from git_theta._bytegroup import empty

    for size in (0, 1, 4096, 3 << 20):
        buffer = empty(size)
        assert type(buffer) is bytearray and len(buffer) == size
        buffer[:] = b"\x07" * size  # writable, every byte
    with pytest.raises(ValueError):
        empty(-1)
    with pytest.raises(TypeError):
        empty("4")  # type: ignore[arg-type]
