"""The decode buffer pool: a buffer comes back only when nothing else holds it."""

from __future__ import annotations

import numpy as np

from git_theta import buffer_pool, objects
from git_theta.tensor import Tensor

SIZE = buffer_pool.MIN_BYTES + 8


def test_an_idle_buffer_is_reused() -> None:
    buffer_pool.clear()
    first = buffer_pool.take(SIZE)
    address = id(first)
    del first
    assert id(buffer_pool.take(SIZE)) == address


def test_a_buffer_still_seen_is_never_handed_out() -> None:
    buffer_pool.clear()
    first = buffer_pool.take(SIZE)
    address = id(first)
    view = memoryview(first)[:10]
    array = np.frombuffer(first, dtype=np.uint8)
    del first
    second = buffer_pool.take(SIZE)
    assert not np.shares_memory(array, np.frombuffer(second, dtype=np.uint8))
    del array
    assert buffer_pool.take(SIZE) is not second and id(buffer_pool.take(SIZE)) != address  # the view still holds it
    del view
    assert id(buffer_pool.take(SIZE)) == address


def test_small_and_other_sizes_are_fresh() -> None:
    buffer_pool.clear()
    small = buffer_pool.take(100)
    assert len(small) == 100 and buffer_pool.take(100) is not small
    del small
    assert len(buffer_pool.take(SIZE + 1)) == SIZE + 1


def test_the_pool_keeps_at_most_max_bytes() -> None:
    buffer_pool.clear()
    held = [buffer_pool.take(SIZE) for _ in range(buffer_pool.MAX_BYTES // SIZE + 3)]
    assert buffer_pool._held <= buffer_pool.MAX_BYTES
    del held
    buffer_pool.clear()
    assert buffer_pool._held == 0


def test_decoded_tensors_do_not_share_bytes_while_alive() -> None:
    """Two decodes of the same object while the first result lives: equal values, separate memory."""
    buffer_pool.clear()
    rng = np.random.default_rng(0)
    values = rng.standard_normal(SIZE // 4 + 1).astype("<f4")
    data = b"".join(objects.encode(objects.Bundle("dense", {"value": Tensor.from_numpy(values)})))
    first = objects.decode(data, 1 << 30).buffers["value"]
    second = objects.decode(data, 1 << 30).buffers["value"]
    assert first.data is not second.data
    assert bytes(first.data) == bytes(second.data) == values.tobytes()
    address = id(second.data)
    del second
    third = objects.decode(data, 1 << 30).buffers["value"]
    assert id(third.data) == address and bytes(third.data) == values.tobytes()
    assert bytes(first.data) == values.tobytes()
